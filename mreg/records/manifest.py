"""Manifests: the immutable record of one registered version, and their encoding.

A manifest is stored as an object whose bytes are its canonical msgpack encoding
(maps with sorted keys, floats as float64, no optional fields left out), so the same
content always has the same digest. Decoding validates every field: a manifest may
come from a fallback store that mreg does not control.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import msgpack

from mreg.errors import (
    CorruptObjectError,
    InvalidInputError,
    InvalidNameError,
)
from mreg.records.codec import canonical_encode, decode_record, sha256_digest
from mreg.records.names import (
    Digest,
    is_digest,
    validate_file_path,
    validate_key,
    validate_name,
)
from mreg.records.versions import is_version
from mreg.text import printable

MANIFEST_KIND = "mreg.manifest"
SCHEMA_VERSION = 1
MAX_INT = (1 << 63) - 1  # msgpack stores integers in 64 bits
MIN_INT = -(1 << 63)

JSONValue = Any  # None, bool, int, float, str, and lists/maps of them


class FileEntry(NamedTuple):
    """One file of a version: where it goes, what it is, how big it is."""

    path: str
    digest: Digest
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "size": self.size}


class Dataset(NamedTuple):
    """A dataset a model was trained or evaluated on; digest and URI are optional."""

    name: str
    digest: str | None = None
    uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "uri": self.uri}


class Framework(NamedTuple):
    """The framework a model runs in, e.g. ``pytorch 2.13.0``."""

    name: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    def __str__(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: data, parent versions, when, who and why."""

    datasets: tuple[Dataset, ...] = ()
    parents: tuple[Digest, ...] = ()
    created: str = ""
    author: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": [d.to_dict() for d in self.datasets],
            "parents": list(self.parents),
            "created": self.created,
            "author": self.author,
            "message": self.message,
        }


@dataclass(frozen=True)
class Manifest:
    """An immutable registered version: its files, metadata and lineage."""

    name: str
    version: str
    files: tuple[FileEntry, ...]
    family: str | None = None
    framework: Framework | None = None
    architecture: str | None = None
    input_shape: tuple[int, ...] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    properties: Mapping[str, JSONValue] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain data (what is encoded, and what ``--json`` shows)."""
        return {
            "kind": MANIFEST_KIND,
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "files": [f.to_dict() for f in self.files],
            "family": self.family,
            "framework": self.framework.to_dict() if self.framework else None,
            "architecture": self.architecture,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "metrics": dict(self.metrics),
            "properties": dict(self.properties),
            "lineage": self.lineage.to_dict(),
        }

    def encode(self) -> bytes:
        """The canonical bytes stored as this manifest's object."""
        return canonical_encode(self.to_dict())

    @property
    def digest(self) -> Digest:
        """The manifest's id: the SHA-256 of its canonical encoding."""
        return sha256_digest(self.encode())

    def same_content(self, other: Manifest) -> bool:
        """True when files and user metadata match (creation time and author aside)."""
        mine = replace(self, lineage=replace(self.lineage, created="", author=""))
        theirs = replace(other, lineage=replace(other.lineage, created="", author=""))
        return mine.to_dict() == theirs.to_dict()

    @classmethod
    def decode(cls, data: bytes, digest: str = "manifest") -> Manifest:
        """Decode and validate a stored manifest.

        Raises:
            CorruptObjectError: the bytes are not a valid, canonical manifest.
        """
        try:
            manifest = manifest_from_dict(decode_record(data, MANIFEST_KIND))
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise CorruptObjectError(digest, f"not a valid manifest ({_reason(exc)})") from None
        if manifest.encode() != data:
            raise CorruptObjectError(digest, "manifest is not in canonical form")
        return manifest


def looks_like_manifest(data: bytes) -> bool:
    """Cheap test used to type objects: a msgpack map that names our manifest kind."""
    if not data or not (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF)):
        return False
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return False
    return isinstance(raw, dict) and raw.get("kind") == MANIFEST_KIND


def manifest_from_dict(raw: Any) -> Manifest:
    """Build a Manifest from plain data, validating every field."""
    _expect(isinstance(raw, dict), "top level is not a map")
    _expect(raw.get("kind") == MANIFEST_KIND, "kind is not mreg.manifest")
    _expect(raw.get("schema") == SCHEMA_VERSION, f"unsupported schema {raw.get('schema')!r}")
    version = raw["version"]
    _expect(isinstance(version, str) and is_version(version), "bad version")
    lineage = raw["lineage"]
    _expect(isinstance(lineage, dict), "lineage is not a map")
    return Manifest(
        name=validate_name(_text(raw["name"])),
        version=version,
        files=tuple(_file_entry(item) for item in _list(raw["files"])),
        family=_optional_text(raw["family"]),
        framework=_framework(raw["framework"]),
        architecture=_optional_text(raw["architecture"]),
        input_shape=validate_input_shape(raw["input_shape"]) if raw["input_shape"] is not None else None,
        metrics=validate_metrics(raw["metrics"]),
        properties=validate_properties(raw["properties"]),
        lineage=Lineage(
            datasets=tuple(_dataset(item) for item in _list(lineage["datasets"])),
            parents=tuple(_digest(item) for item in _list(lineage["parents"])),
            created=_text(lineage["created"]),
            author=_text(lineage["author"]),
            message=_text(lineage["message"]),
        ),
    )


# ------------------------------------------------------------------ field validators


def validate_metrics(metrics: Any) -> dict[str, float]:
    """Metrics are a map of valid names to finite numbers (stored as floats)."""
    if not isinstance(metrics, Mapping):
        raise InvalidInputError("metrics must be a map of names to numbers")
    result = {}
    for key, value in metrics.items():
        validate_key(key, "metric name")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise InvalidInputError(f"metric '{key}' must be a finite number, not {printable(repr(value))}")
        result[key] = float(value)
    return result


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too big for a float
        return False


def validate_properties(properties: Any) -> dict[str, JSONValue]:
    """Free metadata: valid keys mapping to JSON-like values (finite numbers only)."""
    if not isinstance(properties, Mapping):
        raise InvalidInputError("metadata must be a map of keys to values")
    return {validate_key(key, "metadata key"): _json_value(value, key) for key, value in properties.items()}


def validate_input_shape(shape: Any) -> tuple[int, ...]:
    """An input shape is a list of positive ints; -1 marks a dynamic dimension."""
    if not isinstance(shape, (list, tuple)) or not shape:
        raise InvalidInputError("input shape must be a non-empty list of dimensions")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or not (0 < dim <= MAX_INT or dim == -1):
            raise InvalidInputError(f"invalid input dimension {printable(repr(dim))}: use positive integers or -1")
    return tuple(shape)


def _json_value(value: Any, key: str, depth: int = 0) -> JSONValue:
    if depth > 16:
        raise InvalidInputError(f"metadata '{key}' is nested too deeply")
    if isinstance(value, int) and not isinstance(value, bool) and not MIN_INT <= value <= MAX_INT:
        raise InvalidInputError(f"metadata '{key}' holds an integer outside the 64-bit range")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"metadata '{key}' must not be NaN or infinite")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(item, key, depth + 1) for item in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, key, depth + 1) for k, v in value.items()}
    raise InvalidInputError(f"metadata '{key}' has a value of type {type(value).__name__} that cannot be stored")


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def _text(value: Any) -> str:
    _expect(isinstance(value, str), f"expected text, got {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _list(value: Any) -> list:
    _expect(isinstance(value, list), f"expected a list, got {type(value).__name__}")
    return value


def _digest(value: Any) -> Digest:
    _expect(isinstance(value, str) and is_digest(value), "bad digest")
    return Digest(value)


def _file_entry(item: Any) -> FileEntry:
    _expect(isinstance(item, dict), "file entry is not a map")
    size = item["size"]
    _expect(isinstance(size, int) and not isinstance(size, bool) and size >= 0, "bad file size")
    return FileEntry(validate_file_path(_text(item["path"])), _digest(item["digest"]), size)


def _dataset(item: Any) -> Dataset:
    _expect(isinstance(item, dict), "dataset is not a map")
    return Dataset(_text(item["name"]), _optional_text(item["digest"]), _optional_text(item["uri"]))


def _framework(item: Any) -> Framework | None:
    if item is None:
        return None
    _expect(isinstance(item, dict), "framework is not a map")
    return Framework(_text(item["name"]), _optional_text(item["version"]))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    if isinstance(exc, InvalidNameError):
        return exc.message
    return str(exc) or type(exc).__name__


def manifest_check(digest: str, expect: tuple[str, str] | None) -> Callable[[Manifest], None]:
    """A check that a manifest is the one a ref promised: ``expect`` is (name, version)."""

    def check(manifest: Manifest) -> None:
        if expect is not None and (manifest.name, manifest.version) != expect:
            raise CorruptObjectError(
                digest, f"it is the manifest of {manifest.name}@{manifest.version}, not of {expect[0]}@{expect[1]}"
            )

    return check
