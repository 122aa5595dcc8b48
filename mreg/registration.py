"""Registering a version: its inputs (files, metadata, who and when) and the commit.

Every input is validated, and every conflict that can be seen early is checked,
before a byte is stored; the same checks run again under the locks, where they
decide. A bad option never leaves a half-registered version behind.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from types import MappingProxyType
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Sequence, Union

from .errors import (
    ConflictError,
    InputFileError,
    InvalidInputError,
    InvalidNameError,
    InvalidTypeError,
    VersionConflictError,
    printable,
)
from .fileutil import ProgressReport, counting
from .names import Digest, is_digest, parse_name_version, validate_file_path, validate_tag
from .objects import (
    Dataset,
    FileEntry,
    Framework,
    MAX_MANIFEST_SIZE,
    Lineage,
    Manifest,
    validate_input_shape,
    validate_metrics,
    validate_properties,
)
from .refs import RefTable
from .segments import SegmentReader
from .validation import names_of, text_of
from .versions import Bump, bump as next_version
from .views import AddResult

if TYPE_CHECKING:
    from .registry import Registry


class Blob(NamedTuple):
    """File content produced in memory (for example a serialized state_dict).

    ``blocks`` is called once and yields the file's bytes in order.
    """

    path: str
    blocks: Callable[[], Iterable[bytes | memoryview]]


FileSource = Union[str, os.PathLike, Blob]


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


def register(
    registry: Registry,
    spec: str,
    files: Sequence[FileSource],
    *,
    bump: Bump | None,
    details: VersionDetails,
    parents: Iterable[str],
    tags: Iterable[str],
    author: str | None,
    progress: ProgressReport | None,
) -> AddResult:
    """Register files as a new version; see :meth:`mreg.Registry.add`."""
    name, version = parse_name_version(spec)
    if (version is None) == (bump is None):
        raise InvalidInputError(f"give either NAME@VERSION or --bump, not {'both' if version else 'neither'}")
    if bump is not None and bump not in ("major", "minor", "patch"):
        raise InvalidInputError(f"bump must be 'major', 'minor' or 'patch', not {printable(bump)}")
    tag_names = [validate_tag(t) for t in names_of(tags, "tags")]
    to_store = collect_files(names_of(files, "files"))
    parents = names_of(parents, "parents")
    if progress is not None and not callable(progress):
        raise InvalidTypeError(f"progress must be a callable, not {type(progress).__name__}")
    if author is not None:
        text_of(author, "author")
    # Weight files are read (headers, pickles) before a byte is stored, so an unsafe
    # checkpoint is refused early; what is recorded is read again from the stored bytes.
    from .weights import describe_paths  # only writers read weight files

    checked = describe_paths([(item.path, item.source) for item in to_store if isinstance(item.source, Path)])
    draft = Manifest(
        name=name,
        version=version or "0.0.0",
        files=(),
        family=details.family,
        framework=details.framework,
        architecture=details.architecture,
        input_shape=details.input_shape,
        metrics=details.metrics,
        properties=details.properties,
        lineage=Lineage(
            datasets=details.datasets,
            parents=tuple(registry.resolve(p) for p in parents),
            author=author or current_author(),
            message=details.message,
        ),
    )
    refuse_oversized(draft)
    known = registry.refs.read(name)
    refuse_twins(registry, name, version, known)
    if version is not None and version in known.versions:
        # Re-adding an existing version: hash the files without writing anything.
        entries = tuple(hash_file(registry, item) for item in to_store)
        described = with_weights(draft, details, describe_stored(registry, entries) or checked)
        result = commit(registry, replace(described, files=entries), tag_names, bump=None, stored=False)
        if result is not None:
            return result
        # The version was removed meanwhile: store the files and register it anew.
    total = sum(item.source.stat().st_size for item in to_store if isinstance(item.source, Path))
    advance = counting(progress, total)
    with registry.writing():
        entries = tuple(store_file(registry, item, advance) for item in to_store)
        described = with_weights(draft, details, describe_stored(registry, entries) or ({}, None))
        result = commit(registry, replace(described, files=entries), tag_names, bump=bump, stored=True)
    assert result is not None  # with stored files, commit always registers or raises
    return result


def with_weights(draft: Manifest, details: VersionDetails, described: tuple[dict[str, Any], Framework | None]) -> Manifest:
    """The draft with the weight files' tensor metadata; what the caller gave takes precedence."""
    facts, framework = described
    if not facts:
        return draft
    return replace(draft, framework=details.framework or framework, properties={**facts, **details.properties})


def describe_stored(registry: Registry, entries: Sequence[FileEntry]) -> tuple[dict[str, Any], Framework | None] | None:
    """Tensor metadata read from the stored bytes of the weight files (None: one is not stored)."""
    from .formats import is_weights_name
    from .weights import describe_weights

    weights = [entry for entry in entries if is_weights_name(entry.path)]
    if not all(registry.objects.contains(entry.digest) for entry in weights):
        return None
    streams = [(entry.path, io.BufferedReader(SegmentReader(registry.objects.segments(entry.digest))), entry.size) for entry in weights]
    try:
        return describe_weights(streams)
    finally:
        for _, stream, _ in streams:
            stream.close()


def commit(registry: Registry, draft: Manifest, tags: list[str], *, bump: Bump | None, stored: bool) -> AddResult | None:
    """Under the model's lock: pick the version, write the manifest, update the refs.

    Returns None, having written nothing, when the files were only hashed
    (``stored`` False) and the version no longer exists.
    """
    name = draft.name
    lineage = draft.lineage
    with registry.updating(name, author=lineage.author, message=lineage.message) as update:
        table = update.table
        version = next_version([table.highest] if table.highest else [], bump) if bump else draft.version
        existing = table.versions.get(version)
        if existing is None and not stored:
            return None
        manifest = replace(draft, version=version, lineage=replace(lineage, created=now_utc()))
        if existing is not None:
            check_same(registry, existing, manifest)
        else:
            refuse_precedence_twin(name, version, table)
            refuse_oversized(manifest)
            existing = registry.objects.add_bytes(manifest.encode()).digest
            table = table.with_version(version, existing)
        for tag in tags:
            table = table.with_tag(tag, version)
        created = version not in update.table.versions
        update.table = table
    return AddResult(name, version, existing, created)


def refuse_oversized(manifest: Manifest) -> None:
    """Refuse a manifest larger than readers accept (``MAX_MANIFEST_SIZE``): one limit, checked on write."""
    size = len(manifest.encode())
    if size > MAX_MANIFEST_SIZE:
        raise InvalidInputError(
            f"the metadata of {manifest.name} takes {size} bytes, more than the {MAX_MANIFEST_SIZE} a manifest may have"
        )


def refuse_twins(registry: Registry, name: str, version: str | None, table: RefTable) -> None:
    """Refuse a version that only build metadata sets apart, and a case twin of a model."""
    if not table.versions:
        refuse_case_twin(registry, name)
    if version is not None:
        refuse_precedence_twin(name, version, table)


def refuse_precedence_twin(name: str, version: str, table: RefTable) -> None:
    """Refuse a new version with the precedence of an existing one (only build metadata differs)."""
    if version in table.versions:
        return
    twin = table.same_precedence(version)
    if twin is not None:
        raise ConflictError(
            f"{name}@{version} would have the same precedence as the existing {name}@{twin}: "
            "versions that differ only in build metadata cannot both exist"
        )


def refuse_case_twin(registry: Registry, name: str) -> None:
    """Refuse a new model whose name differs from another only in case.

    Such names would share one directory on case-insensitive file systems.
    """
    names = registry.refs.names()
    if name in names:
        return
    twin = next((other for other in names if other.lower() == name.lower()), None)
    if twin is not None:
        raise InvalidNameError(f"model name '{name}' differs only in case from the existing model '{twin}'")


def check_same(registry: Registry, existing: Digest, manifest: Manifest) -> None:
    """Re-adding a version: the files and user metadata must be those registered."""
    current = registry.manifest(existing)
    if current.same_content(manifest):
        return
    what = "different files" if current.files != manifest.files else "different metadata"
    raise VersionConflictError(manifest.name, manifest.version, existing, what)


def store_file(registry: Registry, item: FileToStore, progress: Callable[[int], None] | None) -> FileEntry:
    """Store one file's bytes (hashing while copying) and describe it."""
    if isinstance(item.source, Blob):
        stored = registry.objects.add_stream(item.source.blocks(), progress=progress)
    else:
        stored = registry.objects.add_file(item.source, progress=progress)
    return FileEntry(item.path, stored.digest, stored.size)


def hash_file(registry: Registry, item: FileToStore) -> FileEntry:
    """Describe one file without storing it."""
    if isinstance(item.source, Blob):
        digest, size = registry.objects.hash_stream(item.source.blocks())
    else:
        digest, size = registry.objects.hash_file(item.source)
    return FileEntry(item.path, digest, size)


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
) -> VersionDetails:
    """Validate user metadata into a :class:`VersionDetails`."""
    return VersionDetails(
        family=_optional_word(family, "family"),
        framework=parse_framework(framework),
        architecture=_optional_word(architecture, "architecture"),
        input_shape=parse_input_shape(input_shape),
        metrics=validate_metrics(metrics or {}),
        properties=validate_properties(properties or {}),
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


def now_utc() -> str:
    """The current time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def current_author() -> str:
    """``MREG_AUTHOR``, else git's ``user.name``, else the login name."""
    import getpass
    import shutil
    import subprocess

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
