"""The content-addressed object store: ``.mreg/objects/ab/cdef...``.

Every object is named by the SHA-256 of its bytes and never changes. A stored file
takes one of two shapes, which readers never need to tell apart:

``objects/ab/cdef...``
    the file's bytes (a blob; manifests and chunks are blobs too);
``objects/ab/cdef....chunks``
    a weight file stored as its tensor chunks: the ordered list of the blobs whose
    concatenation has this digest (see :mod:`mreg.chunking`).

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

import bisect
import hashlib
import io
import itertools
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple

import msgpack

from .errors import CorruptObjectError, InputFileError, ObjectNotFoundError
from .fileutil import Progress, fsync_dir, replace_atomically, unique_temp_path, write_all
from .names import Digest, digest_from_hex, is_digest
from .objects import canonical_encode

BLOCK_SIZE = 4 << 20
CHUNKS_SUFFIX = ".chunks"
CHUNKS_KIND = "mreg.chunks"
_HEX_DIGITS = set("0123456789abcdef")
Block = bytes | memoryview


class StoredObject(NamedTuple):
    """The result of storing bytes: their digest, size, and whether they were new."""

    digest: Digest
    size: int
    written: bool


class Segment(NamedTuple):
    """A run of a stored file's bytes held in one local blob."""

    path: Path
    start: int  # offset of the segment's first byte in the whole file
    size: int
    digest: Digest


def read_blocks(stream: BinaryIO, block_size: int = BLOCK_SIZE) -> Iterator[memoryview]:
    """Yield a binary stream's bytes in blocks; each block is valid until the next."""
    buffer = bytearray(block_size)
    view = memoryview(buffer)
    while True:
        count = stream.readinto(buffer)  # type: ignore[attr-defined]
        if not count:
            return
        yield view[:count]


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


class ObjectStore:
    """Loose objects under ``root/objects`` with fan-out directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.cache_dir = root / "cache"

    # ------------------------------------------------------------------ naming

    def object_path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (whether or not it exists)."""
        hexdigest = _hex(digest)
        return self.objects_dir / hexdigest[:2] / hexdigest[2:]

    def index_path(self, digest: str) -> Path:
        """Where the chunk index of ``digest`` lives (whether or not it exists)."""
        path = self.object_path(digest)
        return path.with_name(path.name + CHUNKS_SUFFIX)

    def is_chunked(self, digest: str) -> bool:
        """True when the file is stored as chunks rather than as one blob."""
        return not self.object_path(digest).is_file() and self.index_path(digest).is_file()

    def contains(self, digest: str) -> bool:
        """True when the object is stored locally, in either shape."""
        return self.object_path(digest).is_file() or self.index_path(digest).is_file()

    def size(self, digest: str) -> int:
        """The size in bytes of a stored file."""
        return sum(segment.size for segment in self.segments(digest))

    # ----------------------------------------------------------------- writing

    def add_file(self, source: Path, *, progress: Progress | None = None) -> StoredObject:
        """Store a file's bytes, cut into chunks when it is a weight file.

        Raises:
            InputFileError: the file is missing or unreadable.
        """
        from .chunking import file_cuts

        try:
            stream = open(source, "rb")
            cuts = file_cuts(source, os.fstat(stream.fileno()).st_size)
        except OSError as exc:
            raise InputFileError(f"cannot read '{source}': {exc.strerror or exc}") from None
        with stream:
            return self._write(read_blocks(stream), cuts, progress)

    def add_bytes(self, data: bytes) -> StoredObject:
        """Store a small object held in memory (a manifest) as one blob."""
        return self._write([memoryview(data)], [], None)

    def add_stream(self, blocks: Iterable[Block], *, progress: Progress | None = None) -> StoredObject:
        """Store a stream of bytes, cut into chunks when it is a safetensors stream."""
        cuts, blocks = _plan_stream(iter(blocks))
        return self._write(blocks, cuts, progress)

    def add_blob(self, blocks: Iterable[Block], *, expected: Digest) -> StoredObject:
        """Store bytes fetched from elsewhere as one blob; they must hash to ``expected``.

        Raises:
            CorruptObjectError: they do not; nothing is kept.
        """
        return self._write(blocks, [], None, expected=expected)

    def add_chunk_index(self, digest: Digest, chunks: list[tuple[Digest, int]]) -> None:
        """Record a file as the concatenation of chunks that are already stored."""
        missing = [d for d, _ in chunks if not self.object_path(d).is_file()]
        if missing:
            raise ObjectNotFoundError(missing[0], f"chunk of {digest}")
        data = encode_chunk_index(sum(n for _, n in chunks), chunks)
        self._install_bytes(data, self.index_path(digest))

    def _write(self, blocks: Iterable[Block], cuts: list[int], progress: Progress | None, expected: Digest | None = None) -> StoredObject:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        writer = _SegmentWriter(self, cuts)
        try:
            for block in blocks:
                writer.write(block)
                if progress is not None:
                    progress(len(block))
            digest, chunks = writer.finish(expected)
        finally:
            writer.discard()
        size = sum(n for _, n in chunks)
        if len(chunks) == 1 or self.contains(digest):
            return StoredObject(digest, size, written=writer.wrote_any)
        self._install_bytes(encode_chunk_index(size, chunks), self.index_path(digest))
        return StoredObject(digest, size, written=True)

    def _install(self, temp: Path, target: Path) -> None:
        """Rename a complete, fsynced temporary file into its fan-out directory."""
        fanout = target.parent
        if not fanout.is_dir():
            fanout.mkdir(parents=True, exist_ok=True)
            fsync_dir(fanout.parent)
        replace_atomically(temp, target)

    def _install_bytes(self, data: bytes, target: Path) -> None:
        temp = unique_temp_path(self.tmp_dir, "idx")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._install(temp, target)
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

    def hash_stream(self, blocks: Iterable[Block]) -> tuple[Digest, int]:
        """The digest and size of some bytes, computed without storing anything."""
        hasher = hashlib.sha256()
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

    def segments(self, digest: str) -> list[Segment]:
        """The local blobs that hold a file's bytes, in order."""
        path = self.object_path(digest)
        try:
            return [Segment(path, 0, path.stat().st_size, Digest(digest))]
        except FileNotFoundError:
            pass
        segments, start = [], 0
        for chunk, size in self.chunks(digest):
            chunk_path = self.object_path(chunk)
            if not chunk_path.is_file():
                raise CorruptObjectError(digest, f"its chunk {chunk} is missing")
            segments.append(Segment(chunk_path, start, size, chunk))
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
            yield from _verified_blocks(segment)

    def materialize(self, digest: str) -> Path:
        """A local file with the object's exact bytes: the blob itself, or for a
        chunked file a verified copy assembled once under ``.mreg/cache/``."""
        blob = self.object_path(digest)
        if blob.is_file():
            return blob
        target = self.cache_dir / blob.relative_to(self.objects_dir)
        if target.is_file():
            return target
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        temp = unique_temp_path(self.tmp_dir, "file")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                hasher = hashlib.sha256()
                for block in self.iter_bytes(digest):
                    hasher.update(block)
                    write_all(fd, block)
                if "sha256:" + hasher.hexdigest() != digest:
                    raise CorruptObjectError(digest, "its chunks do not add up to its digest")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._install(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return target

    def verify(self, digest: str) -> str | None:
        """Re-hash an object (every chunk, and the whole); return the problem, or None."""
        try:
            segments = self.segments(digest)
            whole = len(segments) > 1 or segments[0].digest != digest
            hasher = hashlib.sha256()
            for segment in segments:
                for block in _verified_blocks(segment):
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

    def iter_digests(self) -> Iterator[Digest]:
        """Every object stored locally (blobs and chunked files), in no order."""
        for name in self._object_names():
            yield Digest("sha256:" + name.removesuffix(CHUNKS_SUFFIX))

    def iter_chunked(self) -> Iterator[Digest]:
        """Every file stored as chunks."""
        for name in self._object_names():
            if name.endswith(CHUNKS_SUFFIX):
                yield Digest("sha256:" + name.removesuffix(CHUNKS_SUFFIX))

    def _object_names(self) -> Iterator[str]:
        for fanout in _scandir(self.objects_dir):
            if fanout.is_dir() and len(fanout.name) == 2:
                for entry in _scandir(Path(fanout.path)):
                    name = fanout.name + entry.name
                    if _is_object_name(name):
                        yield name

    def stray_files(self) -> list[Path]:
        """Files under ``objects/`` that are not objects (fsck reports them)."""
        strays = []
        for fanout in _scandir(self.objects_dir):
            if not (fanout.is_dir() and len(fanout.name) == 2):
                strays.append(Path(fanout.path))
                continue
            strays += [Path(e.path) for e in _scandir(Path(fanout.path)) if not _is_object_name(fanout.name + e.name)]
        return strays

    def find_prefix(self, hexprefix: str) -> list[Digest]:
        """Stored objects whose hex digest starts with ``hexprefix`` (at least 2 digits)."""
        fanout = self.objects_dir / hexprefix[:2]
        rest = hexprefix[2:]
        names = {entry.name.removesuffix(CHUNKS_SUFFIX) for entry in _scandir(fanout)}
        return sorted(Digest("sha256:" + hexprefix[:2] + n) for n in names if n.startswith(rest) and len(n) == 62)

    def stored_size(self, digest: str) -> int:
        """Bytes this object itself occupies: the blob, or the chunk index alone."""
        for path in (self.object_path(digest), self.index_path(digest)):
            try:
                return path.stat().st_size
            except FileNotFoundError:
                continue
        return 0

    def temp_files(self) -> list[Path]:
        """Leftover temporary files (from interrupted writes)."""
        return [Path(entry.path) for entry in _scandir(self.tmp_dir)]

    def cached_files(self) -> Iterator[tuple[Digest, Path]]:
        """Files assembled from chunks by :meth:`materialize`."""
        for fanout in _scandir(self.cache_dir):
            for entry in _scandir(Path(fanout.path)):
                if _is_object_name(fanout.name + entry.name):
                    yield Digest("sha256:" + fanout.name + entry.name), Path(entry.path)

    def delete(self, digest: str) -> None:
        """Remove an object in whichever shape it is stored (gc only)."""
        self.object_path(digest).unlink(missing_ok=True)
        self.index_path(digest).unlink(missing_ok=True)


class SegmentReader(io.RawIOBase):
    """A seekable, read-only file over a stored file's segments (for ``torch.load``)."""

    def __init__(self, segments: list[Segment]) -> None:
        super().__init__()
        self.segments = segments
        self.size = sum(s.size for s in segments)
        self._starts = [s.start for s in segments]
        self._position = 0
        self._open: dict[int, BinaryIO] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self.size:
            return 0
        index = bisect.bisect_right(self._starts, self._position) - 1
        segment = self.segments[index]
        if index not in self._open:
            self._open[index] = open(segment.path, "rb")
        stream = self._open[index]
        stream.seek(self._position - segment.start)
        wanted = min(len(buffer), segment.start + segment.size - self._position)
        count = stream.readinto(memoryview(buffer).cast("B")[:wanted])  # type: ignore[attr-defined]
        self._position += count
        return count

    def close(self) -> None:
        for stream in self._open.values():
            stream.close()
        self._open.clear()
        super().close()


class _SegmentWriter:
    """Writes a stream into blobs, starting a new one at each cut point."""

    def __init__(self, store: ObjectStore, cuts: list[int]) -> None:
        self.store = store
        self.cuts = cuts
        self.whole = hashlib.sha256() if cuts else None  # one segment: its hash is the file's
        self.position = 0
        self.chunks: list[tuple[Digest, int]] = []
        self.wrote_any = False
        self._next_cut = 0
        self._open()

    def _open(self) -> None:
        self.temp = unique_temp_path(self.store.tmp_dir, "obj")
        self.fd: int | None = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, block: Block) -> None:
        view = memoryview(block)
        while view:
            limit = self.cuts[self._next_cut] - self.position if self._next_cut < len(self.cuts) else len(view)
            part = view[:limit]
            self.hasher.update(part)
            if self.whole is not None:
                self.whole.update(part)
            write_all(self.fd, part)  # type: ignore[arg-type]
            self.size += len(part)
            self.position += len(part)
            view = view[len(part) :]
            if self._next_cut < len(self.cuts) and self.position == self.cuts[self._next_cut]:
                self._next_cut += 1
                self._close_segment()
                self._open()

    def _close_segment(self, expected: Digest | None = None) -> None:
        digest = digest_from_hex(self.hasher.hexdigest())
        if expected is not None and digest != expected:
            raise CorruptObjectError(expected, f"received bytes hash to {digest}")
        target = self.store.object_path(digest)
        fd, self.fd = self.fd, None
        try:
            if not target.is_file():
                os.fsync(fd)  # type: ignore[arg-type]
        finally:
            os.close(fd)  # type: ignore[arg-type]
        if not target.is_file():
            self.store._install(self.temp, target)
            self.wrote_any = True
        self.temp.unlink(missing_ok=True)
        self.chunks.append((digest, self.size))

    def finish(self, expected: Digest | None = None) -> tuple[Digest, list[tuple[Digest, int]]]:
        """Close the last segment; return the file's digest and its chunks.

        With ``expected`` (only for a single blob) a mismatch keeps nothing.
        """
        if self.size or not self.chunks:
            self._close_segment(expected if not self.cuts else None)
        digest = digest_from_hex(self.whole.hexdigest()) if self.whole is not None else self.chunks[0][0]
        return digest, self.chunks

    def discard(self) -> None:
        """Drop an unfinished segment (after an error)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.temp.unlink(missing_ok=True)


def _plan_stream(blocks: Iterator[Block]) -> tuple[list[int], Iterator[Block]]:
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


def _verified_blocks(segment: Segment) -> Iterator[bytes]:
    """A blob's bytes; raises CorruptObjectError after its last block if they do not match."""
    hasher = hashlib.sha256()
    try:
        stream = open(segment.path, "rb")
    except FileNotFoundError:
        raise ObjectNotFoundError(segment.digest) from None
    with stream:
        for block in read_blocks(stream):
            hasher.update(block)
            yield bytes(block)
    if "sha256:" + hasher.hexdigest() != segment.digest:
        raise CorruptObjectError(segment.digest, "its bytes do not match its digest")


def _is_object_name(name: str) -> bool:
    hexpart = name.removesuffix(CHUNKS_SUFFIX)
    return len(hexpart) == 64 and set(hexpart) <= _HEX_DIGITS


def _hex(digest: str) -> str:
    if not is_digest(digest):
        raise ObjectNotFoundError(digest, "not a sha256 digest")
    return digest[7:]


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
