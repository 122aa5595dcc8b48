"""The inputs of a new version: its files and its metadata, validated."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    NamedTuple,
)

from mreg.errors import (
    InputFileError,
    InvalidInputError,
    InvalidNameError,
    InvalidTypeError,
)
from mreg.records.manifest import (
    Dataset,
    Framework,
    validate_input_shape,
    validate_metrics,
    validate_properties,
)
from mreg.records.names import (
    is_digest,
    names_of,
    text_of,
    validate_file_path,
)
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.card_field import CardInput


class Blob(NamedTuple):
    """File content produced in memory (for example a serialized state_dict).

    ``blocks`` is called once and yields the file's bytes in order.
    """

    path: str
    blocks: Callable[[], Iterable[bytes | memoryview]]


FileSource = str | os.PathLike[str] | Blob


class FileToStore(NamedTuple):
    """One file of a new version: its path in the version and where its bytes come from."""

    path: str
    source: Path | Blob


class VersionDetails(NamedTuple):
    """Validated metadata and lineage for a new version (everything but files and time)."""

    family: str | None = None
    framework: Framework | None = None
    architecture: str | None = None
    input_shape: tuple[int, ...] | None = None
    metrics: Mapping[str, float] = MappingProxyType({})
    properties: Mapping[str, Any] = MappingProxyType({})
    datasets: tuple[Dataset, ...] = ()
    message: str = ""


def collect_files(sources: Sequence[FileSource]) -> list[FileToStore]:
    """Expand files and directories into the sorted list of files to store.

    A file is stored under its base name; a directory's files under their paths
    relative to it.

    Raises:
        InputFileError: a path is missing or unreadable, or a directory is empty.
        InvalidInputError: two files would get the same path, or one would have to be
            the directory of another (``f`` and ``f/g``).
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
    from mreg.records.paths import refuse_path_clashes  # start-up: only add collects files, not show

    refuse_path_clashes(found)  # 'f' and 'f/g' could never be exported together
    return [found[path] for path in sorted(found)]


def _expand(source: FileSource) -> list[FileToStore]:
    if isinstance(source, Blob):
        return [FileToStore(source.path, source)]
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidTypeError(f"a file must be a path or a Blob, not {type(source).__name__}")
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
    card: CardInput | None = None,
) -> VersionDetails:
    """Validate user metadata into a :class:`VersionDetails` (the model card joins the metadata)."""
    from mreg.records.card_field import with_card  # start-up: `import mreg` loads this module, only add needs cards

    return VersionDetails(
        family=_optional_word(family, "family"),
        framework=parse_framework(framework),
        architecture=_optional_word(architecture, "architecture"),
        input_shape=parse_input_shape(input_shape),
        metrics=validate_metrics(metrics or {}),
        properties=validate_properties(with_card(properties or {}, card)),
        datasets=tuple(parse_dataset(d) for d in names_of(datasets, "datasets")),
        message=text_of(message, "message"),
    )


def parse_framework(value: str | Framework | None) -> Framework | None:
    """``"pytorch"``, ``"pytorch 2.13.0"`` or ``"pytorch==2.13.0"`` -> Framework."""
    if value is None or isinstance(value, Framework):
        return value
    name, _, version = text_of(value, "framework").replace("==", " ").strip().partition(" ")
    if not name:
        raise InvalidNameError("framework is empty: use NAME or 'NAME VERSION', e.g. 'pytorch 2.13.0'")
    return Framework(_optional_word(name, "framework") or name, version.strip() or None)


def parse_input_shape(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"``, ``"3x224x224"`` or a sequence of ints -> a validated shape."""
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)):
        raise InvalidTypeError(f"input shape must be a string or a list of integers, not {type(value).__name__}")
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
    name, _, where = text_of(value, "a dataset").partition("@")
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
    if not text_of(value, what).strip() or any(ord(c) < 32 for c in value) or len(value) > 200:
        raise InvalidInputError(f"invalid {what} '{printable(value)}': one line of text, at most 200 characters")
    return value.strip()
