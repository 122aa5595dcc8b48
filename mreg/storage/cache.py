"""The cache of assembled files, ``.mreg/cache/``, and its bound ``cache.maxsize``.

``mreg path`` of a file stored as chunks assembles a verified copy here once, so
that tools get a real file to open or memory-map. The copies cost as much space as
the files, so ``mreg gc`` drops the ones no version refers to any more and then
the least recently used ones until the cache fits in ``cache.maxsize`` (default
1 GiB; ``0`` keeps nothing). Each ``mreg path`` marks its copy as used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import InvalidInputError
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.storage.config import Config
    from mreg.storage.objects import ObjectStore

MAX_SIZE_KEY = "cache.maxsize"
DEFAULT_MAX_SIZE = 1 << 30
_SIZE = re.compile(r"([0-9]{1,19})\s*([KMGT]?)(?:i?B)?", re.ASCII | re.IGNORECASE)  # 19 digits: int() never refuses
MAX_SIZE = 1 << 62  # 4 EiB: any larger bound means "no bound", and stays a 64-bit number
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


class CacheTrim(NamedTuple):
    """What trimming the cache removed (or, in a dry run, would remove)."""

    files: int
    bytes: int


def parse_size(text: str) -> int:
    """``512M`` -> 536870912: a byte count with an optional K, M, G or T (powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidInputError(
            f"invalid {MAX_SIZE_KEY} '{printable(text)}': expected a size such as 1073741824, 512M or 2G"
        )
    return min(int(match[1]) << _UNITS[match[2].upper()], MAX_SIZE)


def max_size(config: Config) -> int:
    """The configured bound of the cache, in bytes."""
    text = config.get(MAX_SIZE_KEY)
    return DEFAULT_MAX_SIZE if text is None else parse_size(text)


def mark_used(path: Path) -> Path:
    """Record that a cached copy was just used (its mtime orders the trimming)."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only store still serves the copy; it only ages sooner
    return path


def trim(store: ObjectStore, needed: set[Digest], limit: int, *, dry_run: bool = False) -> CacheTrim:
    """Drop cached copies of files not in ``needed``, then the least recently used
    ones until the rest fit in ``limit`` bytes. The caller holds the store exclusively."""
    kept, removed, freed, total = [], 0, 0, 0
    for digest, path in store.cached_files():
        status = path.stat()
        if digest in needed:
            kept.append((status.st_mtime, status.st_size, path))
            continue
        removed, freed = removed + 1, freed + status.st_size
        if not dry_run:
            path.unlink(missing_ok=True)
    for _, size, path in sorted(kept, reverse=True):  # newest first
        total += size
        if total > limit:
            removed, freed = removed + 1, freed + size
            if not dry_run:
                path.unlink(missing_ok=True)
    return CacheTrim(removed, freed)
