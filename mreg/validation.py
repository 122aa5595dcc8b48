"""Checks for what comes from elsewhere: another store, a file, a Python caller.

A fallback directory, an HTTP mirror or a pull source is hostile until proven
otherwise: what it serves passes the checks local input passes, before anything
is written here, and every read of it is bounded. The bounds below are the ones
stated in SYSTEM_DESIGN (security).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CorruptObjectError, InputFileError, InvalidInputError, InvalidTypeError, MregError, RemoteError, printable
from .refs import LogEntry, RefTable
from .versions import parse_version

if TYPE_CHECKING:
    from .objects import Manifest

MAX_TABLE_SIZE = 32 << 20  # a ref table: ~100 bytes a version, so ~300,000 versions
MAX_LOG_SIZE = 64 << 20  # a model's reflog
MAX_MODEL_LIST_SIZE = 16 << 20  # info/models: ~80,000 names of 200 characters
MAX_CHUNK_INDEX_SIZE = 16 << 20  # a .chunks index: ~200,000 chunks
MAX_LOG_FIELD = 64 << 10  # one text field of one log line
MAX_SMALL_FILE = 64 << 20  # any other small file read whole (Source.read)


def table_problems(table: RefTable) -> list[str]:
    """Everything wrong with a ref table, as local input would be judged.

    Versions valid and in precedence order, no two with one precedence (build
    metadata twins), tags valid names that are neither ``latest`` nor version-like,
    every tag and ``latest`` pointing at a listed version.
    """
    from .names import is_digest, validate_tag

    found = [f"version {printable(v)} points at invalid digest '{printable(d)}'" for v, d in table.versions.items() if not is_digest(d)]
    try:
        parsed = [parse_version(v) for v in table.versions]  # once each: tables can hold 10^5 versions
    except MregError as exc:
        found.append(exc.message)
    if found:
        return found
    keys = [version.precedence for version in parsed]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        found.append("versions are not in strictly ascending precedence (out of order, or build-metadata twins)")
    releases = [v for v, version in zip(table.versions, parsed) if not version.is_prerelease]
    expected = (releases or list(table.versions) or [None])[-1] if not found else table.latest
    if table.latest != expected:
        found.append(f"latest is {table.latest} but should be {expected}")
    for tag, version in table.tags.items():
        try:
            validate_tag(tag)
        except MregError as exc:
            found.append(exc.message)
        if version not in table.versions:
            found.append(f"tag {printable(tag)} points at missing version {printable(version)}")
    return found


def checked_table(table: RefTable, name: str, location: str) -> RefTable:
    """``table`` if it passes :func:`table_problems`, else RemoteError naming the model."""
    problems = table_problems(table)
    if problems:
        raise RemoteError(f"{location}: the refs of '{name}' are invalid ({printable(problems[0], 120)}); skipped")
    return table


def log_entry(raw: Any) -> LogEntry:
    """A log line's JSON value as a LogEntry, every field of the right type.

    Raises:
        ValueError: a field is missing, of the wrong type, or too long.
    """
    if not isinstance(raw, dict):
        raise ValueError("a log line is not a JSON object")
    values = []
    for key in LogEntry._fields:
        value = raw.get(key, "" if key == "message" else None)
        optional = key in ("old", "new")
        if not (isinstance(value, str) or (optional and value is None)):
            raise ValueError(f"log field {key} has the wrong type")
        if value is not None and len(value) > MAX_LOG_FIELD:
            raise ValueError(f"log field {key} is too long")
        values.append(value)
    return LogEntry(*values)


def regular_file(path: Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (after symlinks), else InputFileError.

    FIFOs, devices and sockets would block or never end: they are refused.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"a {what} must be a path, not {type(path).__name__}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(f"cannot read {what} '{path}': no such file") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"cannot read {what} '{path}': it is a directory")
    if not stat.S_ISREG(mode):
        raise InputFileError(f"cannot read {what} '{path}': not a regular file (a FIFO, device or socket)")
    return path


def refuse_symlinks(root: Path) -> None:
    """Refuse a store that holds symbolic links, which writes would follow outside it.

    Raises:
        RemoteError: naming the first link found.
    """
    for directory, subdirs, files in os.walk(root):
        for entry in (*subdirs, *files):
            path = os.path.join(directory, entry)
            if os.path.islink(path):
                raise RemoteError(f"refusing to write to {root}: {path} is a symbolic link")


def names_of(value: Any, what: str) -> list[Any]:
    """An iterable of names as a list; a bare string is refused (it would be its letters).

    Raises:
        InvalidTypeError: ``value`` is a string, bytes or not iterable.
    """
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"{what} must be a list of names, not a single string (use [{value!r}])")
    if not isinstance(value, Iterable):
        raise InvalidTypeError(f"{what} must be a list of names, not {type(value).__name__}")
    return list(value)


def text_of(value: Any, what: str) -> str:
    """``value`` if it is a str, else InvalidTypeError (API callers pass anything)."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a string, not {type(value).__name__}")
    return value


def require(condition: bool, message: str) -> None:
    """Raise InvalidInputError(message) unless ``condition``."""
    if not condition:
        raise InvalidInputError(message)


def manifest_check(digest: str, expect: tuple[str, str] | None) -> Callable[[Manifest], None]:
    """A check that a manifest is the one a ref promised: ``expect`` is (name, version)."""

    def check(manifest: Manifest) -> None:
        if expect is not None and (manifest.name, manifest.version) != expect:
            raise CorruptObjectError(
                digest, f"it is the manifest of {manifest.name}@{manifest.version}, not of {expect[0]}@{expect[1]}"
            )

    return check
