"""The registry as the web UI reads it: never written to, manifests cached.

The UI must never change the store it shows, so fallbacks are switched off
(resolving through one would cache the fetched objects here). Manifests are
immutable and named by their digest, so once read and verified they are kept in
memory: a page listing a thousand versions reads each manifest once per process,
from the metadata index where it has them (read, never written).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from mreg.records.manifest import Manifest
from mreg.records.manifest import manifest_check as check_manifest
from mreg.records.names import Digest
from mreg.records.refs import RefTable
from mreg.registry import Registry
from mreg.sharing.fallbacks import Fallbacks
from mreg.storage.index import ManifestRow, MetadataIndex
from mreg.storage.refs import TABLE_FILE, RefStore
from mreg.store.store import Store

MAX_CACHED_MANIFESTS = 100_000  # a manifest is a few hundred bytes decoded


class CachingRefStore(RefStore):
    """A :class:`RefStore` for a long-running reader: keeps each parsed ref table until
    its file changes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._tables: dict[str, tuple[tuple[int, int, int], RefTable]] = {}

    def read(self, name: str) -> RefTable:
        """The model's current refs; re-read only when ``_refs`` was replaced or changed."""
        try:
            info = os.stat(self.model_file(name, TABLE_FILE))
        except FileNotFoundError:
            return RefTable()
        key = (info.st_ino, info.st_mtime_ns, info.st_size)  # a rename always brings a new inode
        cached = self._tables.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        table = super().read(name)  # if replaced since the stat, the key is stale and the next read re-reads
        self._tables[name] = (key, table)
        return table


class ReadOnlyStore(Store):
    """A :class:`Store` that resolves only what it holds, and caches manifests."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.refs = CachingRefStore(self.root)
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
