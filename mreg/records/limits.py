"""Checks for what comes from elsewhere: another store, a file, a Python caller.

A fallback directory, an HTTP mirror or a pull source is hostile until proven
otherwise: what it serves passes the checks local input passes, before anything
is written here, and every read of it is bounded. The bounds below are the ones
stated in SYSTEM_DESIGN (security).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

MAX_TABLE_SIZE = 32 << 20  # a ref table: ~100 bytes a version, so ~300,000 versions
MAX_LOG_SIZE = 64 << 20  # a model's reflog
MAX_MODEL_LIST_SIZE = 16 << 20  # info/models: ~80,000 names of 200 characters
MAX_CHUNK_INDEX_SIZE = 16 << 20  # a .chunks index: ~200,000 chunks
MAX_LOG_FIELD = 64 << 10  # one text field of one log line
MAX_SMALL_FILE = 64 << 20  # any other small file read whole (Source.read)
