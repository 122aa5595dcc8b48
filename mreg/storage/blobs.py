"""A stored file as a sequence of blobs: reading it, writing it, and its chunk index.

A file's bytes live in one blob, or in several chunks listed by a ``.chunks``
index (see :mod:`mreg.object_store`). A :class:`Segment` is one of those blobs with
the offset at which its bytes start in the file.
"""

from __future__ import annotations

import bisect
import hashlib
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

from mreg.errors import CorruptObjectError, ObjectNotFoundError
from mreg.records.names import Digest
from mreg.storage.files import (
    start_writeback,
    unique_temp_path,
    write_all,
)
from mreg.storage.threads import Worker

if TYPE_CHECKING:
    pass

BLOCK_SIZE = 4 << 20
WRITEBACK_STEP = 16 << 20  # start writing to disk after this many new bytes
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
