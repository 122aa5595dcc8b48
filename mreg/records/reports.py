"""What fsck found and gc removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mreg.records.names import Digest

if TYPE_CHECKING:
    pass


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

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "objects": len(self.objects),
            "bytes": self.bytes,
            "temp_files": self.temp_files,
            "cache": self.cache,
        }
