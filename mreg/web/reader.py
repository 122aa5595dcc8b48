"""The registry as the web UI reads it: never written to, manifests cached.

The UI must never change the store it shows, so fallbacks are switched off
(resolving through one would cache the fetched objects here). Manifests are
immutable and named by their digest, so once read and verified they are kept in
memory: a page listing a thousand versions reads each manifest once per process,
from the metadata index where it has them (read, never written). Every file of the
store is read without following links, and only if it is a regular file (see
:mod:`mreg.web.safe_files`): a link planted in a shared store never leads the
server outside it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from mreg.errors import CorruptRefsError
from mreg.records.limits import MAX_LOG_SIZE, MAX_NOTES_TABLE_SIZE, MAX_REF_TABLE_SIZE
from mreg.records.manifest import Manifest
from mreg.records.manifest import manifest_check as check_manifest
from mreg.records.names import Digest
from mreg.records.refs import RefTable
from mreg.registry import Registry
from mreg.sharing.fallbacks import Fallbacks
from mreg.storage.index import ManifestRow, MetadataIndex
from mreg.storage.refs import LOG_FILE, NOTES_FILE, TABLE_FILE, RefStore
from mreg.store.store import Store
from mreg.web.safe_files import UnsafeFileError, open_regular, read_regular
from mreg.web.safe_objects import LinkFreeObjectStore

MAX_CACHED_MANIFESTS = 100_000  # a manifest is a few hundred bytes decoded
MODEL_FILE_LIMITS = {TABLE_FILE: MAX_REF_TABLE_SIZE, LOG_FILE: MAX_LOG_SIZE, NOTES_FILE: MAX_NOTES_TABLE_SIZE}


class CachingRefStore(RefStore):
    """A :class:`RefStore` for a long-running reader: reads a model's files without
    following links, and keeps each parsed ref table until its file changes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.root = root
        self._tables: dict[str, tuple[tuple[int, int, int], RefTable]] = {}

    def read_file(self, name: str, file: str) -> bytes | None:
        """One of a model's files, read bounded, only if it is a regular file reached without links.

        Raises:
            UnsafeFileError: it is a link, a FIFO, a device, or larger than its bound.
        """
        return read_regular(self.root, self._relative(name, file), MODEL_FILE_LIMITS.get(file, MAX_REF_TABLE_SIZE))

    def read(self, name: str) -> RefTable:
        """The model's current refs; re-read only when ``_refs`` was replaced or changed."""
        try:
            fd = open_regular(self.root, self._relative(name, TABLE_FILE))
        except UnsafeFileError as exc:
            raise CorruptRefsError(f"refs of '{name}' are unreadable: {exc.message}") from None
        if fd is None:
            return RefTable()
        with open(fd, "rb", closefd=True) as stream:
            info = os.fstat(fd)  # the file being read: a rename always brings a new inode
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self._tables.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            data = stream.read(MAX_REF_TABLE_SIZE + 1)
        if len(data) > MAX_REF_TABLE_SIZE:
            raise CorruptRefsError(f"refs of '{name}' are larger than {MAX_REF_TABLE_SIZE} bytes; not read")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CorruptRefsError(f"refs of '{name}' are unreadable: {exc}") from None
        table = RefTable.parse(text, where=f"ref table of '{name}'")
        self._tables[name] = (key, table)
        return table

    def names(self) -> list[str]:
        """Every model whose ``_refs`` is a regular file (the listing follows no directory
        link; a ``_refs`` that is a link, FIFO or device makes no model)."""
        return [name for name in super().names() if _is_regular(self.model_file(name, TABLE_FILE))]

    def _relative(self, name: str, file: str) -> str:
        """A model file's path inside the store (the name is validated by ``model_file``)."""
        return self.model_file(name, file)[len(str(self.root)) + 1 :]


class ReadOnlyStore(Store):
    """A :class:`Store` that resolves only what it holds, follows no link, and caches manifests."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.refs = CachingRefStore(self.root)
        self.objects = LinkFreeObjectStore(self.root)
        self._manifests: dict[str, Manifest] = {}
        self._rows: dict[Digest, ManifestRow] = {}
        self._lock = threading.Lock()

    @property
    def index(self) -> MetadataIndex:
        """The metadata index, read where it exists and never written."""
        if self._index is None:
            self._index = MetadataIndex(self.root, read_only=True)
        return self._index

    def manifest_rows(self, digests: Iterable[str], *, skip_unreadable: bool = False) -> dict[Digest, ManifestRow]:
        """Manifests as index rows (see :meth:`Store.manifest_rows`), each read once per process."""
        wanted = [Digest(d) for d in dict.fromkeys(digests)]
        found = {digest: self._rows[digest] for digest in wanted if digest in self._rows}
        if len(found) < len(wanted):
            fresh = super().manifest_rows((digest for digest in wanted if digest not in found), skip_unreadable=skip_unreadable)
            with self._lock:
                if len(self._rows) + len(fresh) > MAX_CACHED_MANIFESTS:
                    self._rows.clear()
                self._rows.update(fresh)
            found.update(fresh)
        return found

    @property
    def fallbacks(self) -> Fallbacks:
        """No fallbacks: consulting one may copy objects into this store."""
        return Fallbacks([])

    def manifest(self, digest: str, *, expect: tuple[str, str] | None = None) -> Manifest:
        """A verified manifest, read from disk once per process (see :meth:`Store.manifest`)."""
        cached = self._manifests.get(digest)
        if cached is not None:
            check_manifest(digest, expect)(cached)
            return cached
        manifest = super().manifest(digest, expect=expect)
        with self._lock:
            if len(self._manifests) >= MAX_CACHED_MANIFESTS:
                self._manifests.clear()
            self._manifests[digest] = manifest
        return manifest

    def version_digests(self) -> list[tuple[str, str, Digest]]:
        """Every (model, version, digest) the store's refs name right now."""
        found = []
        for name in self.refs.names():
            for version, digest in self.refs.read(name).versions.items():
                found.append((name, version, digest))
        return found


def _is_regular(path: str) -> bool:
    """True when ``path`` itself (not what a link leads to) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class ReadOnlyRegistry(Registry):
    """The :class:`Registry` API over a :class:`ReadOnlyStore`, with the few store reads the pages need."""

    store: ReadOnlyStore

    def __init__(self, root: Path) -> None:
        super().__init__(ReadOnlyStore(root))

    def existing_table(self, name: str) -> RefTable:
        """A model's refs; UnknownModelError if it has no version."""
        return self.store.existing_table(name)

    def manifest_rows(self, digests: Iterable[str], *, skip_unreadable: bool = False) -> dict[Digest, ManifestRow]:
        """Manifests as index rows, each read once per process."""
        return self.store.manifest_rows(digests, skip_unreadable=skip_unreadable)

    def version_digests(self) -> list[tuple[str, str, Digest]]:
        """Every (model, version, digest) the store's refs name right now."""
        return self.store.version_digests()
