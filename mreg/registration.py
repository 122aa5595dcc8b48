"""The inputs of ``add``: which files, which metadata, who and when.

Everything here validates before anything is written, so a bad option never leaves
a half-registered version behind.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from .errors import InputFileError, InvalidInputError, InvalidNameError, printable
from .names import is_digest, validate_file_path
from .objects import Dataset, Framework, validate_input_shape, validate_metrics, validate_properties


@dataclass(frozen=True)
class Blob:
    """File content produced in memory (for example a serialized state_dict).

    ``blocks`` is called once and yields the file's bytes in order.
    """

    path: str
    blocks: Callable[[], Iterable[bytes | memoryview]]


FileSource = Union[str, os.PathLike, Blob]


@dataclass(frozen=True)
class FileToStore:
    """One file of a new version: its path in the version and where its bytes come from."""

    path: str
    source: Path | Blob


@dataclass(frozen=True)
class VersionDetails:
    """Validated metadata and lineage for a new version (everything but files and time)."""

    family: str | None = None
    framework: Framework | None = None
    architecture: str | None = None
    input_shape: tuple[int, ...] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    datasets: tuple[Dataset, ...] = ()
    message: str = ""


def collect_files(sources: Sequence[FileSource]) -> list[FileToStore]:
    """Expand files and directories into the sorted list of files to store.

    A file is stored under its base name; a directory's files under their paths
    relative to it.

    Raises:
        InputFileError: a path is missing or unreadable, or a directory is empty.
        InvalidInputError: two files would get the same path.
    """
    if not sources:
        raise InvalidInputError("no files given: a version needs at least one file")
    found: dict[str, FileToStore] = {}
    for source in sources:
        for item in _expand(source):
            validate_file_path(item.path)
            if item.path in found:
                raise InvalidInputError(f"two files would be stored as '{printable(item.path)}'")
            found[item.path] = item
    return [found[path] for path in sorted(found)]


def _expand(source: FileSource) -> list[FileToStore]:
    if isinstance(source, Blob):
        return [FileToStore(source.path, source)]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if not files:
            raise InputFileError(f"directory '{path}' contains no files")
        return [FileToStore(p.relative_to(path).as_posix(), p) for p in files]
    if not path.is_file():
        why = "no such file or directory" if not path.exists() else "not a regular file"
        raise InputFileError(f"cannot add '{path}': {why}")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"cannot add '{path}': permission denied")
    return [FileToStore(path.name, path)]


def version_details(
    *,
    family: str | None = None,
    framework: str | Framework | None = None,
    architecture: str | None = None,
    input_shape: str | Sequence[int] | None = None,
    metrics: Mapping[str, float] | None = None,
    properties: Mapping[str, Any] | None = None,
    datasets: Iterable[str | Dataset] = (),
    message: str = "",
) -> VersionDetails:
    """Validate user metadata into a :class:`VersionDetails`."""
    return VersionDetails(
        family=_optional_word(family, "family"),
        framework=parse_framework(framework),
        architecture=_optional_word(architecture, "architecture"),
        input_shape=parse_input_shape(input_shape),
        metrics=validate_metrics(metrics or {}),
        properties=validate_properties(properties or {}),
        datasets=tuple(parse_dataset(d) for d in datasets),
        message=message,
    )


def parse_framework(value: str | Framework | None) -> Framework | None:
    """``"pytorch"``, ``"pytorch 2.13.0"`` or ``"pytorch==2.13.0"`` -> Framework."""
    if value is None or isinstance(value, Framework):
        return value
    name, _, version = value.replace("==", " ").strip().partition(" ")
    if not name:
        raise InvalidNameError("framework is empty: use NAME or 'NAME VERSION', e.g. 'pytorch 2.13.0'")
    return Framework(_optional_word(name, "framework") or name, version.strip() or None)


def parse_input_shape(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"``, ``"3x224x224"`` or a sequence of ints -> a validated shape."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.replace("x", ",").split(",")
        try:
            value = [int(part) for part in parts]
        except ValueError:
            raise InvalidInputError(
                f"invalid input shape '{printable(value)}': use comma-separated integers such as 1,3,224,224"
            ) from None
    return validate_input_shape(list(value))


def parse_dataset(value: str | Dataset) -> Dataset:
    """``NAME``, ``NAME@sha256:...`` or ``NAME@URI`` -> Dataset."""
    if isinstance(value, Dataset):
        return value
    name, _, where = value.partition("@")
    if not name.strip():
        raise InvalidInputError(f"invalid dataset '{printable(value)}': expected NAME[@DIGEST|@URI]")
    if where.startswith("sha256:"):
        if not is_digest(where):
            raise InvalidInputError(f"invalid dataset digest '{printable(where)}': expected sha256: and 64 hex digits")
        return Dataset(name.strip(), digest=where)
    return Dataset(name.strip(), uri=where or None)


def _optional_word(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not value.strip() or any(ord(c) < 32 for c in value) or len(value) > 200:
        raise InvalidInputError(f"invalid {what} '{printable(value)}': one line of text, at most 200 characters")
    return value.strip()


def now_utc() -> str:
    """The current time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def current_author() -> str:
    """``MREG_AUTHOR``, else git's ``user.name``, else the login name."""
    author = os.environ.get("MREG_AUTHOR", "").strip()
    if author:
        return author
    git = shutil.which("git")
    if git:
        try:
            result = subprocess.run(
                [git, "config", "user.name"], capture_output=True, text=True, timeout=5, check=False
            )
            if result.returncode == 0 and result.stdout.strip():
                return result.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
