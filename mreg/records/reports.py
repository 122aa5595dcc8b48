"""Reports: what fsck found, what gc removed, what an export wrote, du measured.

What a transfer copied is :mod:`mreg.records.transfer_report`'s, apart: every push and
pull loads it, and none of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from mreg.records.names import Digest
    from mreg.records.packing import PackReport


@dataclass
class FsckReport:
    """What fsck found: ``problems`` make it fail, ``notes`` are for information."""

    objects: int = 0
    models: int = 0
    versions: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "models": self.models,
            "versions": self.versions,
            "problems": self.problems,
            "notes": self.notes,
        }


@dataclass
class GcReport:
    """What gc removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    objects: list[Digest] = field(default_factory=list)
    bytes: int = 0
    temp_files: int = 0
    cache: int = 0  # bytes of cached copies dropped (see mreg.cache)
    packed: PackReport | None = None  # with gc --pack: what packing did

    def to_dict(self) -> dict:
        found: dict[str, Any] = {
            "dry_run": self.dry_run,
            "objects": len(self.objects),
            "bytes": self.bytes,
            "temp_files": self.temp_files,
            "cache": self.cache,
        }
        if self.packed is not None:
            found["pack"] = self.packed.to_dict()
        return found


@dataclass
class ExportReport:
    """What an export wrote: paths relative to the directory."""

    name: str
    version: str
    directory: Path
    linked: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # already there with the same bytes

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "directory": str(self.directory)}


def _ratio(logical: int, stored: int) -> float:
    return logical / stored if stored else 1.0


class ModelUsage(NamedTuple):
    """One model: the bytes of all its versions' files, and of the objects they need."""

    name: str
    versions: int
    logical: int
    stored: int

    @property
    def ratio(self) -> float:
        """Deduplication ratio: logical bytes per stored byte."""
        return _ratio(self.logical, self.stored)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "versions": self.versions, "logical": self.logical, "stored": self.stored, "ratio": self.ratio}


class UsageReport(NamedTuple):
    """Per model and in total; objects shared between models count once in the total."""

    models: tuple[ModelUsage, ...]
    logical: int
    stored: int
    unreachable: int  # bytes gc would reclaim
    cache: int  # files assembled from chunks by `mreg path`
    packed_raw: int = 0  # raw bytes of the packed objects the versions need (mreg pack)...
    packed_stored: int = 0  # ... and the bytes their records take (counted in stored)
    bases: int = 0  # bytes of unreachable objects kept as bases of packed ones (not in unreachable)

    @property
    def ratio(self) -> float:
        return _ratio(self.logical, self.stored)

    @property
    def packing_saved(self) -> int:
        """Bytes packing saves: the packed objects' raw bytes less their records'."""
        return self.packed_raw - self.packed_stored

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [m.to_dict() for m in self.models],
            "logical": self.logical,
            "stored": self.stored,
            "ratio": self.ratio,
            "unreachable": self.unreachable,
            "cache": self.cache,
            "packed_raw": self.packed_raw,
            "packed_stored": self.packed_stored,
            "packing_saved": self.packing_saved,
            "bases": self.bases,
        }
