"""gc for a bucket: mark and sweep with a grace period, as git's prune does.

No lock can keep pushes out of a bucket, so gc never deletes a young object: it
takes a lease (:mod:`.gc_guard`), lists the objects, then reads every ref table and
marks what the refs reach (manifests, files, chunks, notes, signatures), then deletes
each unreachable object that a HEAD just before the delete still shows older than the
grace period, and marks its lease done. An object a push uploaded is young until its
refs land; one a push found already there is reused only if younger than half the
grace period, else written again ("freshened"; see :mod:`.destination`), and a push
that freshened anything waits for running gcs and uploads again what they took. A
push that takes less than the other half of the grace period therefore never loses
an object: :mod:`.gc_guard` says why.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from mreg.errors import CorruptObjectError, RemoteError
from mreg.records.codec import sha256_digest
from mreg.records.limits import MAX_CHUNK_INDEX_SIZE, MAX_MANIFEST_SIZE
from mreg.records.manifest import Manifest
from mreg.records.names import Digest
from mreg.records.notes import history
from mreg.records.reports import GcReport
from mreg.sharing.buckets.client import FRESHEN_AFTER, Bucket, age
from mreg.sharing.buckets.gc_guard import LEASES, Lease
from mreg.sharing.buckets.notes import BucketNotes
from mreg.sharing.buckets.packs import mark_bases
from mreg.sharing.buckets.refs import model_names, read_table
from mreg.storage.chunk_index import decode_chunk_index
from mreg.storage.layout import CHUNKS_SUFFIX, PACK_SUFFIX, object_key

if TYPE_CHECKING:
    from mreg.storage.config import Config

DEFAULT_GRACE = 2 * FRESHEN_AFTER
OLD_LEASE = timedelta(days=1)
_HEX = frozenset("0123456789abcdef")


def collect(location: str, config: Config | None, timeout: float, *, grace: timedelta = DEFAULT_GRACE, dry_run: bool = False) -> GcReport:
    """Delete the objects of a bucket registry that no ref reaches and that are older than ``grace``.

    A grace period shorter than the default (24 hours) is safe only while no push is
    under way, as ``git prune --expire=now`` is.

    Raises:
        RemoteError: a ref's manifest is missing or corrupt: gc must not guess, and
            deletes nothing.
    """
    bucket = Bucket.open(location, config, timeout)
    if dry_run:
        return _sweep(bucket, grace, None)
    with Lease(bucket) as lease:  # before the listing: see .gc_guard
        report = _sweep(bucket, grace, lease)
    _drop_old_leases(bucket)
    return report


def _sweep(bucket: Bucket, grace: timedelta, lease: Lease | None) -> GcReport:
    """List, mark, and delete (with a lease) or only report (without one)."""
    listed = {key: info for info in bucket.list("objects/") if (key := digest_of(str(info["path"]))) is not None}
    reachable = _mark(bucket, {d for d, suffix in listed if suffix == CHUNKS_SUFFIX}, lease)
    reachable |= mark_bases(bucket, listed, reachable)  # a kept packed object keeps its bases
    report = GcReport(lease is None)
    for (digest, suffix), info in sorted(listed.items(), key=lambda item: (item[0][1] != PACK_SUFFIX, item[0])):  # records before their bases
        if digest in reachable or age(info, datetime.now(timezone.utc)) <= grace:
            continue
        path = object_key(digest) + suffix
        if lease is not None:
            lease.beat()
            fresh = bucket.head(path)  # the listing is old by now: a push may have freshened it since
            if fresh is None or age(fresh, datetime.now(timezone.utc)) <= grace:
                continue
            bucket.delete(path)
        report.objects.append(digest)
        report.bytes += int(info.get("size") or 0)
    return report


def _drop_old_leases(bucket: Bucket) -> None:
    """Delete the leases of gcs that died long ago (not rewritten for a day: a push has long
    stopped waiting for them)."""
    now = datetime.now(timezone.utc)
    for info in bucket.list(LEASES):
        if age(info, now) > OLD_LEASE:
            bucket.delete(str(info["path"]))


def _mark(bucket: Bucket, chunked: set[Digest], lease: Lease | None) -> set[Digest]:
    """Every object a ref table leads to: manifests, files, the chunks of chunked files,
    the notes on them with their history, and their signatures."""
    reachable: set[Digest] = set()
    notes = BucketNotes(bucket)
    for name in model_names(bucket):
        if lease is not None:
            lease.beat()
        for head in notes.notes(name).values():
            reachable.update(history(notes.note, head))
        table = read_table(bucket, name)[0]
        reachable.update(digest for _, digest in table.signatures)
        for digest in table.versions.values():
            reachable.add(digest)
            data = _read(bucket, digest, verify=True)
            assert data is not None  # missing_ok is off: a missing manifest raised
            for entry in Manifest.decode(data, digest).files:
                reachable.add(entry.digest)
                if entry.digest in chunked:
                    index = _read(bucket, entry.digest, suffix=CHUNKS_SUFFIX, missing_ok=True)
                    if index is not None:
                        reachable.update(d for d, _ in decode_chunk_index(index, entry.digest))
    return reachable


def _read(bucket: Bucket, digest: Digest, *, suffix: str = "", verify: bool = False, missing_ok: bool = False) -> bytes | None:
    got = bucket.get(object_key(digest) + suffix, MAX_CHUNK_INDEX_SIZE if suffix else MAX_MANIFEST_SIZE)
    if got is None:
        if missing_ok:
            return None
        raise RemoteError(f"{bucket.location}: object {digest} is missing though a ref needs it; gc stopped, nothing was deleted")
    if verify and sha256_digest(got[0]) != digest:
        raise CorruptObjectError(digest, "its bytes do not match its digest; gc stopped, nothing was deleted")
    return got[0]


def digest_of(path: str) -> tuple[Digest, str] | None:
    """``objects/ab/cdef…[.chunks|.pack]`` -> (digest, suffix); None for any other key (never deleted)."""
    parts = path.split("/")
    if len(parts) != 3 or len(parts[1]) != 2:
        return None
    name = parts[1] + parts[2]
    suffix = next((suffix for suffix in (CHUNKS_SUFFIX, PACK_SUFFIX) if name.endswith(suffix)), "")
    hexpart = name.removesuffix(suffix)
    if len(hexpart) != 64 or not set(hexpart) <= _HEX:
        return None
    return Digest("sha256:" + hexpart), suffix
