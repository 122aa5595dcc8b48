"""What changed between two versions: the values ``diff`` returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry


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
