"""Bounds on what mreg reads whole: one name per limit.

A fallback directory, an HTTP mirror, a pull source or a bucket is hostile until
proven otherwise, and so is a file a user hands over: every read of a record stops
at its bound here, before anything is parsed or written. SYSTEM_DESIGN (security)
states the same table.
"""

from __future__ import annotations

MAX_MANIFEST_SIZE = 16 << 20  # a manifest (a version's metadata)
MAX_NOTE_SIZE = 1 << 20  # a note object
MAX_CARD_SIZE = 1 << 20  # a model card file given to `mreg add --card`
MAX_CHUNK_INDEX_SIZE = 16 << 20  # a .chunks index: ~200,000 chunks
MAX_REF_TABLE_SIZE = 32 << 20  # a model's _refs: ~100 bytes a version, so ~300,000 versions
MAX_NOTES_TABLE_SIZE = 64 << 20  # a model's _notes: ~450,000 notes
MAX_LOG_SIZE = 64 << 20  # a model's whole _log
MAX_LOG_OBJECT_SIZE = 16 << 20  # one log object of a model in a bucket (one change)
MAX_LOG_FIELD = 64 << 10  # one text field of one log entry
MAX_MODEL_LIST_SIZE = 16 << 20  # info/models: ~80,000 names of 200 characters
MAX_SMALL_FILE = 64 << 20  # any other small file read whole (Source.read)
