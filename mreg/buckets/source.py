"""A registry in a bucket, read as another store: pull, clone and fallbacks."""

from __future__ import annotations

from ..config import Config
from ..fetching import in_parallel
from ..remote import Source, Stream
from ..refs import LogEntry
from .client import CONCURRENCY, READERS, Bucket
from .refs import model_names, read_log


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
        return read_log(self.bucket, name)

    def stream(self, path: str) -> Stream | None:
        return self.bucket.stream(path)

    def model_names(self) -> list[str]:
        """Every model with a table, by listing ``models/``, with :meth:`Bucket.check` at
        the same time: its error names the cause where a listing's may not (moto answers
        a listing by a user denied access with a signature error)."""
        names: list[str] = []
        steps = [self.bucket.check, lambda: names.extend(model_names(self.bucket))]
        in_parallel(lambda step: step(), steps, len(steps))  # the first step's error first
        return names


def open_bucket_source(location: str, config: Config | None, timeout: float, *, check: bool = True) -> BucketSource:
    """A :class:`BucketSource` for a URL, with the settings of the remote that names it
    (a missing bucket or refused credentials fail here, with their cause, or with
    ``check=False`` at the first read)."""
    return BucketSource(Bucket.open(location, config, timeout, check=check))
