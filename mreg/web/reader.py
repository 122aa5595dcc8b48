"""The registry as the web UI reads it: never written to, manifests cached.

The UI must never change the store it shows, so fallbacks are switched off
(resolving through one would cache the fetched objects here). Manifests are
immutable and named by their digest, so once read and verified they are kept in
memory: a page listing a thousand versions reads each manifest once per process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..fallback import Fallbacks
from ..names import Digest, validate_name
from ..objects import Manifest
from ..refs import TABLE_FILE, RefStore, RefTable
from ..registry import Registry
from ..validation import manifest_check as check_manifest

MAX_CACHED_MANIFESTS = 100_000  # a manifest is a few hundred bytes decoded


class CachingRefStore(RefStore):
    """A :class:`RefStore` for a long-running reader: keeps each parsed ref table until
    its file changes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._models = str(self.models_dir)
        self._tables: dict[str, tuple[tuple[int, int, int], RefTable]] = {}

    def read(self, name: str) -> RefTable:
        """The model's current refs; re-read only when ``_refs`` was replaced or changed."""
        try:  # plain strings: pathlib costs more than the stat itself here
            info = os.stat(os.path.join(self._models, *validate_name(name).split("/"), TABLE_FILE))
        except FileNotFoundError:
            return RefTable()
        key = (info.st_ino, info.st_mtime_ns, info.st_size)  # a rename always brings a new inode
        cached = self._tables.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        table = super().read(name)  # if replaced since the stat, the key is stale and the next read re-reads
        self._tables[name] = (key, table)
        return table


class ReadOnlyRegistry(Registry):
    """A :class:`Registry` that resolves only what this store holds, and caches manifests."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.refs = CachingRefStore(self.root)
        self._manifests: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    @property
    def fallbacks(self) -> Fallbacks:
        """No fallbacks: consulting one may copy objects into this store."""
        return Fallbacks([])

    def manifest(self, digest: str, *, expect: tuple[str, str] | None = None) -> Manifest:
        """A verified manifest, read from disk once per process (see :meth:`Registry.manifest`)."""
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
