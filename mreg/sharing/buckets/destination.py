"""Pushing into a bucket: objects create-only and verified, then refs by compare-and-swap.

Objects of versions the bucket already has are never looked at (objects land before
refs, so a version in a table has all its objects). For the others, each blob is
checked with one HEAD request and uploaded only if absent, verified against its
digest as it is read: a small one in one create-only PUT, a large one as a multipart
upload that is completed only if the bytes match. An object that exists but is older
than :data:`FRESHEN_AFTER` is written again, as git "freshens" an object it reuses,
so a concurrent ``mreg gc`` (which spares objects younger than its grace period)
never deletes an object this push is about to refer to; what it rewrote, it checks
once its refs are in (:mod:`.gc_guard`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from mreg.errors import CorruptObjectError, RemoteError
from mreg.records.chain import entry_fields
from mreg.records.codec import sha256_digest
from mreg.records.manifest import Manifest
from mreg.records.names import Digest, refuse_case_twin
from mreg.records.refs import LogEntry, RefTable, changes
from mreg.sharing.buckets.claims import claim_name
from mreg.sharing.buckets.client import (
    CONCURRENCY,
    FRESHEN_AFTER,
    PART_SIZE,
    READERS,
    Bucket,
    age,
)
from mreg.sharing.buckets.evidence import BucketSignatures
from mreg.sharing.buckets.gc_guard import Freshened
from mreg.sharing.buckets.log import append, read_since
from mreg.sharing.buckets.notes import BucketNotes
from mreg.sharing.buckets.refs import (
    add_to_info,
    change_table,
    listed_models,
    read_table,
)
from mreg.sharing.fetching import thread_safe
from mreg.storage.chunk_index import decode_chunk_index
from mreg.storage.layout import PACK_SUFFIX, object_key
from mreg.storage.threads import Progress, ProgressReport, counting, in_parallel

if TYPE_CHECKING:
    from mreg.sharing.history import LogSince
    from mreg.sharing.sources import Source
    from mreg.storage.config import Config


class BucketDestination:
    """A registry in a bucket that a push writes to (see :class:`mreg.transfer.Destination`)."""

    def __init__(self, location: str, config: Config | None, timeout: float) -> None:
        self.bucket = Bucket.open(location, config, timeout, check=False)  # checked by tables()
        self.location = self.bucket.location
        self._lock = threading.Lock()
        self._tables: dict[str, RefTable] = {}  # as read before the copy
        self._listed: set[str] | None = None  # the models info/models listed then
        self.freshened = Freshened(self.bucket)  # what this push rewrote to reuse (see .gc_guard)

    def tables(self, names: list[str]) -> dict[str, RefTable]:
        """Models' tables in the bucket (remembered: the copy skips what they hold),
        read at once, with ``info/models``: a missing bucket or refused credentials
        fail here even when there is no model to read."""

        def read(name: str | None) -> None:
            if name is None:
                self._listed = listed_models(self.bucket)
            else:
                self._tables[name] = read_table(self.bucket, name)[0]

        in_parallel(read, [None, *names], READERS)
        known = sorted(self._listed or ())
        for name in names:  # names that differ only in case would break clones on case-insensitive disks
            if not self._tables[name].versions:
                refuse_case_twin([*known, *(n for n in names if n != name and self._tables[n].versions)], name)
        return {name: self._tables[name] for name in names}

    def histories(self, names: list[str], source_id: str) -> dict[str, LogSince]:
        """Each model's log read back to its last merge from the source, in batches (:mod:`.log`)."""
        return {name: read_since(self.bucket, name, source_id) for name in names}

    def copy_objects(
        self, source: Source, tables: dict[str, RefTable], progress: ProgressReport | None
    ) -> tuple[int, int]:
        """Upload what the new versions need; return (objects, bytes) uploaded."""
        now = datetime.now(timezone.utc)
        manifests = sorted(
            {d for name, table in tables.items() for v, d in table.versions.items() if self._known(name).versions.get(v) != d}
        )
        wanted = {d: _read_verified(source, d) for d in manifests}
        files = {entry.digest: entry.size for data in wanted.values() for entry in Manifest.decode(data).files}
        blobs: dict[Digest, int] = {}  # every blob the files need, with its size
        indexes: dict[Digest, bytes] = {}
        for digest, size in sorted(files.items()):
            index = source.read(object_key(digest) + ".chunks")
            if index is None:
                blobs[digest] = size
                continue
            indexes[digest] = index
            blobs.update(decode_chunk_index(index, digest))
        stale = self._absent_or_stale([*blobs, *(f"{d}.chunks" for d in indexes), *manifests], now)
        todo = [d for d in blobs if d in stale]
        advance = thread_safe(counting(progress, sum(blobs[d] for d in todo)))
        sent = [0, 0]
        packed: dict[Digest, bool] = {}  # blobs stored packed here: uploaded as they are, below

        def put_blob(digest: Digest) -> None:
            size = self._put_blob(source, digest, digest in stale and stale[digest], advance)
            with self._lock:
                if size is None:
                    packed[digest] = stale[digest]
                    return
                sent[0] += 1
                sent[1] += size

        in_parallel(put_blob, todo, CONCURRENCY)
        if packed:
            sent[0] += len(packed)
            sent[1] += self._put_packed(source, packed, now, advance)
        for digest, index in indexes.items():  # after their chunks
            if f"{digest}.chunks" in stale:
                self._put_small(object_key(digest) + ".chunks", index, stale[f"{digest}.chunks"])
        for digest in manifests:  # after their files
            if digest in stale:
                self._put_small(object_key(digest), wanted[digest], stale[digest])
                sent[0] += 1
                sent[1] += len(wanted[digest])
        return sent[0], sent[1]

    def _known(self, name: str) -> RefTable:
        """The table read before the copy: the objects of its versions are in the bucket."""
        return self._tables[name] if name in self._tables else self.tables([name])[name]

    def update_refs(
        self,
        name: str,
        merge: Callable[[RefTable], RefTable],
        imported: Callable[[LogSince], tuple[list[LogEntry], dict[str, Any] | None]],
        via: str,
        entry: LogEntry,
    ) -> tuple[RefTable, RefTable]:
        """Change the model's table by compare-and-swap, then log, as one new object, the
        source's entries the bucket lacks, the change, and the merge; a model new here
        first claims its name (:mod:`.claims`)."""
        if not self._known(name).versions and name not in (self._listed or ()):
            claim_name(self.bucket, name)
        old, new = change_table(self.bucket, name, merge)
        if old == new:
            return old, new
        entries, marker = imported(read_since(self.bucket, name, via))
        lines = [entry_fields(e, via=via) for e in entries]
        lines += [entry_fields(entry._replace(ref=ref, old=before, new=after)) for ref, before, after in changes(old, new)]
        if marker is not None:
            lines.append({**entry._replace(ref="_merge", old=None, new=None, message="").to_dict(), **marker})
        append(self.bucket, name, lines)
        return old, new

    def writing(self) -> AbstractContextManager[object]:
        """No lock exists in a bucket: gc spares young objects instead (see the module doc)."""
        return nullcontext()

    def note_home(self) -> BucketNotes:
        """Notes go to the bucket's ``_notes`` tables by compare-and-swap."""
        return BucketNotes(self.bucket, self.freshened)

    def signature_home(self) -> BucketSignatures:
        """Signatures go to the bucket's ``_signatures`` indexes by compare-and-swap."""
        return BucketSignatures(self.bucket, self.freshened)

    def finish(self, names: list[str]) -> None:
        """List the models in ``info/models``, for readers over plain HTTP; then make sure no
        concurrent gc took an object this push rewrote to reuse (:mod:`.gc_guard`)."""
        add_to_info(self.bucket, names, self._listed)
        self.freshened.settle()

    # ------------------------------------------------------------- objects

    def _absent_or_stale(self, digests: list[str], now: datetime) -> dict[str, bool]:
        """The objects to upload (named by digest, ``.chunks`` appended for an index):
        absent (False) or present but old enough to freshen (True)."""
        found: dict[str, bool] = {}

        def check(name: str) -> None:
            info = self.bucket.head(object_key(name))
            if info is None and not name.endswith(".chunks"):  # a blob may be there packed
                info = self.bucket.head(object_key(name) + PACK_SUFFIX)
            if info is None or age(info, now) > FRESHEN_AFTER:
                with self._lock:
                    found[name] = info is not None

        in_parallel(check, digests, READERS)
        return found

    def _put_small(self, path: str, data: bytes, freshen: bool) -> None:
        if freshen:
            self.bucket.overwrite(path, data)  # the same bytes: only its time changes
            self.freshened.record(path, partial(self.bucket.overwrite, path, data))
        else:
            self.bucket.create(path, data)  # False: another push wrote the same bytes first

    def _put_packed(self, source: Source, packed: dict[Digest, bool], now: datetime, advance: Progress | None) -> int:
        """Upload blobs stored packed in ``source`` as they are, with the bases they need (see
        :mod:`.packs`); return the bytes uploaded."""
        from mreg.sharing.buckets.packs import PackUploads  # start-up: only a push of packed objects

        uploads = PackUploads(self.bucket, source, now)
        raw_bases = uploads.plan(packed)
        sent = [0]

        def put_base(digest: Digest) -> None:
            size = self._put_blob(source, digest, raw_bases[digest], None)
            with self._lock:
                sent[0] += size or 0

        in_parallel(put_base, sorted(raw_bases), CONCURRENCY)
        return sent[0] + uploads.upload()

    def _put_blob(self, source: Source, digest: Digest, overwrite: bool, advance: Progress | None) -> int | None:
        """Upload one blob from ``source``, verified as it is read; return its size (None: the
        source stores it packed, and :meth:`_put_packed` uploads it)."""
        streamed = source.stream(object_key(digest))
        if streamed is None:
            if source.stream(object_key(digest) + PACK_SUFFIX) is not None:
                return None
            raise RemoteError(f"{source.location} lacks object {digest}, which its refs need (run 'mreg fsck' there)")
        blocks, size = streamed
        checked = _verified(blocks, digest, advance)
        if size is not None and size <= PART_SIZE:
            self._put_small(object_key(digest), b"".join(checked), overwrite)
        else:
            self.bucket.upload(object_key(digest), checked)
            if overwrite:
                self.freshened.record(object_key(digest), partial(self._put_blob, source, digest, False, None))
        return size or 0


def _verified(blocks: Iterator[bytes], digest: Digest, advance: Progress | None) -> Iterator[bytes]:
    """The blocks, hashed as they pass; raises after the last one if they do not match."""
    hasher = hashlib.sha256()
    for block in blocks:
        hasher.update(block)
        if advance is not None:
            advance(len(block))
        yield block
    if "sha256:" + hasher.hexdigest() != digest:
        raise CorruptObjectError(digest, "its bytes do not match its digest; not uploaded")


def _read_verified(source: Source, digest: Digest) -> bytes:
    data = source.read(object_key(digest))
    if data is None:
        raise RemoteError(f"{source.location} lacks object {digest}, which its refs need (run 'mreg fsck' there)")
    if sha256_digest(data) != digest:
        raise CorruptObjectError(digest, "its bytes do not match its digest; not uploaded")
    return data
