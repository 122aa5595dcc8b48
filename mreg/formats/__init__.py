"""Weight formats: the files mreg reads without torch."""
