"""Version numbers are never reused: what ``add`` may do with a removed version.

``mreg rm`` leaves a tombstone (:meth:`mreg.records.refs.RefTable.retired`). Adding the
version again is a *restore* when it has the removed manifest's content (the same
files and metadata): the version names that very manifest again, so every reference
to it, and every signature of it, still holds. Anything else is refused, as npm and
PyPI refuse a republished version, and so is a new version that only build metadata
sets apart from a removed one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import ConflictError, MregError, VersionConflictError

if TYPE_CHECKING:
    from mreg.records.manifest import Manifest
    from mreg.records.names import Digest
    from mreg.records.refs import RefTable
    from mreg.store.store import Store


class ReusedVersionError(VersionConflictError):
    """A removed version, added again with other content."""

    def __init__(self, name: str, version: str, removed: str, detail: str) -> None:
        ConflictError.__init__(
            self,
            f"{name}@{version} was removed while it named {removed}; adding it again with {detail}: "
            "a released version number never names other bytes; register a new version instead",
        )
        self.name, self.version, self.existing = name, version, removed


def restored(store: Store, table: RefTable, manifest: Manifest, *, stored: bool) -> Digest | None:
    """The manifest a removed version had, when ``manifest`` restores it (None: the
    version was never removed, or its files must be stored first: ``stored`` is False
    and some are gone).

    Raises:
        ReusedVersionError: it was removed with other content, or its manifest is gone
            so the content cannot be compared.
        ConflictError: a removed version has its precedence (only build metadata differs).
    """
    name, version = manifest.name, manifest.version
    gone = table.removed.get(version)
    if gone is None:
        twin = next((v for v in table.removed if v != version and _same_precedence(v, version)), None)
        if twin is not None and version not in table.versions:
            raise ConflictError(f"{name}@{version} would have the precedence of the removed {name}@{twin}: a version number is never reused")
        return None
    try:
        old = store.manifest(gone)
    except MregError:
        raise ReusedVersionError(name, version, gone, "its old manifest collected, nothing can show it is the same") from None
    if not old.same_content(manifest):
        raise ReusedVersionError(name, version, gone, "different files" if old.files != manifest.files else "different metadata")
    if not stored and not all(store.objects.contains(entry.digest) for entry in old.files):
        return None  # its files were collected: store them, then restore
    return gone


def check_bump_base(table: RefTable) -> list[str]:
    """The versions a ``--bump`` counts from: the highest live one and every removed one
    (bumping past a removed version never gives its number again)."""
    return [v for v in (table.highest, *table.removed) if v is not None]


def _same_precedence(a: str, b: str) -> bool:
    from mreg.records.versions import parse_version  # start-up: only add needs it

    return parse_version(a).precedence == parse_version(b).precedence
