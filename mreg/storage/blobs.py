"""A stored file as a sequence of blobs: reading it, writing it, and its chunk index.

A file's bytes live in one blob, or in several chunks listed by a ``.chunks``
index (see :mod:`mreg.storage.objects`). A :class:`Segment` is one of those blobs with
the offset at which its bytes start in the file.
"""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    NamedTuple,
)

from mreg.errors import CorruptObjectError
from mreg.records.hashing import sha256
from mreg.storage.files import (
    start_writeback,
    unique_temp_path,
    write_all,
)
from mreg.storage.threads import Worker

if TYPE_CHECKING:
    from mreg.records.names import Digest

BLOCK_SIZE = 4 << 20
WRITEBACK_STEP = 16 << 20  # start writing to disk after this many new bytes
Block = bytes | memoryview


class Segment(NamedTuple):
    """A run of a stored file's bytes held in one local blob.

    A blob may be stored packed (``path`` + ``.pack``, see :mod:`mreg.storage.packed`):
    readers open the raw path first and decode the record when the raw form is not
    there, so a segment stays valid while ``mreg pack`` changes a blob's form.
    """

    path: str  # a local file: the raw blob's path, even for a blob stored packed
    start: int  # offset of the segment's first byte in the whole file
    size: int
    digest: Digest
    packed: bool = False  # stored packed when the segment was listed (a hint: see above)


def read_blocks(stream: BinaryIO, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield a binary stream's bytes in blocks (fresh objects: a writer may keep them)."""
    while block := stream.read(block_size):
        yield block


def segment_blocks(segments: list[Segment]) -> Iterator[bytes]:
    """The bytes of several blobs in order, unverified (for a caller that checks the whole)."""
    for segment in segments:
        try:
            stream = open(segment.path, "rb")
        except FileNotFoundError:
            yield from _packed_blocks(segment)
            continue
        with stream:
            yield from read_blocks(stream)


def _packed_blocks(segment: Segment, *, verify: bool = False) -> Iterator[bytes]:
    """A blob whose raw form is not there: its packed record, decoded."""
    from mreg.storage.packed import decoded_blocks  # start-up: only a store with packs reads them

    return decoded_blocks(segment, verify=verify)


def write_hashing(fd: int, blocks: Iterable[Block]) -> str:
    """Write blocks to ``fd`` on a writer thread while this one hashes them; return the hex SHA-256."""
    hasher = sha256()
    writer = Worker()
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
    """A blob's bytes; raises CorruptObjectError after its last block if they do not match
    (a packed one: before its first, as it is decoded whole)."""
    hasher = sha256(segment.size)
    try:
        stream = open(segment.path, "rb")
    except FileNotFoundError:
        yield from _packed_blocks(segment, verify=True)
        return
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
        self._decoded: tuple[int, memoryview] | None = None  # the last packed segment read, decoded

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.size:
            return 0
        index = bisect.bisect_right(self._starts, self.position) - 1
        segment = self.segments[index]
        wanted = min(len(buffer), segment.start + segment.size - self.position)
        target = memoryview(buffer).cast("B")[:wanted]
        if index not in self._open:
            try:
                self._open[index] = open(segment.path, "rb")
            except FileNotFoundError:
                count = self._read_packed(index, target)
                self.position += count
                return count
        stream = self._open[index]
        stream.seek(self.position - segment.start)
        count = stream.readinto(target)  # type: ignore[attr-defined]
        self.position += count
        return count

    def _read_packed(self, index: int, target: memoryview) -> int:
        """Read from a packed segment, decoded once while reads stay in it (one at a time)."""
        if self._decoded is None or self._decoded[0] != index:
            self._decoded = None  # the previous one's memory goes first
            from mreg.storage.packed import decoded  # start-up: only a store with packs reads them

            self._decoded = (index, memoryview(decoded(self.segments[index])).cast("B"))
        offset = self.position - self.segments[index].start
        data = self._decoded[1][offset : offset + len(target)]
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        for stream in self._open.values():
            stream.close()
        self._open.clear()
        self._decoded = None
        super().close()
