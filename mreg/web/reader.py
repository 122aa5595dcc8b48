"""The registry as the web UI reads it: never written to, manifests cached.

The UI must never change the store it shows, so fallbacks are switched off
(resolving through one would cache the fetched objects here). Manifests are
immutable and named by their digest, so once read and verified they are kept in
memory: a page listing a thousand versions reads each manifest once per process.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..fallback import Fallbacks
from ..names import Digest
from ..objects import Manifest
from ..refs import RefTable
from ..registry import Registry

MAX_CACHED_MANIFESTS = 100_000  # a manifest is a few hundred bytes decoded


class ReadOnlyRegistry(Registry):
    """A :class:`Registry` that resolves only what this store holds, and caches manifests."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._manifests: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    @property
    def fallbacks(self) -> Fallbacks:
        """No fallbacks: consulting one may copy objects into this store."""
        return Fallbacks([])

    def manifest(self, digest: str) -> Manifest:
        """A verified manifest, read from disk once per process."""
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        manifest = super().manifest(digest)
        with self._lock:
            if len(self._manifests) >= MAX_CACHED_MANIFESTS:
                self._manifests.clear()
            self._manifests[digest] = manifest
        return manifest

    def table(self, name: str) -> RefTable:
        """A model's refs as one consistent snapshot (``_refs`` is replaced by rename)."""
        return self.existing_table(name)

    def version_digests(self) -> list[tuple[str, str, Digest]]:
        """Every (model, version, digest) the store's refs name right now."""
        found = []
        for name in self.refs.names():
            for version, digest in self.refs.read(name).versions.items():
                found.append((name, version, digest))
        return found
