"""Storage: the ``.mreg`` directory as bytes, digests and refs. No model formats, no other stores.

Objects (blobs, chunked files and their chunk indexes) and where they live, the
refs, logs and notes tables of each model, the metadata index, the config, the
cache of assembled files, atomic files, locks and threads.

Words: an *object* is anything stored under its SHA-256; a *blob* is an object
stored as one file; a file stored as *chunks* has a chunk index listing its chunk
blobs; a *segment* is one blob seen as a run of a file's bytes; a *piece* is bytes on
their way in (a whole stream, or one fetched chunk); a *block* is a buffer of bytes in
flight; a *packed* object is a blob stored as a compressed record (``.pack``).

May import: :mod:`mreg.records` and below, and the standard library.
"""
