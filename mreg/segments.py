"""A stored file as a sequence of blobs: reading it, writing it, and its chunk index.

A file's bytes live in one blob, or in several chunks listed by a ``.chunks``
index (see :mod:`mreg.object_store`). A :class:`Segment` is one of those blobs with
the offset at which its bytes start in the file.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

import msgpack

from .errors import CorruptObjectError, ObjectNotFoundError
from .fileutil import fsync_all, fsync_dirs, start_writeback, unique_temp_path, write_all
from .names import Digest, digest_from_hex, is_digest
from .objects import canonical_encode

if TYPE_CHECKING:
    from .object_store import ObjectStore

BLOCK_SIZE = 4 << 20
WRITEBACK_STEP = 16 << 20  # start writing to disk after this many new bytes
MAX_PENDING = 256  # blobs written but not yet synced and installed (open files)
CHUNKS_KIND = "mreg.chunks"
Block = bytes | memoryview


class Segment(NamedTuple):
    """A run of a stored file's bytes held in one local blob."""

    path: str  # a local file
    start: int  # offset of the segment's first byte in the whole file
    size: int
    digest: Digest


def read_blocks(stream: BinaryIO, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield a binary stream's bytes in blocks (fresh objects: a writer may keep them)."""
    while block := stream.read(block_size):
        yield block


def encode_chunk_index(size: int, chunks: list[tuple[Digest, int]]) -> bytes:
    """The bytes of a ``.chunks`` file."""
    return canonical_encode({"kind": CHUNKS_KIND, "size": size, "chunks": [[d, n] for d, n in chunks]})


def decode_chunk_index(data: bytes, digest: str) -> list[tuple[Digest, int]]:
    """The ``(chunk digest, size)`` list of a ``.chunks`` file, validated."""
    try:
        raw = msgpack.unpackb(data, raw=False)
        chunks = [(Digest(d), int(n)) for d, n in raw["chunks"]]
        valid = raw["kind"] == CHUNKS_KIND and all(is_digest(d) and n > 0 for d, n in chunks)
        valid = valid and sum(n for _, n in chunks) == raw["size"]
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        valid = False
    if not valid:
        raise CorruptObjectError(digest, "its chunk index cannot be read")
    return chunks


def segment_blocks(segments: list[Segment]) -> Iterator[bytes]:
    """The bytes of several blobs in order, unverified (for a caller that checks the whole)."""
    for segment in segments:
        try:
            stream = open(segment.path, "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(segment.digest) from None
        with stream:
            yield from read_blocks(stream)


def write_hashing(fd: int, blocks: Iterable[Block]) -> str:
    """Write blocks to ``fd`` on a writer thread while this one hashes them; return the hex SHA-256."""
    hasher = hashlib.sha256()
    writer = _Background()
    written = 0

    def write(block: Block) -> None:
        nonlocal written
        write_all(fd, block)
        written += len(block)
        if written >= WRITEBACK_STEP:
            start_writeback(fd)
            written = 0

    try:
        for block in blocks:
            hasher.update(block)
            writer.submit(partial(write, block))
        writer.drain()
    finally:
        writer.stop()
    return hasher.hexdigest()


def stage_blob(tmp_dir: Path, blocks: Iterable[Block]) -> Path:
    """Write ``blocks`` to a new temporary file in ``tmp_dir`` and start its writeback, for a
    :class:`SegmentWriter` to adopt (so that several threads write at once); not synced,
    not named; nothing is left on failure."""
    temp = unique_temp_path(tmp_dir, "obj")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            for block in blocks:
                write_all(fd, block)
            start_writeback(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def verified_blocks(segment: Segment) -> Iterator[bytes]:
    """A blob's bytes; raises CorruptObjectError after its last block if they do not match."""
    hasher = hashlib.sha256()
    try:
        stream = open(segment.path, "rb")
    except FileNotFoundError:
        raise ObjectNotFoundError(segment.digest) from None
    with stream:
        for block in read_blocks(stream):
            hasher.update(block)
            yield block
    if "sha256:" + hasher.hexdigest() != segment.digest:
        raise CorruptObjectError(segment.digest, "its bytes do not match its digest")


class SeekableReader(io.RawIOBase):
    """A seekable, read-only file of ``size`` bytes; a subclass's ``readinto`` reads from
    ``position`` and advances it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.position = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position


class SegmentReader(SeekableReader):
    """A seekable, read-only file over a stored file's segments (for ``torch.load``)."""

    def __init__(self, segments: list[Segment]) -> None:
        super().__init__(sum(s.size for s in segments))
        self.segments = segments
        self._starts = [s.start for s in segments]
        self._open: dict[int, BinaryIO] = {}

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.size:
            return 0
        index = bisect.bisect_right(self._starts, self.position) - 1
        segment = self.segments[index]
        if index not in self._open:
            self._open[index] = open(segment.path, "rb")
        stream = self._open[index]
        stream.seek(self.position - segment.start)
        wanted = min(len(buffer), segment.start + segment.size - self.position)
        count = stream.readinto(memoryview(buffer).cast("B")[:wanted])  # type: ignore[attr-defined]
        self.position += count
        return count

    def close(self) -> None:
        for stream in self._open.values():
            stream.close()
        self._open.clear()
        super().close()


class _Background:
    """One thread that runs work in order: writing blocks, feeding a second hash,
    installing finished blobs, while the caller hashes the next block.

    hashlib and os.write release the GIL, so on two cores a file is hashed, and
    written, in about the time of hashing it. Blocks must not change once queued.
    """

    def __init__(self, backlog: int = 4) -> None:
        import queue  # writers only: keep read-only commands quick to start
        import threading

        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=backlog)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mreg-writer", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        """Queue work; re-raise here an error that earlier work met."""
        self.check()
        self._queue.put(work)

    def drain(self) -> None:
        """Wait until all queued work is done; re-raise its error here."""
        self._queue.join()
        self.check()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            try:
                if self._error is None:  # after a failure, skip the rest
                    work()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()


class SegmentWriter:
    """Writes a stream into blobs, starting a new one at each cut point.

    Three threads share the work, so that on two cores no byte waits for one thread
    to both hash and write it: the caller's thread hashes each segment, a hashing
    thread feeds the whole file's hash, and the writer thread writes and starts each
    blob's writeback to disk early. Finished blobs wait in a batch: each is fsynced,
    then renamed into place, then the directories they entered are fsynced once for
    the whole batch.

    ``expected`` lists the digest each segment must have (a file fetched from another
    store, cut where its chunk index says): a segment that differs raises
    CorruptObjectError before it is kept.
    """

    def __init__(self, store: ObjectStore, cuts: list[int], expected: list[Digest] | None = None) -> None:
        self.store = store
        self.cuts = cuts
        self.expected = expected
        self.whole = hashlib.sha256() if cuts else None  # one segment: its hash is the file's
        self.position = 0
        self.chunks: list[tuple[Digest, int]] = []
        self.wrote_any = False
        self._next_cut = 0
        self._temps: list[Path] = []  # every temporary file, for cleanup after a failure
        self._pending: list[tuple[int, Path, Path]] = []  # written blobs to sync and install
        self._unflushed = 0
        self._background = _Background()
        self._hashing = _Background() if self.whole is not None else None
        self._open()

    def _open(self) -> None:
        self.temp = unique_temp_path(self.store.tmp_dir, "obj")
        self._temps.append(self.temp)
        self.fd: int | None = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, block: Block) -> None:
        view = memoryview(block)
        while view:
            part = view[: self._room(len(view))]
            self.hasher.update(part)
            self._feed_whole(part)
            self._background.submit(partial(self._write, self.fd, part))
            self.size += len(part)
            view = view[len(part) :]
            self._advance(len(part))

    def skip(self, digest: Digest, size: int, blocks: Iterable[Block]) -> None:
        """Take a whole segment that is already stored: its bytes only feed the file's hash.

        ``blocks`` must hold exactly ``size`` bytes, from a cut to the next.
        """
        self._whole_segment(size)
        for block in blocks:
            self._feed_whole(memoryview(block))
        self.chunks.append((digest, size))
        self._advance(size)

    def adopt(self, digest: Digest, size: int, staged: Path, blocks: Iterable[Block]) -> None:
        """Take a whole segment that the caller checked against ``digest`` and already wrote
        to ``staged`` (:func:`stage_blob`): its bytes (``blocks``, ``size`` of them) only feed
        the file's hash, and its file joins the batch. The writer owns ``staged`` from now on."""
        self._temps.append(staged)
        self.skip(digest, size, blocks)
        self._background.submit(partial(self._finished, None, staged, digest))

    def _whole_segment(self, size: int) -> None:
        end = self.cuts[self._next_cut] if self._next_cut < len(self.cuts) else self.position + size
        if self.size or end - self.position != size:
            raise ValueError("a whole segment must lie between two cuts")

    def _room(self, wanted: int) -> int:
        """How many of ``wanted`` bytes fit before the next cut."""
        return min(wanted, self.cuts[self._next_cut] - self.position) if self._next_cut < len(self.cuts) else wanted

    def _advance(self, count: int) -> None:
        self.position += count
        if self._next_cut < len(self.cuts) and self.position == self.cuts[self._next_cut]:
            self._next_cut += 1
            if self.size:
                self._close_segment()
                self._open()

    def _feed_whole(self, part: memoryview) -> None:
        if self._hashing is not None:
            self._hashing.submit(partial(self.whole.update, part))  # type: ignore[union-attr]

    def _write(self, fd: int, part: memoryview) -> None:
        """On the writer thread: write, and start writeback now and then."""
        write_all(fd, part)
        self._unflushed += len(part)
        if self._unflushed >= WRITEBACK_STEP:
            start_writeback(fd)
            self._unflushed = 0

    def _close_segment(self, expected: Digest | None = None) -> None:
        digest = digest_from_hex(self.hasher.hexdigest())
        if self.expected is not None:
            expected = self.expected[len(self.chunks)]
        if expected is not None and digest != expected:
            raise CorruptObjectError(expected, f"received bytes hash to {digest}")
        fd, self.fd = self.fd, None
        self._background.submit(partial(self._finished, fd, self.temp, digest))
        self.chunks.append((digest, self.size))

    def _finished(self, fd: int | None, temp: Path, digest: Digest) -> None:
        """On the writer thread, after the segment's bytes: batch it, unless already stored
        (``fd`` None: a staged blob, whose writeback has started; it is opened to be synced)."""
        target = self.store.object_path(digest)
        if target.is_file():
            if fd is not None:
                os.close(fd)
            temp.unlink(missing_ok=True)
            return
        if fd is None:
            fd = os.open(temp, os.O_RDONLY)
        else:
            start_writeback(fd)
            self._unflushed = 0
        self._pending.append((fd, temp, target))
        if len(self._pending) >= MAX_PENDING:  # bound the open files
            self._install_pending()

    def _install_pending(self) -> None:
        """fsync every pending blob, rename each into place, then fsync their directories once."""
        pending, self._pending = self._pending, []
        try:
            fsync_all([fd for fd, _, _ in pending])
        finally:
            for fd, _, _ in pending:
                os.close(fd)
        directories = []
        for _, temp, target in pending:
            directories += self.store.install(temp, target, durable=False)
        fsync_dirs(directories)
        self.wrote_any = self.wrote_any or bool(pending)

    def finish(self, expected: Digest | None = None) -> tuple[Digest, list[tuple[Digest, int]]]:
        """Close the last segment, make every new blob durable; return the file's digest and its chunks.

        With ``expected`` a mismatch raises CorruptObjectError: for a single blob
        nothing is kept; for a cut file its segments (each checked) may be kept, but
        the caller must not record the file.
        """
        if self.size or not self.chunks:
            self._close_segment(expected if not self.cuts else None)
        self._background.submit(self._install_pending)
        self._background.drain()
        if self._hashing is not None:
            self._hashing.drain()
        digest = digest_from_hex(self.whole.hexdigest()) if self.whole is not None else self.chunks[0][0]
        if expected is not None and digest != expected:
            raise CorruptObjectError(expected, f"its bytes hash to {digest}")
        return digest, self.chunks

    def discard(self) -> None:
        """Stop the threads and remove what is left (after an error, too)."""
        self._background.stop()
        if self._hashing is not None:
            self._hashing.stop()
        for fd in [self.fd, *(fd for fd, _, _ in self._pending)]:
            if fd is not None:
                os.close(fd)
        self.fd, self._pending = None, []
        for temp in self._temps:
            temp.unlink(missing_ok=True)


def plan_stream(blocks: Iterator[Block]) -> tuple[list[int], Iterator[Block]]:
    """Peek at the start of a stream for a safetensors header; return cuts and the whole stream."""
    from .chunking import safetensors_cuts, safetensors_prefix_length

    prefix = bytearray()
    needed: int | None = 8
    while needed is not None and len(prefix) < needed:
        block = next(blocks, None)
        if block is None:
            break
        prefix += block
        if len(prefix) >= 8 and needed == 8:
            needed = safetensors_prefix_length(bytes(prefix[:8]))
    cuts = safetensors_cuts(bytes(prefix[:needed])) if needed is not None and len(prefix) >= needed else []
    return cuts, itertools.chain([memoryview(prefix)], blocks)
