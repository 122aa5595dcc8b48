"""SHA-256 hashers: CPython's built-in one for the first few small inputs, OpenSSL's after.

Every digest in mreg is a SHA-256. :mod:`hashlib` loads OpenSSL, which costs about
5 ms of a process's start-up (a tenth of what ``mreg show`` adds to Python's own); a
command that reads a manifest or two needs none of OpenSSL's speed. The interpreter's
built-in SHA-256 is about nine times slower per byte, so it hashes small inputs only
until it has taken about what loading OpenSSL costs (:data:`BUILTIN_BUDGET`); any larger
or later input, or any once hashlib is loaded anyway, goes to hashlib. Both compute the
same function.
"""

from __future__ import annotations

import importlib
import sys
from typing import Protocol


class Hasher(Protocol):
    """What mreg uses of a hashlib hash object."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


# About the bytes the built-in hasher takes in OpenSSL's 5 ms import (it hashes ~130 MB/s)
BUILTIN_BUDGET = 512 << 10


def _builtin_sha256() -> type[Hasher] | None:
    # CPython's own module is _sha2 from 3.12 and _sha256 before; a build may leave both out.
    for module in ("_sha2", "_sha256"):
        try:
            constructor: type[Hasher] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        return constructor
    return None


_BUILTIN = _builtin_sha256()
_budget = BUILTIN_BUDGET  # what the built-in hasher may still take in this process


def sha256(size: int | None = None) -> Hasher:
    """A new SHA-256 hasher for about ``size`` bytes (None: unknown, maybe large)."""
    global _budget
    if _BUILTIN is not None and size is not None and size <= _budget and "hashlib" not in sys.modules:
        _budget -= size  # threads may race here: at worst a few more bytes go to the slow hasher
        return _BUILTIN()
    import hashlib  # start-up: OpenSSL is loaded by the first bulk hash, not by every command

    return hashlib.sha256()


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """The hex SHA-256 of some bytes in memory."""
    hasher = sha256(len(data))
    hasher.update(data)
    return hasher.hexdigest()
