"""The store's format version, ``[core] formatversion`` in ``.mreg/config``.

Version 1 is every store before packs; a store that holds a packed object
(``objects/ab/cdef....pack``) says 2, written before the first record is. This mreg
opens versions 1 and 2 and refuses a newer one with a clear error; an mreg older than
packs ignores the key and reports a packed chunk missing, never misreading it.
"""

from __future__ import annotations

from pathlib import Path

from mreg.errors import MregError

PACKS = 2
"""The version of a store that holds packed objects."""
NEWEST = PACKS
"""The newest version this mreg reads and writes."""
CONFIG_FILE = "config"


class StoreFormatError(MregError):
    """A store written by a newer mreg, in a format this one cannot read."""


def check(root: Path) -> None:
    """Refuse a store whose ``core.formatversion`` is newer than this mreg reads (opening a
    store looks at the config's bytes first, and calls this only when they need parsing).

    Raises:
        StoreFormatError: the store is newer than this mreg.
    """
    version = current(root)
    if version > NEWEST:
        raise StoreFormatError(
            f"the registry at {root} has format version {version}, and this mreg reads versions up to {NEWEST}: upgrade mreg to use it"
        )


def current(root: Path) -> int:
    """The store's format version (1 when the config does not say)."""
    from mreg.storage.config import Config  # start-up: parsed only when the quick look at the bytes is not enough

    value = Config.load(root / CONFIG_FILE).get("core.formatversion") or "1"
    try:
        return int(value)
    except ValueError:
        raise StoreFormatError(f"core.formatversion in {root / CONFIG_FILE} is '{value[:40]}', not a number") from None


_RAISED: set[tuple[Path, int]] = set()  # stores this process saw at a version (it never goes down)


def require(root: Path, version: int) -> None:
    """Raise the store's format version to ``version`` (before the first object that needs it is written)."""
    if (root, version) in _RAISED:
        return
    if current(root) < version:
        from mreg.storage.config import update  # start-up: only a write that needs a newer format changes it

        update(root / CONFIG_FILE, "core.formatversion", str(version))
    _RAISED.add((root, version))
