"""The object store as the web server reads it: no link followed, no FIFO or device opened.

Objects are verified against their digest, so a planted link cannot pass off another
file's bytes as an object; but it could point at ``/dev/zero`` (a read that never ends)
or at a FIFO (one that never starts). Every blob and chunk index is opened through
:func:`open_regular`, and chunk indexes are read bounded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from mreg.errors import CorruptObjectError, ObjectNotFoundError
from mreg.records.limits import MAX_CHUNK_INDEX_SIZE
from mreg.records.names import Digest
from mreg.storage.blobs import Segment, read_blocks
from mreg.storage.chunk_index import decode_chunk_index
from mreg.storage.layout import CHUNKS_SUFFIX
from mreg.storage.objects import ObjectStore
from mreg.web.safe_files import open_regular, read_regular


def object_name(digest: str, suffix: str = "") -> str:
    """An object's path inside the store: ``objects/ab/cdef...``."""
    hexdigest = digest.removeprefix("sha256:")
    return f"objects/{hexdigest[:2]}/{hexdigest[2:]}{suffix}"


class LinkFreeObjectStore(ObjectStore):
    """An :class:`ObjectStore` whose reads open only regular files reached without links."""

    def chunks(self, digest: str) -> list[tuple[Digest, int]]:
        """The chunks of a chunked file, from an index read bounded and without links."""
        data = read_regular(self.root, object_name(digest, CHUNKS_SUFFIX), MAX_CHUNK_INDEX_SIZE)
        if data is None:
            raise ObjectNotFoundError(digest)
        return decode_chunk_index(data, digest)

    def segments(self, digest: str, *, check: bool = True) -> list[Segment]:
        """The blobs holding a file's bytes, each checked to be a regular file, whatever ``check`` says
        (the PyTorch loader maps them by path right after)."""
        size = self._regular_size(object_name(digest))
        if size is not None:
            return [Segment(str(self.root / object_name(digest)), 0, size, Digest(digest))]
        segments, start = [], 0
        for chunk, length in self.chunks(digest):
            if self._regular_size(object_name(chunk)) is None:
                raise CorruptObjectError(digest, f"its chunk {chunk} is missing")
            segments.append(Segment(str(self.root / object_name(chunk)), start, length, chunk))
            start += length
        return segments

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        """A file's bytes, each blob opened without links and verified as it ends.

        Raises:
            CorruptObjectError: right after the bytes of a blob that does not match.
            UnsafeFileError: a blob is a link, a FIFO or a device.
        """
        for segment in self.segments(digest):
            fd = open_regular(self.root, object_name(segment.digest))
            if fd is None:
                raise ObjectNotFoundError(segment.digest)
            hasher = hashlib.sha256()
            with open(fd, "rb", closefd=True) as stream:
                for block in read_blocks(stream):
                    hasher.update(block)
                    yield block
            if "sha256:" + hasher.hexdigest() != segment.digest:
                raise CorruptObjectError(segment.digest, "its bytes do not match its digest")

    def _regular_size(self, name: str) -> int | None:
        """The size of a regular file of the store, or None if there is none."""
        fd = open_regular(self.root, name)
        if fd is None:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)
