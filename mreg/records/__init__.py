"""Records: what mreg writes down and hands back, and their codecs; no I/O."""
