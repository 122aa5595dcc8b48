"""The content-addressed object store: ``.mreg/objects/ab/cdef...``.

Every object is named by the SHA-256 of its bytes and never changes. Objects are
written by streaming their bytes once through the hash into a temporary file in
``.mreg/tmp/`` (same file system), then fsynced and renamed into place. An object
that turns out to be present already is not kept: its temporary copy is dropped
before it is ever synced.

Reads trust the local store the way git and the Hugging Face cache do: bytes were
verified when they entered it. Copies *out* of the store verify again, and
``verify`` (used by fsck) re-hashes everything.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from .errors import CorruptObjectError, InputFileError, ObjectNotFoundError
from .fileutil import Progress, fsync_dir, replace_atomically, unique_temp_path, write_all
from .names import Digest, digest_from_hex

BLOCK_SIZE = 4 << 20
_HEX_DIGITS = set("0123456789abcdef")


@dataclass(frozen=True)
class StoredObject:
    """The result of storing bytes: their digest, size, and whether they were new."""

    digest: Digest
    size: int
    written: bool


@dataclass(frozen=True)
class Segment:
    """A run of a stored file's bytes held in one local object file."""

    path: Path
    start: int  # offset of the segment's first byte in the whole file
    size: int


def read_blocks(stream: BinaryIO, block_size: int = BLOCK_SIZE) -> Iterator[memoryview]:
    """Yield a binary stream's bytes in blocks; each block is valid until the next."""
    buffer = bytearray(block_size)
    view = memoryview(buffer)
    while True:
        count = stream.readinto(buffer)  # type: ignore[attr-defined]
        if not count:
            return
        yield view[:count]


class ObjectStore:
    """Loose objects under ``root/objects`` with fan-out directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"

    # ------------------------------------------------------------------ naming

    def object_path(self, digest: str) -> Path:
        """Where the object of ``digest`` lives (whether or not it exists)."""
        hexdigest = _hex(digest)
        return self.objects_dir / hexdigest[:2] / hexdigest[2:]

    def contains(self, digest: str) -> bool:
        """True when the object is stored locally."""
        return self.object_path(digest).is_file()

    def size(self, digest: str) -> int:
        """The size in bytes of a stored object."""
        try:
            return self.object_path(digest).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(digest) from None

    # ----------------------------------------------------------------- writing

    def add_file(self, source: Path, *, progress: Progress | None = None) -> StoredObject:
        """Store a file's bytes, reading each byte once.

        Raises:
            InputFileError: the file is missing or unreadable.
        """
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise InputFileError(f"cannot read '{source}': {exc.strerror or exc}") from None
        with stream:
            return self.add_stream(read_blocks(stream), progress=progress)

    def add_bytes(self, data: bytes) -> StoredObject:
        """Store a small object held in memory (a manifest)."""
        return self.add_stream([memoryview(data)])

    def add_stream(
        self,
        blocks: Iterable[bytes | memoryview],
        *,
        expected: Digest | None = None,
        progress: Progress | None = None,
    ) -> StoredObject:
        """Store the concatenation of ``blocks`` as one object.

        With ``expected``, the bytes must hash to that digest (a fetch from another
        store); otherwise nothing is kept and CorruptObjectError is raised.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        temp = unique_temp_path(self.tmp_dir, "obj")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                hexdigest, size = _copy_hashing(blocks, fd, progress)
                digest = digest_from_hex(hexdigest)
                if expected is not None and digest != expected:
                    raise CorruptObjectError(expected, f"received bytes hash to {digest}")
                target = self.object_path(digest)
                if target.is_file():
                    return StoredObject(digest, size, written=False)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._install(temp, target)
            return StoredObject(digest, size, written=True)
        finally:
            temp.unlink(missing_ok=True)

    def _install(self, temp: Path, target: Path) -> None:
        """Rename a complete temporary object into its fan-out directory."""
        fanout = target.parent
        if not fanout.is_dir():
            fanout.mkdir(parents=True, exist_ok=True)
            fsync_dir(fanout.parent)
        replace_atomically(temp, target)

    def hash_file(self, source: Path) -> tuple[Digest, int]:
        """A file's digest and size, computed without storing anything."""
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise InputFileError(f"cannot read '{source}': {exc.strerror or exc}") from None
        with stream:
            return self.hash_stream(read_blocks(stream))

    def hash_stream(self, blocks: Iterable[bytes | memoryview]) -> tuple[Digest, int]:
        """The digest and size of some bytes, computed without storing anything."""
        hexdigest, size = _copy_hashing(blocks, None, None)
        return digest_from_hex(hexdigest), size

    # ----------------------------------------------------------------- reading

    def read_bytes(self, digest: str) -> bytes:
        """Read a whole object into memory, verifying it (for manifests and small objects)."""
        try:
            data = self.object_path(digest).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(digest) from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise CorruptObjectError(digest, "its bytes do not match its digest")
        return data

    def segments(self, digest: str) -> list[Segment]:
        """The local object files that hold a file's bytes, in order."""
        path = self.object_path(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(digest) from None
        return [Segment(path, 0, size)]

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        """Stream an object's bytes; raises CorruptObjectError at the end if they do not match."""
        try:
            stream = open(self.object_path(digest), "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(digest) from None
        hasher = hashlib.sha256()
        with stream:
            for block in read_blocks(stream):
                hasher.update(block)
                yield bytes(block)
        if "sha256:" + hasher.hexdigest() != digest:
            raise CorruptObjectError(digest, "its bytes do not match its digest")

    def verify(self, digest: str) -> str | None:
        """Re-hash an object; return a description of the problem, or None if it is sound."""
        try:
            with open(self.object_path(digest), "rb") as stream:
                hasher = hashlib.sha256()
                for block in read_blocks(stream):
                    hasher.update(block)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
        actual = "sha256:" + hasher.hexdigest()
        return None if actual == digest else f"content hashes to {actual}"

    # ------------------------------------------------------------ enumeration

    def iter_digests(self) -> Iterator[Digest]:
        """Every object stored locally, in no particular order."""
        for fanout in _scandir(self.objects_dir):
            if not (fanout.is_dir() and len(fanout.name) == 2):
                continue
            for entry in _scandir(Path(fanout.path)):
                name = fanout.name + entry.name
                if len(name) == 64 and set(name) <= _HEX_DIGITS:
                    yield Digest("sha256:" + name)

    def stray_files(self) -> list[Path]:
        """Files under ``objects/`` that are not objects (fsck reports them)."""
        strays = []
        for fanout in _scandir(self.objects_dir):
            if not (fanout.is_dir() and len(fanout.name) == 2):
                strays.append(Path(fanout.path))
                continue
            for entry in _scandir(Path(fanout.path)):
                name = fanout.name + entry.name
                if not (len(name) == 64 and set(name) <= _HEX_DIGITS):
                    strays.append(Path(entry.path))
        return strays

    def find_prefix(self, hexprefix: str) -> list[Digest]:
        """Stored objects whose hex digest starts with ``hexprefix`` (at least 2 digits)."""
        fanout = self.objects_dir / hexprefix[:2]
        rest = hexprefix[2:]
        return sorted(
            Digest("sha256:" + hexprefix[:2] + entry.name)
            for entry in _scandir(fanout)
            if entry.name.startswith(rest) and len(entry.name) == 62
        )

    def temp_files(self) -> list[Path]:
        """Leftover temporary files (from interrupted writes)."""
        return [Path(entry.path) for entry in _scandir(self.tmp_dir)]

    def delete(self, digest: str) -> None:
        """Remove an object (gc only)."""
        self.object_path(digest).unlink(missing_ok=True)


def _copy_hashing(blocks: Iterable[bytes | memoryview], fd: int | None, progress: Progress | None) -> tuple[str, int]:
    """Write blocks to ``fd`` (if given) while hashing them; return (hexdigest, size)."""
    hasher = hashlib.sha256()
    size = 0
    for block in blocks:
        hasher.update(block)
        if fd is not None:
            write_all(fd, block)
        size += len(block)
        if progress is not None:
            progress(len(block))
    return hasher.hexdigest(), size


def _hex(digest: str) -> str:
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ObjectNotFoundError(digest, "not a sha256 digest")
    return digest[7:]


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
