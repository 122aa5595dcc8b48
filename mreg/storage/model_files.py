"""The names of a model's files in ``.mreg/models/<name>/`` (see :mod:`mreg.storage.refs`)."""

TABLE_FILE = "_refs"
LOG_FILE = "_log"
LOCK_FILE = "_lock"
NOTES_FILE = "_notes"
