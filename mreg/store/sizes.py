"""Manifests from elsewhere against the objects here: a declared size must be the stored one.

A manifest names each file by digest and declares its size. When the file is fetched,
the fetch stops at that size and checks it; when the object is already here it is
not fetched, so nothing would notice a manifest that declares another size, and
``mreg fsck`` would fail on it later. Pulls and fallbacks check it here instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import RemoteError
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.manifest import Manifest
    from mreg.storage.objects import ObjectStore


def refuse_wrong_sizes(objects: ObjectStore, manifest: Manifest, where: str) -> None:
    """Refuse a manifest from ``where`` (a location; empty when the caller names it) that gives
    a file stored here another size than it has.

    Raises:
        RemoteError: naming the version, the file and both sizes.
    """
    for entry in manifest.files:
        if objects.contains(entry.digest):
            size = objects.size(entry.digest)
            if size != entry.size:
                raise RemoteError(
                    (f"{where}: " if where else "") + f"{manifest.name}@{manifest.version} declares '{printable(entry.path)}' ({entry.digest}) "
                    f"as {entry.size} bytes, but that object has {size}; refused"
                )
