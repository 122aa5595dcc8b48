"""Packed objects in a bucket: pushed as they are with their bases, kept by gc, checked by fsck.

A chunk stored packed here goes to ``objects/ab/cdef....pack`` in the bucket, as it
is: a push reads far fewer bytes into the bucket. Every record is decoded and checked
against its name before it is uploaded, and its base before it (a raw base as any
blob), so the bucket never holds a record without its base; a base already there but
older than :data:`~mreg.sharing.buckets.client.FRESHEN_AFTER` is written again, as
reused blobs are, so a concurrent gc cannot take it. gc keeps the bases of the packed
objects it keeps (read from the records' first bytes), and fsck follows each reachable
record's chain to a base that is there.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mreg.errors import CorruptObjectError, MregError, RemoteError
from mreg.records.names import Digest
from mreg.sharing.buckets.client import FRESHEN_AFTER, READERS, Bucket, ObjectInfo, age
from mreg.storage.layout import PACK_SUFFIX, object_key
from mreg.storage.pack_forest import decode_all
from mreg.storage.pack_layout import BASE_HEADER, CorruptPackError, read_header
from mreg.storage.packed import MAX_CHAIN
from mreg.storage.threads import in_parallel

if TYPE_CHECKING:
    from mreg.sharing.sources import Source

Listed = Mapping[tuple[Digest, str], ObjectInfo]
"""A bucket's objects by (digest, suffix), from one listing."""


class PackUploads:
    """The packed objects one push uploads, with the bases they need, each checked once."""

    def __init__(self, bucket: Bucket, source: Source, now: datetime) -> None:
        root = getattr(source, "root", None)
        if not isinstance(root, Path):
            raise RemoteError(f"{source.location}: packed objects are pushed from a registry on disk")
        self.bucket, self.now = bucket, now
        self.objects_dir = str(root / "objects")
        self.records: dict[Digest, bool] = {}  # to upload: True when the bucket has it, old
        self.sent = 0
        self._lock = threading.Lock()

    def plan(self, records: Mapping[Digest, bool]) -> dict[Digest, bool]:
        """Take the records to upload (stored packed here) and add the records of their chains
        that the bucket lacks or holds old; return the raw blobs those chains end at that it
        lacks or holds old, to upload first (True: old)."""
        self.records.update(records)
        raw: dict[Digest, bool] = {}
        level = list(records)
        for _ in range(MAX_CHAIN):
            bases = {base for digest in level if (base := _local_base(self.objects_dir, digest)) is not None}
            bases -= set(self.records) | set(raw)
            status = self._status(bases)
            level = []
            for base, (packed, state) in status.items():
                if state is None:  # in the bucket and young: its own chain is there too
                    continue
                if packed:
                    self.records[base] = state
                    level.append(base)
                else:
                    raw[base] = state
            if not level:
                break
        return raw

    def upload(self) -> int:
        """Upload the planned records, every base before what depends on it; return the bytes uploaded.

        Raises:
            CorruptObjectError: a record, or a base, does not decode to its name: nothing
                that depends on it is uploaded.
        """
        problems = decode_all(self.objects_dir, self.records, self._put, workers=READERS)
        for digest, problem in sorted(problems.items()):
            raise CorruptObjectError(digest, f"{problem}; not uploaded")
        return self.sent

    def _status(self, digests: set[Digest]) -> dict[Digest, tuple[bool, bool | None]]:
        """For each base: stored packed here?, and in the bucket: absent (False), old (True) or young (None)."""
        found: dict[Digest, tuple[bool, bool | None]] = {}

        def look(digest: Digest) -> None:
            packed = not (Path(self.objects_dir) / digest[7:9] / digest[9:]).is_file()
            info = self.bucket.head(object_key(digest) + (PACK_SUFFIX if packed else ""))
            state = False if info is None else (True if age(info, self.now) > FRESHEN_AFTER else None)
            with self._lock:
                found[digest] = (packed, state)

        in_parallel(look, sorted(digests), READERS)
        return found

    def _put(self, digest: Digest, data: Any, record: bytes) -> None:
        """Called with each record once it decoded to its name, after its base's."""
        key = object_key(digest) + PACK_SUFFIX
        if self.records.get(digest):
            self.bucket.overwrite(key, record)
        elif not self.bucket.create(key, record):
            return  # another push wrote it first
        with self._lock:
            self.sent += len(record)


def _local_base(objects_dir: str, digest: Digest) -> Digest | None:
    """The base the record of ``digest`` stored here names (None: standalone, or unreadable:
    the upload reports it)."""
    try:
        with open(Path(objects_dir) / digest[7:9] / (digest[9:] + PACK_SUFFIX), "rb") as stream:
            base = read_header(stream.read(BASE_HEADER), digest=digest).base
    except (OSError, MregError):
        return None
    return Digest(base) if base is not None else None


def base_of(bucket: Bucket, digest: Digest) -> Digest | None:
    """The base a record in the bucket names (None: standalone), from its first bytes.

    Raises:
        RemoteError: it cannot be read, or is not a record.
    """
    head = bucket.head_bytes(object_key(digest) + PACK_SUFFIX, BASE_HEADER)
    if head is None:
        raise RemoteError(f"{bucket.location}: object {digest} is missing though a ref needs it")
    try:
        base = read_header(head, digest=digest).base
    except CorruptPackError as exc:
        raise RemoteError(f"{bucket.location}: {exc.message}") from None
    return Digest(base) if base is not None else None


def mark_bases(bucket: Bucket, listed: Listed, reachable: set[Digest]) -> set[Digest]:
    """The objects the reachable packed objects of a bucket need as bases, through every
    step of their chains (gc keeps them). Headers are read several at a time."""
    found: set[Digest] = set()
    level = [digest for digest in reachable if (digest, PACK_SUFFIX) in listed]
    for _ in range(MAX_CHAIN):
        bases: dict[Digest, Digest | None] = {}

        def read(digest: Digest, bases: dict[Digest, Digest | None] = bases) -> None:
            bases[digest] = base_of(bucket, digest)

        in_parallel(read, level, READERS)
        fresh = {base for base in bases.values() if base is not None and base not in reachable and base not in found}
        found |= fresh
        level = [digest for digest in fresh if (digest, PACK_SUFFIX) in listed]
        if not level:
            break
    return found


def check_packed(bucket: Bucket, listed: Listed, chunk: Digest) -> str | None:
    """What is wrong with a packed chunk in a bucket (None: its chain ends at a base that is
    there, within :data:`~mreg.storage.packed.MAX_CHAIN` steps and without a loop)."""
    trail = [chunk]
    while True:
        try:
            base = base_of(bucket, trail[-1])
        except RemoteError as exc:
            return exc.message
        if base is None or (base, "") in listed:
            return None
        if (base, PACK_SUFFIX) not in listed:
            return f"chunk {chunk} is packed against {base}, which is missing"
        if base in trail or len(trail) > MAX_CHAIN:
            return f"chunk {chunk} is packed in a chain of deltas that loops or is longer than {MAX_CHAIN}"
        trail.append(base)

