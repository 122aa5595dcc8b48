"""Where objects live in a store, which are there, and how a finished file enters it.

``objects/ab/cdef...`` holds a blob (a whole file, a manifest, a note, a chunk);
``objects/ab/cdef....chunks`` the chunk index of a file stored as chunks (see
:mod:`mreg.storage.objects`); ``objects/ab/cdef....pack`` a chunk stored packed, still
named by the SHA-256 of its raw bytes (see :mod:`mreg.storage.packed`). Names are checked as hex digests before any path is
built from them, so no name can lead outside the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from mreg.errors import ObjectNotFoundError
from mreg.records.names import Digest, is_digest
from mreg.storage.files import fsync_dirs

CHUNKS_SUFFIX = ".chunks"
PACK_SUFFIX = ".pack"
_HEX = "0123456789abcdef"


class Inventory(NamedTuple):
    """The objects of a store, from one scan: all of them, and those stored packed."""

    digests: set[Digest]
    packed: list[Digest]


class ObjectLayout:
    """The fan-out directories of ``root/objects``, its temporary files and its cache."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        self.cache_dir = root / "cache"

    def object_path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (whether or not it exists)."""
        hexdigest = hex_digits(digest)
        return self.objects_dir / hexdigest[:2] / hexdigest[2:]

    def index_path(self, digest: str) -> Path:
        """Where the chunk index of ``digest`` lives (whether or not it exists)."""
        path = self.object_path(digest)
        return path.with_name(path.name + CHUNKS_SUFFIX)

    def pack_path(self, digest: str) -> Path:
        """Where the packed record of ``digest`` lives (whether or not it exists)."""
        path = self.object_path(digest)
        return path.with_name(path.name + PACK_SUFFIX)

    def is_packed(self, digest: str) -> bool:
        """True when the blob of ``digest`` is stored packed only (its raw form is read first)."""
        return not self.object_path(digest).is_file() and self.pack_path(digest).is_file()

    def install(self, temp: Path, target: Path, *, durable: bool = True) -> list[Path]:
        """Rename a complete, fsynced temporary file into its fan-out directory.

        With ``durable=False`` the directories whose new entries still need an fsync
        are returned instead, for the caller to sync once for a whole batch.
        """
        fanout = target.parent
        changed = [fanout]
        if not fanout.is_dir():
            fanout.mkdir(parents=True, exist_ok=True)
            changed.append(fanout.parent)
        os.replace(temp, target)
        if durable:
            fsync_dirs(changed)
            return []
        return changed

    def iter_digests(self) -> Iterator[Digest]:
        """Every object stored locally (blobs, packed blobs and chunked files), each once, in no order."""
        last = None
        for name in self._object_names():
            digest = _digest_of(name)
            if digest != last:  # a blob stored both raw and packed: its names are neighbours
                yield digest
            last = digest

    def inventory(self) -> Inventory:
        """Every object stored locally, and those with a packed record, from one scan of
        ``objects/`` (du and gc need both: a store of many versions has as many names)."""
        digests: set[Digest] = set()
        packed: list[Digest] = []
        for fanout in _scandir(self.objects_dir):
            if not (fanout.is_dir() and len(fanout.name) == 2):
                continue
            for entry in _scandir(Path(fanout.path)):
                name = fanout.name + entry.name  # one pass per name: du and gc meet every object
                is_packed = name.endswith(PACK_SUFFIX)
                hexpart = name[: -len(PACK_SUFFIX)] if is_packed else name.removesuffix(CHUNKS_SUFFIX)
                if len(hexpart) == 64 and not hexpart.strip(_HEX):
                    digest = Digest("sha256:" + hexpart)
                    digests.add(digest)
                    if is_packed:
                        packed.append(digest)
        return Inventory(digests, packed)

    def iter_packed(self) -> Iterator[Digest]:
        """Every blob that has a packed record (its raw form may be there too)."""
        for name in self._object_names():
            if name.endswith(PACK_SUFFIX):
                yield Digest("sha256:" + name.removesuffix(PACK_SUFFIX))

    def iter_chunked(self) -> Iterator[Digest]:
        """Every file stored as chunks."""
        for name in self._object_names():
            if name.endswith(CHUNKS_SUFFIX):
                yield Digest("sha256:" + name.removesuffix(CHUNKS_SUFFIX))

    def _object_names(self) -> Iterator[str]:
        for fanout in _scandir(self.objects_dir):
            if fanout.is_dir() and len(fanout.name) == 2:
                for name in sorted(fanout.name + entry.name for entry in _scandir(Path(fanout.path))):
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
        names = {entry.name.removesuffix(CHUNKS_SUFFIX).removesuffix(PACK_SUFFIX) for entry in _scandir(fanout)}
        return sorted(Digest("sha256:" + hexprefix[:2] + n) for n in names if n.startswith(rest) and len(n) == 62)

    def stored_size(self, digest: str) -> int:
        """Bytes this object itself occupies: its blob and its packed record (both, for the
        moment a pack or an unpack leaves them side by side), else its chunk index."""
        blob, packed = _file_size(self.object_path(digest)), _file_size(self.pack_path(digest))
        if blob is None and packed is None:
            return _file_size(self.index_path(digest)) or 0
        return (blob or 0) + (packed or 0)

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
        self.pack_path(digest).unlink(missing_ok=True)  # first: a record is never left without its raw form's name
        self.object_path(digest).unlink(missing_ok=True)
        self.index_path(digest).unlink(missing_ok=True)


def object_key(digest: str) -> str:
    """An object's key inside any store: ``objects/ab/cdef...`` (a path under ``.mreg``, or a bucket key)."""
    return f"objects/{digest[7:9]}/{digest[9:]}"


def _digest_of(name: str) -> Digest:
    return Digest("sha256:" + name.removesuffix(CHUNKS_SUFFIX).removesuffix(PACK_SUFFIX))


def _is_object_name(name: str) -> bool:
    hexpart = name.removesuffix(CHUNKS_SUFFIX).removesuffix(PACK_SUFFIX)
    return len(hexpart) == 64 and not hexpart.strip(_HEX)  # strip, not a set: du and gc test every name


def hex_digits(digest: str) -> str:
    if not is_digest(digest):
        raise ObjectNotFoundError(digest, "not a sha256 digest")
    return digest[7:]


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
