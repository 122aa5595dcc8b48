"""Records: the data mreg writes down and returns, with their codecs; no I/O."""
