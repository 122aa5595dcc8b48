"""``mreg pack``: re-encode cold chunks as packed records, and give hot ones back their raw form.

The plan is :mod:`mreg.operations.pack_plan`'s. Each chunk is then changed on its own,
several at once (zstd, numpy and hashlib release the GIL), the oldest versions' first
so that a chunk is packed while the newer chunks it is a delta against are still raw.
A record is kept only if it decodes back to the chunk's name: it is decoded and
SHA-256d before it is installed, and the raw blob is removed only after the record is
durable (:mod:`mreg.storage.pack_writer`), so a ``kill -9`` at any point leaves every
chunk whole in one form or both. A chunk that cannot be packed (its raw bytes do not
match its name, a base is unreadable) is left as it is and named in the report.

Runs under the store's shared lock, as ``add`` and ``pull`` do (``gc``, which deletes,
waits for it), and under ``pack.lock`` alone: two packs could otherwise make two
chunks deltas of each other.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mreg.errors import CorruptObjectError, MregError
from mreg.operations.maintenance import gc
from mreg.operations.pack_check import depth_limit
from mreg.operations.pack_plan import Chunk, Plan, make_plan
from mreg.records.codec import sha256_digest
from mreg.records.names import Digest
from mreg.records.packing import PackReport
from mreg.storage import pack_codec, pack_writer
from mreg.storage.files import fsync_dirs
from mreg.storage.locks import FileLock
from mreg.storage.packed import blob_bytes, decode_into
from mreg.storage.threads import ProgressReport, counting, in_parallel

if TYPE_CHECKING:
    from mreg.records.reports import GcReport
    from mreg.store.store import Store

WORKERS = os.cpu_count() or 2
PACK_LOCK = "pack.lock"
CHOOSE_FROM = 256 << 10  # a larger chunk's base is chosen from samples, and only the winner encoded whole
BATCH_BYTES = 1 << 30  # raw bytes packed before their records' directories are synced and the raw blobs go
MIN_PLANE_SAVING = pack_codec.MIN_PLANE_SAVING
"""A byte plane zstd shrinks less than this is stored (faster to decode; see bench_pack.py)."""
FAST_PLANE_SAVING = 1 / 6
"""... for a delta against a raw chunk (a hot version's): the newest packed version, loaded most
of the packed ones, decodes ~15 % faster for ~1 % more bytes in all (bench_pack.py)."""
SAMPLE, SAMPLES = 64 << 10, 4  # a dry run encodes this many windows of a chunk larger than SAMPLE * SAMPLES


def pack(store: Store, *, include_hot: bool = False, dry_run: bool = False, progress: ProgressReport | None = None) -> PackReport:
    """Pack the cold chunks of the store (with ``include_hot``, every chunk); with ``dry_run``
    change nothing and estimate, from samples of each chunk, what packing would save.

    Raises:
        InvalidInputError: ``pack.depth`` in the config is not a number from 1 to 50.
        LockTimeoutError: another ``mreg pack`` or a ``gc`` holds the store too long.
    """
    limit = depth_limit(store)
    report = PackReport(dry_run, include_hot)
    with FileLock(store.root / PACK_LOCK, what="the packs (another 'mreg pack' is running)"), store.writing():
        plan = make_plan(store, include_hot=include_hot, limit=limit)
        report.problems += plan.problems
        jobs = [chunk for chunk in plan.chunks.values() if chunk.action in ("encode", "unpack") or (chunk.action == "keep" and chunk.raw)]
        jobs.reverse()  # the oldest versions' chunks first
        _Run(store, plan, report, counting(progress, sum(chunk.size for chunk in jobs))).all(jobs)
        report.kept = sum(1 for chunk in plan.chunks.values() if chunk.action == "keep")
        memo: dict[Digest, int] = {}
        report.deepest = max((plan.depth(digest, memo) for digest in plan.chunks), default=0)
    return report


def collect_and_pack(store: Store, *, dry_run: bool = False, progress: ProgressReport | None = None) -> tuple[GcReport, PackReport]:
    """``mreg gc --pack``: pack the cold chunks, then delete what nothing refers to (the
    bases that packing stopped using too)."""
    packed = pack(store, dry_run=dry_run, progress=progress)
    return gc(store, dry_run=dry_run), packed


class _Run:
    """One pack's chunks, changed on several threads; the report is updated under a lock."""

    def __init__(self, store: Store, plan: Plan, report: PackReport, progress: Callable[[int], None] | None) -> None:
        self.store, self.plan, self.report, self.progress = store, plan, report, progress
        self.objects_dir = str(store.objects.objects_dir)
        self.lock = threading.Lock()
        self.commit_lock = threading.Lock()
        self.local = threading.local()
        self.pending: list[tuple[Digest, int]] = []  # packed: their raw blobs go at the next commit
        self.pending_bytes = 0

    def all(self, jobs: list[Chunk]) -> None:
        try:
            in_parallel(self.one, jobs, WORKERS)
        finally:
            self.commit()  # what was packed before an error keeps its record; its raw form goes

    def commit(self) -> None:
        """Make the new records' names durable (their bytes are), then remove the raw blobs
        they replace: a crash before this leaves both forms, never neither."""
        with self.commit_lock:
            with self.lock:
                pending, self.pending, self.pending_bytes = self.pending, [], 0
            if not pending:
                return
            fsync_dirs(Path(self.objects_dir, digest[7:9]) for digest, _ in pending)
            for digest, _ in pending:  # (counted as freed when it was packed)
                pack_writer.drop_raw(self.store.objects, digest, durable=False)
            fsync_dirs(Path(self.objects_dir, digest[7:9]) for digest, _ in pending)

    def scratch(self, size: int) -> Any:
        """A buffer of ``size`` bytes of this thread's, reused from chunk to chunk."""
        buffer = getattr(self.local, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = self.local.buffer = pack_codec.scratch(size)
        return buffer[:size]

    def one(self, chunk: Chunk) -> None:
        before = self.store.objects.stored_size(chunk.digest)
        packing = chunk.action == "encode" and not self.report.dry_run  # its raw blob goes at the commit
        try:
            if self.report.dry_run:
                self.estimate(chunk)
            elif chunk.action == "encode":
                self.encode(chunk)
            elif chunk.action == "unpack":
                self.keep_raw(chunk, self.checked(chunk.digest, chunk.size, self.bytes_of(chunk.digest, chunk.size)))
            else:
                self.keep_record(chunk)
        except (CorruptObjectError, MregError) as exc:
            with self.lock:
                self.report.problems.append(f"chunk {chunk.digest} is left as it was: {exc}")
        finally:
            with self.lock:
                if not self.report.dry_run:
                    after = self.store.objects.stored_size(chunk.digest)
                    if packing and self.store.objects.object_path(chunk.digest).is_file():
                        after -= chunk.size  # counted when the commit removes it
                    self.report.freed += before - after
                if self.progress is not None:
                    self.progress(chunk.size)

    # ------------------------------------------------------------ the steps

    def encode(self, chunk: Chunk) -> None:
        raw = self.bytes_of(chunk.digest, chunk.size)
        bases = self.bases(chunk)
        itemsize = chunk.itemsize or guess_itemsize(raw)
        fast = {base for base in bases if self.plan.depth(Digest(base), {}) == 0}  # raw, and staying raw
        record = smallest_record(raw, itemsize, bases, fast)
        if record is None:
            self.keep_raw(chunk, raw)
            with self.lock:
                self.report.left_raw += 1
            return
        header = pack_codec.read_header(record, digest=chunk.digest)
        out = self.scratch(chunk.size)
        pack_codec.decode_into(record, out, base=bases.get(header.base or ""), base_digest=header.base, digest=chunk.digest)
        if _sha256(out) != chunk.digest:
            problem = "its raw bytes do not match its name (run 'mreg fsck')" if bytes(out) == bytes(raw) else "its record does not decode back to it"
            raise CorruptObjectError(chunk.digest, problem)
        pack_writer.install_record(self.store.objects, chunk.digest, record, durable=False)  # its bytes are; its name at commit
        with self.lock:
            self.pending.append((chunk.digest, chunk.size))
            self.pending_bytes += chunk.size
            full = self.pending_bytes >= BATCH_BYTES
        if full:
            self.commit()
        with self.lock:
            if header.base is None:
                self.report.standalone += 1
            else:
                self.report.deltas += 1
            self.report.raw_bytes += chunk.size
            self.report.packed_bytes += len(record)

    def keep_raw(self, chunk: Chunk, data: Any) -> None:
        """Leave a chunk raw (checked): install its raw form if it has none, drop its record."""
        objects = self.store.objects
        if not objects.object_path(chunk.digest).is_file():
            pack_writer.install_raw(objects, chunk.digest, [memoryview(data).cast("B")])
            with self.lock:
                self.report.unpacked += chunk.action == "unpack"
        elif _sha256(data) != chunk.digest:
            raise CorruptObjectError(chunk.digest, "its raw bytes do not match its name (run 'mreg fsck')")
        pack_writer.drop_record(objects, chunk.digest)

    def keep_record(self, chunk: Chunk) -> None:
        """A chunk packed as planned and raw too (a pack or an add was cut short): drop the raw form once the record checks."""
        self.checked(chunk.digest, chunk.size, self.decoded(chunk.digest, chunk.size))
        pack_writer.drop_raw(self.store.objects, chunk.digest)

    def estimate(self, chunk: Chunk) -> None:
        """A dry run: the record's size, from samples of a large chunk."""
        with self.lock:
            if chunk.action == "unpack":
                self.report.unpacked += 1
                self.report.freed -= chunk.size - self.store.objects.stored_size(chunk.digest)
            if chunk.action != "encode":
                return
        raw, bases = self.bytes_of(chunk.digest, chunk.size), self.bases(chunk)
        itemsize = chunk.itemsize or guess_itemsize(raw)
        size, delta = estimated_size(raw, itemsize, bases)
        with self.lock:
            if size > chunk.size * (1 - pack_codec.MIN_SAVING):
                self.report.left_raw += 1
                return
            if delta:
                self.report.deltas += 1
            else:
                self.report.standalone += 1
            self.report.raw_bytes += chunk.size
            self.report.packed_bytes += size
            self.report.freed += chunk.size - size

    # -------------------------------------------------------------- bytes

    def bases(self, chunk: Chunk) -> dict[str, Any]:
        """The bytes of the bases a chunk may use (one that cannot be read is left out)."""
        found: dict[str, Any] = {}
        for base in chunk.bases:
            try:
                found[base] = self.bytes_of(base, chunk.size)
            except MregError:
                continue
        return found

    def bytes_of(self, digest: Digest, size: int) -> Any:
        return blob_bytes(self.objects_dir, digest, size)

    def decoded(self, digest: Digest, size: int) -> Any:
        """A chunk's bytes from its record, even while its raw form is there."""
        out = pack_codec.scratch(size)
        decode_into(self.objects_dir, digest, out)  # the first step reads the record, raw form or not
        return out

    @staticmethod
    def checked(digest: Digest, size: int, data: Any) -> Any:
        if _sha256(data) != digest:
            raise CorruptObjectError(digest, "its packed record decodes to bytes that do not match its name")
        return data


def smallest_record(raw: Any, itemsize: int, bases: dict[str, Any], fast: Collection[str] = ()) -> bytes | None:
    """The smallest record of ``raw``, standalone or against one of ``bases``, if it saves
    enough; for a large chunk with bases the choice is made from samples (as a dry run's
    estimate), so that only the winner is encoded whole, with :data:`FAST_PLANE_SAVING`
    when its base is in ``fast``."""
    size = memoryview(raw).cast("B").nbytes
    if size <= CHOOSE_FROM or not bases:
        return pack_codec.encode_best(raw, itemsize=itemsize, bases=bases.items(), min_plane_saving=MIN_PLANE_SAVING)
    _, best = estimated_size(raw, itemsize, bases)
    planes = FAST_PLANE_SAVING if best in fast else MIN_PLANE_SAVING
    record = pack_codec.encode(raw, itemsize=itemsize, base=bases.get(best or ""), base_digest=best, min_plane_saving=planes)
    if record is None and best is not None:  # the samples misled: alone, then
        record = pack_codec.encode(raw, itemsize=itemsize, min_plane_saving=MIN_PLANE_SAVING)
    return record


def estimated_size(raw: Any, itemsize: int, bases: dict[str, Any]) -> tuple[int, str | None]:
    """The size of the smallest record of ``raw`` (standalone or against one of ``bases``),
    from four windows of it when it is large, and the base it is a delta against (None: alone)."""
    view = memoryview(raw).cast("B")
    if view.nbytes <= SAMPLE * SAMPLES:
        record = pack_codec.encode_best(view, itemsize=itemsize, bases=bases.items(), min_saving=None, min_plane_saving=MIN_PLANE_SAVING)
        assert record is not None  # min_saving=None: always a record
        return len(record), pack_codec.read_header(record).base
    step = (view.nbytes - SAMPLE) // (SAMPLES - 1) // itemsize * itemsize
    spans = [(i * step, i * step + SAMPLE) for i in range(SAMPLES)]
    sample = b"".join(view[start:end] for start, end in spans)
    sizes = {}
    for digest, base in [(None, None), *bases.items()]:
        base_sample = None if base is None else b"".join(memoryview(base).cast("B")[start:end] for start, end in spans)
        record = pack_codec.encode(sample, itemsize=itemsize, base=base_sample, base_digest=digest, min_saving=None, min_plane_saving=MIN_PLANE_SAVING)
        assert record is not None
        sizes[digest] = len(record)
    best = min(sizes, key=lambda digest: sizes[digest])
    return sizes[best] * view.nbytes // len(sample), best


def guess_itemsize(raw: Any) -> int:
    """The element size of bytes whose file does not say (a PyTorch checkpoint's storages):
    the one whose standalone record of a window from the middle is smallest."""
    view = memoryview(raw).cast("B")
    start = max(0, view.nbytes // 2 - SAMPLE // 2) // 8 * 8
    window = view[start : start + SAMPLE]
    sizes = {itemsize: len(pack_codec.encode(window, itemsize=itemsize, min_saving=None) or b"") for itemsize in (4, 2, 1)}
    return min(sizes, key=lambda itemsize: sizes[itemsize])


def _sha256(data: Any) -> str:
    return sha256_digest(memoryview(data).cast("B"))
