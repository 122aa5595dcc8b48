"""A registry in a bucket, read as another store: pull, clone and fallbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import RemoteError
from mreg.sharing.buckets.client import CONCURRENCY, READERS, Bucket, ObjectInfo
from mreg.sharing.buckets.log import read_history
from mreg.sharing.buckets.refs import names_listed
from mreg.sharing.sources import RemoteModel, Source, Stream, with_versions
from mreg.storage.refs import NOTES_FILE

if TYPE_CHECKING:
    from mreg.records.refs import LogEntry
    from mreg.sharing.history import History
    from mreg.storage.config import Config


class BucketSource(Source):
    """A registry in object storage, read as another store."""

    concurrency = CONCURRENCY
    """Objects a transfer fetches at once."""
    readers = READERS

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.location = bucket.location

    def log(self, name: str) -> list[LogEntry]:
        """A model's log, assembled from its log objects, every line checked."""
        return self.history(name).entries()

    def history(self, name: str, since: int | None = None) -> History:
        """A model's log, read in batches: all of it, or only from seq ``since`` on (:mod:`.log`)."""
        return read_history(self.bucket, name, since)

    def stream(self, path: str) -> Stream | None:
        return self.bucket.stream(path)

    def model_names(self) -> list[str]:
        return names_listed(self.location, self._listing())

    def listed_models(self) -> dict[str, RemoteModel]:
        """Every model with versions, after one listing of ``models/``, which also shows which
        models have notes: only those notes tables are read, with the refs, at once."""
        listing = self._listing()
        suffix = "/" + NOTES_FILE
        paths = [str(info["path"]) for info in listing]
        noted = {path[len("models/") : -len(suffix)] for path in paths if path.startswith("models/") and path.endswith(suffix)}
        return with_versions(self.models(names_listed(self.location, listing), noted))

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
