"""Objects by digest, and the files a static server of the store needs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mreg.operations import listing

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.store.store import Store


class Plumbing:
    """:class:`~mreg.registry.Registry` methods. Objects by digest, and what a static server of the store needs."""

    store: Store

    def find_object(self, text: str) -> Digest:
        """The object a full digest or a unique prefix (8+ hex digits) names, of any type."""
        return listing.find_object(self.store, text)

    def object_type(self, digest: Digest) -> str:
        """``manifest`` or ``blob``."""
        return listing.object_type(self.store, digest)

    def object_size(self, digest: Digest) -> int:
        """The size in bytes of a stored object."""
        return self.store.objects.size(digest)

    def object_bytes(self, digest: Digest) -> Iterator[bytes]:
        """A stored object's bytes, verified as they stream."""
        return self.store.objects.iter_bytes(digest)

    def hash_object(self, path: str | os.PathLike[str], *, write: bool = False) -> Digest:
        """A file's digest; with ``write`` the file is also stored as an object."""
        from mreg.operations.register import (
            hash_object,  # start-up: plumbing that reads files
        )

        return hash_object(self.store, path, write=write)

    @property
    def warnings(self) -> list[str]:
        """Failures of fallback stores that the last operations worked around."""
        return self.store.warnings

    def update_server_info(self) -> None:
        """Rewrite ``info/models``, which static HTTP servers of this store need."""
        self.store.update_server_info()
