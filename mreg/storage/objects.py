"""The content-addressed object store: ``.mreg/objects/ab/cdef...``.

Every object is named by the SHA-256 of its bytes and never changes. A stored file
takes one of two shapes, which readers never need to tell apart:

``objects/ab/cdef...``
    the file's bytes (a blob; manifests and chunks are blobs too);
``objects/ab/cdef....chunks``
    a weight file stored as its tensor chunks: the ordered list of the blobs whose
    concatenation has this digest (see :mod:`mreg.chunking`).

A blob may also be stored *packed*, ``objects/ab/cdef....pack`` (``mreg pack``; see
:mod:`mreg.storage.packed`): it keeps its name, and every read here decodes it.

Writes stream each input byte once through the hashes into temporary files in
``.mreg/tmp/`` (the same file system), then fsync and rename them into place. A
blob that is already present is not kept: its temporary copy is dropped before it
is ever synced. A chunk index is written last, so a crash never leaves an index
pointing at missing chunks.

Reads trust the local store, as git and the Hugging Face cache do: bytes were
verified when they entered it. Copies *out* of the store (materialized files,
streams, transfers) verify again, and :meth:`ObjectStore.verify` (fsck) re-hashes.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import CorruptObjectError, InputFileError, ObjectNotFoundError
from mreg.records.hashing import sha256
from mreg.records.names import Digest, digest_from_hex
from mreg.storage.blobs import (
    Block,
    Segment,
    SegmentReader,
    read_blocks,
    segment_blocks,
    verified_blocks,
    write_hashing,
)
from mreg.storage.chunk_index import decode_chunk_index, encode_chunk_index
from mreg.storage.files import unique_temp_path
from mreg.storage.layout import PACK_SUFFIX, ObjectLayout

if TYPE_CHECKING:
    from mreg.storage.threads import Progress

__all__ = ["ObjectStore", "Segment", "SegmentReader", "StoredObject", "read_blocks"]



class Piece(NamedTuple):
    """Bytes on their way into the store, in blocks: a whole stream, or one chunk of a file fetched from elsewhere."""

    blocks: Iterable[Block]
    stored: bool = False  # the chunk is stored here already: its bytes only feed the file's digest
    staged: Path | None = None  # ... and written them to this temporary file (:func:`~mreg.storage.blobs.stage_blob`)


class StoredObject(NamedTuple):
    """The result of storing bytes: their digest, size, and whether they were new."""

    digest: Digest
    size: int
    written: bool


class ObjectStore(ObjectLayout):
    """Loose objects under ``root/objects`` with fan-out directories: writing and reading them.

    Opening one checks the store's format version (:mod:`mreg.storage.format_version`).
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        _check_format(root)
        self._chunk_sizes: dict[str, int] = {}  # the size chunk indexes read so far give each chunk


    # ------------------------------------------------------------------ naming



    def is_chunked(self, digest: str) -> bool:
        """True when the file is stored as chunks rather than as one blob."""
        return not self.object_path(digest).is_file() and self.index_path(digest).is_file() and not self.pack_path(digest).is_file()

    def contains(self, digest: str) -> bool:
        """True when the object is stored locally, in any shape (a blob, packed or not, or chunks)."""
        return self.object_path(digest).is_file() or self.index_path(digest).is_file() or self.pack_path(digest).is_file()

    def size(self, digest: str) -> int:
        """The size in bytes of a stored file."""
        return sum(segment.size for segment in self.segments(digest))

    # ----------------------------------------------------------------- writing

    def add_file(self, source: Path, *, cuts: Sequence[int] = (), progress: Progress | None = None) -> StoredObject:
        """Store a file's bytes, cut into chunks at ``cuts`` (offsets, ascending): the
        caller knows where a weight file's tensors lie (:mod:`mreg.formats.cuts`).

        Raises:
            InputFileError: the file is missing or unreadable.
        """
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise InputFileError(f"cannot read '{source}': {exc.strerror or exc}") from None
        with stream:
            return self._write([Piece(read_blocks(stream))], list(cuts), progress)

    def add_bytes(self, data: bytes) -> StoredObject:
        """Store a small object held in memory (a manifest) as one blob."""
        return self._write([Piece([memoryview(data)])], [], None)

    def add_stream(self, blocks: Iterable[Block], *, cuts: Sequence[int] = (), progress: Progress | None = None) -> StoredObject:
        """Store a stream of bytes, cut into chunks at ``cuts`` (see :meth:`add_file`)."""
        return self._write([Piece(blocks)], list(cuts), progress)

    def add_blob(self, blocks: Iterable[Block], *, expected: Digest, progress: Progress | None = None) -> StoredObject:
        """Store bytes fetched from elsewhere as one blob; they must hash to ``expected``.

        Raises:
            CorruptObjectError: they do not; nothing is kept.
        """
        return self._write([Piece(blocks)], [], progress, expected=expected)

    def add_fetched_chunks(
        self, digest: Digest, chunks: list[tuple[Digest, int]], pieces: Iterable[Piece], progress: Progress | None = None
    ) -> StoredObject:
        """Store a file fetched from elsewhere as the chunks its (checked) index lists.

        ``pieces`` gives each chunk's bytes in order, and whether that chunk is stored
        here already (its bytes then only feed the file's digest) or was checked against
        its digest by the caller (then it is not hashed again). Each new chunk must
        hash to its digest before it is kept, and the whole to ``digest`` before the
        index is written: the file never becomes visible unverified. The chunks are
        made durable as one batch, in a single pass over their bytes.

        Raises:
            CorruptObjectError: a chunk, or the whole, does not match.
        """
        cuts = list(itertools.accumulate(size for _, size in chunks))[:-1]
        return self._write(pieces, cuts, progress, expected=digest, chunks=chunks)

    def _write(
        self,
        pieces: Iterable[Piece],
        cuts: list[int],
        progress: Progress | None,
        expected: Digest | None = None,
        chunks: list[tuple[Digest, int]] | None = None,
    ) -> StoredObject:
        """Store ``pieces`` in order; with ``chunks``, one piece per listed chunk, each checked against it."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        from mreg.storage.blob_writer import SegmentWriter  # start-up: reads (show, ls, load) never load the writer

        writer = SegmentWriter(self, cuts, None if chunks is None else [chunk for chunk, _ in chunks])
        listed = zip(chunks, pieces, strict=True) if chunks is not None else ((None, piece) for piece in pieces)
        try:
            for chunk, piece in listed:
                if chunk is not None and piece.stored:
                    writer.skip(*chunk, piece.blocks)
                    continue
                if chunk is not None and piece.staged is not None:
                    writer.adopt(*chunk, piece.staged, piece.blocks)
                    if progress is not None:
                        progress(chunk[1])
                    continue
                for block in piece.blocks:
                    writer.write(block)
                    if progress is not None:
                        progress(len(block))
            digest, segments = writer.finish(expected)
        finally:
            writer.discard()
        size = sum(n for _, n in segments)
        if len(segments) == 1 or self.contains(digest):
            return StoredObject(digest, size, written=writer.wrote_any)
        self._install_bytes(encode_chunk_index(size, segments), self.index_path(digest))  # after its chunks are durable
        return StoredObject(digest, size, written=True)


    def _install_bytes(self, data: bytes, target: Path) -> None:
        self._install_blocks([data], target)

    def _install_blocks(self, blocks: Iterable[Block], target: Path, *, expected: str | None = None) -> None:
        """Write blocks to a new temporary file, fsync it, and rename it to ``target``.

        With ``expected``, the bytes must hash to it, or nothing is installed.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        temp = unique_temp_path(self.tmp_dir, "new")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                hexdigest = write_hashing(fd, blocks)
                if expected is not None and "sha256:" + hexdigest != expected:
                    raise CorruptObjectError(expected, "its chunks do not add up to its digest")
                os.fsync(fd)
            finally:
                os.close(fd)
            self.install(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def hash_file(self, source: Path) -> tuple[Digest, int]:
        """A file's digest and size, computed without storing anything."""
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise InputFileError(f"cannot read '{source}': {exc.strerror or exc}") from None
        with stream:
            return self.hash_stream(read_blocks(stream))

    @staticmethod
    def hash_stream(blocks: Iterable[Block]) -> tuple[Digest, int]:
        """The digest and size of some bytes, computed without storing anything."""
        hasher = sha256()
        size = 0
        for block in blocks:
            hasher.update(block)
            size += len(block)
        return digest_from_hex(hasher.hexdigest()), size

    # ----------------------------------------------------------------- reading

    def chunks(self, digest: str) -> list[tuple[Digest, int]]:
        """The chunks of a chunked file (``[(digest, size)]``)."""
        try:
            data = self.index_path(digest).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(digest) from None
        return decode_chunk_index(data, digest)

    def segments(self, digest: str, *, check: bool = True) -> list[Segment]:
        """The local blobs that hold a file's bytes, in order.

        ``check=False`` skips checking that each chunk exists, for a caller that opens
        every one and reports a missing one itself (a stat costs as much as the open).
        """
        path = str(self.object_path(digest))
        try:
            return [Segment(path, 0, os.stat(path).st_size, Digest(digest))]
        except FileNotFoundError:
            pass
        if not self.index_path(digest).is_file() and self.pack_path(digest).is_file():
            # A record's declared size is trusted only where no chunk index says otherwise.
            size = self._chunk_sizes.get(digest)
            if size is None:
                from mreg.storage.pack_layout import packed_size  # start-up: only a blob stored packed whole

                size = packed_size(self.pack_path(digest), digest)
            return [Segment(path, 0, size, Digest(digest), packed=True)]
        # Plain strings: a load maps dozens of chunks, and pathlib (even os.path.join) costs.
        objects = str(self.objects_dir)
        segments, start = [], 0
        for chunk, size in self.chunks(digest):
            chunk_path = f"{objects}{os.sep}{chunk[7:9]}{os.sep}{chunk[9:]}"
            self._chunk_sizes[chunk] = size
            packed = False
            if check and not os.path.isfile(chunk_path):
                packed = os.path.isfile(chunk_path + PACK_SUFFIX)
                if not packed:
                    raise CorruptObjectError(digest, f"its chunk {chunk} is missing")
            segments.append(Segment(chunk_path, start, size, chunk, packed))
            start += size
        return segments

    def read_bytes(self, digest: str) -> bytes:
        """Read a whole object into memory, verified (for manifests and small objects)."""
        return b"".join(self.iter_bytes(digest))

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        """Stream a file's bytes, verifying each blob as it ends.

        Raises:
            CorruptObjectError: right after the bytes of a blob that does not match.
        """
        for segment in self.segments(digest):
            yield from verified_blocks(segment)

    def materialize(self, digest: str) -> Path:
        """A local file with the object's exact bytes: the blob itself, or for a
        chunked file a verified copy assembled once under ``.mreg/cache/``."""
        blob = self.object_path(digest)
        if blob.is_file():
            return blob
        target = self.cache_dir / blob.relative_to(self.objects_dir)  # a chunked or a packed file
        if target.is_file():
            return target
        # The whole file's digest is checked as it is written: no chunk needs a check of its own.
        self._install_blocks(segment_blocks(self.segments(digest)), target, expected=digest)
        return target

    def verify(self, digest: str) -> str | None:
        """Re-hash an object (every chunk, and the whole); return the problem, or None."""
        try:
            segments = self.segments(digest)
            whole = len(segments) > 1 or segments[0].digest != digest
            hasher = sha256(sum(segment.size for segment in segments))
            for segment in segments:
                for block in verified_blocks(segment):
                    if whole:
                        hasher.update(block)
            if not whole:
                return None
        except CorruptObjectError as exc:
            return exc.message.partition(": ")[2]
        except (ObjectNotFoundError, FileNotFoundError):
            return "missing"
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
        actual = "sha256:" + hasher.hexdigest()
        return None if actual == digest else f"content hashes to {actual}"

    # ------------------------------------------------------------ enumeration


_FORMAT_VALUES = re.compile(rb"formatversion\s*=\s*([^\s#;]*)", re.IGNORECASE)


def _check_format(root: Path) -> None:
    """Refuse a store newer than this mreg (:mod:`mreg.storage.format_version`), parsing its
    config only when a look at the bytes finds a version other than 1 or 2: every command
    opens the store, and ``mreg show`` must stay quick."""
    try:
        data = (root / "config").read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return
    if any(value not in (b"1", b"2") for value in _FORMAT_VALUES.findall(data)):
        from mreg.storage import format_version  # start-up: only a store whose config says more

        format_version.check(root)
