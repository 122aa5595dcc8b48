"""What ``mreg pack`` did (or, with ``--dry-run``, estimates it would do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PackReport:
    """Chunks packed, unpacked and left as they were, with their bytes.

    ``raw_bytes`` are the raw bytes of the chunks this run packed and ``packed_bytes``
    their records' (estimated from samples with ``dry_run``); ``freed`` is what the
    store's objects shrank by (negative when hot chunks were unpacked).
    """

    dry_run: bool
    all: bool = False  # the hot versions were packed too
    deltas: int = 0  # chunks packed as a delta against another
    standalone: int = 0  # chunks packed alone
    left_raw: int = 0  # cold chunks no record saved enough on
    unpacked: int = 0  # hot chunks given back their raw form
    kept: int = 0  # chunks already packed as planned
    raw_bytes: int = 0
    packed_bytes: int = 0
    freed: int = 0
    deepest: int = 0  # the longest chain of records a read now decodes
    problems: list[str] = field(default_factory=list)  # chunks that could not be packed (left as they were)

    @property
    def packed(self) -> int:
        """Chunks this run packed."""
        return self.deltas + self.standalone

    @property
    def ratio(self) -> float:
        """Record bytes per raw byte of the chunks this run packed."""
        return self.packed_bytes / self.raw_bytes if self.raw_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "all": self.all,
            "packed": self.packed,
            "deltas": self.deltas,
            "standalone": self.standalone,
            "left_raw": self.left_raw,
            "unpacked": self.unpacked,
            "kept": self.kept,
            "raw_bytes": self.raw_bytes,
            "packed_bytes": self.packed_bytes,
            "ratio": self.ratio,
            "freed": self.freed,
            "deepest": self.deepest,
            "problems": self.problems,
        }
