"""What changed between two versions: metadata, metrics, lineage, files and tensors.

This module compares manifests and knows nothing of torch. Tensor differences
inside weight files come from a comparer passed in by the caller;
:func:`mreg.pytorch.diff` passes the PyTorch adapter's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .formats import is_weights_name
from .objects import FileEntry, Manifest

if TYPE_CHECKING:
    from .registry import Registry


@dataclass(frozen=True)
class FieldChange:
    """A metadata or lineage field that differs (``None``: absent)."""

    field: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class MetricChange:
    """A metric that differs; ``delta`` is new - old when both exist (and it is finite)."""

    name: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        delta = self.new - self.old
        return delta if math.isfinite(delta) else None  # 1e308 - -1e308 overflows: JSON has no infinity

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "old": self.old, "new": self.new, "delta": self.delta}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's name, dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class TensorChange:
    """A tensor (or a plain value of a checkpoint) present on both sides whose dtype, shape or values differ.

    ``max_abs_diff`` is the largest difference over the positions where both values
    are finite (exact for integers), None when it cannot be computed;
    ``nonfinite_changed`` counts positions whose NaN or infinity changed.
    """

    old: TensorSpec
    new: TensorSpec
    max_abs_diff: float | int | None  # only when dtype and shape match
    nonfinite_changed: int = 0

    @property
    def kind(self) -> str:
        if self.old.dtype != self.new.dtype:
            return "dtype"
        return "shape" if self.old.shape != self.new.shape else "values"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.old.name,
            "kind": self.kind,
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "max_abs_diff": self.max_abs_diff if _finite(self.max_abs_diff) else None,
            "nonfinite_changed": self.nonfinite_changed,
        }


def _finite(value: float | int | None) -> bool:
    return value is not None and (isinstance(value, int) or math.isfinite(value))


@dataclass(frozen=True)
class TensorDiff:
    """Tensor-level differences between two weight files."""

    added: tuple[TensorSpec, ...]
    removed: tuple[TensorSpec, ...]
    changed: tuple[TensorChange, ...]
    unchanged: int
    unchanged_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [t.to_dict() for t in self.added],
            "removed": [t.to_dict() for t in self.removed],
            "changed": [c.to_dict() for c in self.changed],
            "unchanged": self.unchanged,
            "unchanged_bytes": self.unchanged_bytes,
        }


@dataclass(frozen=True)
class FileChange:
    """A file of either version: ``added``, ``removed``, ``changed``, ``renamed`` or ``unchanged``.

    When each version has exactly one weight file, under different paths (say
    ``model.pt`` and ``model.safetensors``), the two are compared with each other.
    """

    path: str
    status: str
    old: FileEntry | None
    new: FileEntry | None
    tensors: TensorDiff | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "old": self.old.to_dict() if self.old else None,
            "new": self.new.to_dict() if self.new else None,
            "tensors": self.tensors.to_dict() if self.tensors else None,
        }


@dataclass(frozen=True)
class VersionDiff:
    """Everything that differs between two versions."""

    old: str  # name@version
    new: str
    old_digest: str
    new_digest: str
    fields: tuple[FieldChange, ...]
    metrics: tuple[MetricChange, ...]
    files: tuple[FileChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": {"ref": self.old, "digest": self.old_digest},
            "new": {"ref": self.new, "digest": self.new_digest},
            "fields": [f.to_dict() for f in self.fields],
            "metrics": [m.to_dict() for m in self.metrics],
            "files": [f.to_dict() for f in self.files],
        }


TensorComparer = Callable[["Registry", FileEntry, FileEntry], TensorDiff]
"""Compares two stored weight files tensor by tensor."""


def diff_versions(registry: Registry, old_ref: str, new_ref: str, *, compare_tensors: TensorComparer | None = None) -> VersionDiff:
    """Compare two versions; with ``compare_tensors``, weight files tensor by tensor."""
    old_digest, new_digest = registry.resolve(old_ref), registry.resolve(new_ref)
    old, new = registry.manifest(old_digest), registry.manifest(new_digest)
    return VersionDiff(
        old=f"{old.name}@{old.version}",
        new=f"{new.name}@{new.version}",
        old_digest=old_digest,
        new_digest=new_digest,
        fields=tuple(_field_changes(old, new)),
        metrics=tuple(
            MetricChange(name, old.metrics.get(name), new.metrics.get(name))
            for name in sorted(old.metrics.keys() | new.metrics.keys())
            if old.metrics.get(name) != new.metrics.get(name)
        ),
        files=tuple(_file_changes(registry, old, new, compare_tensors)),
    )


def _field_changes(old: Manifest, new: Manifest) -> list[FieldChange]:
    before, after = _comparable(old), _comparable(new)
    return [
        FieldChange(key, before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def _comparable(manifest: Manifest) -> dict[str, Any]:
    data = manifest.to_dict()
    flat = {key: data[key] for key in ("family", "framework", "architecture", "input_shape")}
    flat.update({f"lineage.{key}": value for key, value in data["lineage"].items()})
    flat.update({f"metadata.{key}": value for key, value in data["properties"].items()})
    return flat


def _file_changes(registry: Registry, old: Manifest, new: Manifest, compare: TensorComparer | None) -> list[FileChange]:
    before = {f.path: f for f in old.files}
    after = {f.path: f for f in new.files}
    renamed = _renamed_weights(before, after)
    if renamed is not None:
        del before[renamed[0].path], after[renamed[1].path]
    changes = [
        _file_change(registry, before.get(path), after.get(path), compare)
        for path in sorted(before.keys() | after.keys())
    ]
    if renamed is not None:
        changes.append(_file_change(registry, *renamed, compare))
    return changes


def _file_change(registry: Registry, old: FileEntry | None, new: FileEntry | None, compare: TensorComparer | None) -> FileChange:
    if old is None or new is None:
        present = old or new
        assert present is not None
        return FileChange(present.path, "added" if old is None else "removed", old, new)
    if old.digest == new.digest:
        return FileChange(new.path, "unchanged" if old.path == new.path else "renamed", old, new)
    weights = compare is not None and is_weights_name(old.path) and is_weights_name(new.path)
    return FileChange(new.path, "changed", old, new, compare(registry, old, new) if weights else None)


def _renamed_weights(before: dict[str, FileEntry], after: dict[str, FileEntry]) -> tuple[FileEntry, FileEntry] | None:
    """When each side has exactly one weight file, under different paths, pair them."""
    old = [f for f in before.values() if is_weights_name(f.path)]
    new = [f for f in after.values() if is_weights_name(f.path)]
    if len(old) == 1 and len(new) == 1 and old[0].path != new[0].path:
        return old[0], new[0]
    return None
