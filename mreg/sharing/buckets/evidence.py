"""Signature objects in a bucket: create-only, freshened when old (the ref tables file them).

A model's ref table names its signatures (``signature MANIFEST OBJECT``), so a
signature changes the table by the same compare-and-swap as versions and tags do.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING

from mreg.errors import RemoteError
from mreg.records.codec import sha256_digest
from mreg.records.evidence import MAX_SIGNATURE_OBJECT
from mreg.sharing.buckets.client import FRESHEN_AFTER, READERS, Bucket, age
from mreg.storage.layout import object_key

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.sharing.buckets.gc_guard import Freshened


class BucketSignatures:
    """The signatures of a registry in a bucket (a :class:`mreg.sharing.evidence_sync.SignatureHome`)."""

    readers = READERS

    def __init__(self, bucket: Bucket, freshened: Freshened | None = None) -> None:
        self.bucket = bucket
        self.freshened = freshened

    def signature_bytes(self, digest: Digest) -> bytes | None:
        got = self.bucket.get(object_key(digest), MAX_SIGNATURE_OBJECT)
        if got is None:
            return None
        if sha256_digest(got[0]) != digest:
            raise RemoteError(f"{self.bucket.location}: signature object {digest} does not match its digest")
        return got[0]

    def add_signature_object(self, data: bytes) -> None:
        """Write a signature object create-only (freshened when old, as a push does its objects)."""
        path = object_key(sha256_digest(data))
        info = self.bucket.head(path)
        if info is None:
            self.bucket.create(path, data)
        elif age(info, datetime.now(timezone.utc)) > FRESHEN_AFTER:
            self.bucket.overwrite(path, data)
            if self.freshened is not None:
                self.freshened.record(path, partial(self.bucket.overwrite, path, data))
