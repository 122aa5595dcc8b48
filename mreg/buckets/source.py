"""A registry in a bucket, read as another store: pull, clone and fallbacks."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config
from ..errors import RemoteError
from ..fetching import in_parallel
from ..note_sync import MAX_TABLE_SIZE as MAX_NOTES_SIZE
from ..notes import NOTES_FILE
from ..refs import LogEntry, RefTable
from ..remote import Source, Stream
from .client import CONCURRENCY, READERS, Bucket, ObjectInfo
from .refs import names_listed, read_log


class BucketSource(Source):
    """A registry in object storage, read as another store."""

    concurrency = CONCURRENCY
    """Objects a transfer fetches at once."""
    readers = READERS

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.location = bucket.location
        self._ahead: dict[str, bytes | None] = {}  # notes tables listed_tables read, each served once

    def log(self, name: str) -> list[LogEntry]:
        """A model's log, assembled from its log objects, every line checked."""
        return read_log(self.bucket, name)

    def stream(self, path: str) -> Stream | None:
        return self.bucket.stream(path)

    def model_names(self) -> list[str]:
        return names_listed(self.location, self._listing())

    def listed_tables(self) -> dict[str, RefTable]:
        """Every model's validated refs, after one listing of ``models/``, which also shows
        which models have notes: their tables are read at the same time as the refs (and
        kept for the transfer's :meth:`read_all`), the others are known to have none."""
        listing = self._listing()
        names = names_listed(self.location, listing)
        notes = {f"models/{name}/{NOTES_FILE}" for name in names}
        self._ahead = dict.fromkeys(notes)
        listed_notes = [str(info["path"]) for info in listing if info["path"] in notes]
        tables: dict[str, RefTable | None] = {}
        steps = [lambda: tables.update(self.tables(names)), lambda: self._ahead.update(Source.read_all(self, listed_notes, MAX_NOTES_SIZE))]
        in_parallel(lambda step: step(), steps, len(steps))
        return {name: table for name, table in tables.items() if table is not None and table.versions}

    def read_all(self, paths: Sequence[str], limit: int) -> dict[str, bytes | None]:
        """As :meth:`Source.read_all`; a notes table :meth:`listed_tables` read is not read again."""
        found = {path: self._ahead.pop(path) for path in paths if path in self._ahead}
        found = {path: data for path, data in found.items() if data is None or len(data) <= limit}
        found.update(super().read_all([path for path in paths if path not in found], limit))
        return {path: found[path] for path in paths}

    def _listing(self) -> list[ObjectInfo]:
        """Every key under ``models/``; on failure, the cause as :meth:`Bucket.check` finds it
        (a GET's error names it where a listing's may not: moto answers a listing by a
        user denied access with a signature error)."""
        try:
            return list(self.bucket.list("models/"))
        except RemoteError:
            self.bucket.check()
            raise


def open_bucket_source(location: str, config: Config | None, timeout: float, *, check: bool = True) -> BucketSource:
    """A :class:`BucketSource` for a URL, with the settings of the remote that names it
    (a missing bucket or refused credentials fail here, with their cause, or with
    ``check=False`` at the first read)."""
    return BucketSource(Bucket.open(location, config, timeout, check=check))
