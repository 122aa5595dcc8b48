"""A registry in a bucket, read as another store: pull, clone and fallbacks."""

from __future__ import annotations

import re

from ..config import Config
from ..remote import Source, Stream
from ..refs import LOG_FILE
from .client import CONCURRENCY, Bucket
from .refs import MAX_TABLE_BYTES, log_text, model_names, read_log

_LOG_PATH = re.compile(r"models/(.+)/" + LOG_FILE)


class BucketSource(Source):
    """A registry in object storage, read as another store."""

    concurrency = CONCURRENCY
    """Objects a transfer fetches at once."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.location = bucket.location

    def read(self, path: str) -> bytes | None:
        """A small object's bytes; a model's ``_log`` is assembled from its log objects."""
        log = _LOG_PATH.fullmatch(path)
        if log is not None:
            entries = read_log(self.bucket, log[1])
            return log_text(entries) if entries else None
        got = self.bucket.get(path, MAX_TABLE_BYTES)
        return got[0] if got is not None else None

    def stream(self, path: str) -> Stream | None:
        return self.bucket.stream(path)

    def model_names(self) -> list[str]:
        return model_names(self.bucket)


def open_bucket_source(location: str, config: Config | None, timeout: float) -> BucketSource:
    """A :class:`BucketSource` for a URL, with the settings of the remote that names it
    (a missing bucket or refused credentials fail here, with their cause)."""
    return BucketSource(Bucket.open(location, config, timeout))
