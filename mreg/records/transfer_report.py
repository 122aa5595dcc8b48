"""What a transfer copied: the report of push, pull and clone.

Apart from :mod:`mreg.records.reports` because every transfer loads it and nothing else
there (a dataclass costs its process start-up time to build).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TransferReport:
    """What a transfer copied."""

    source: str
    destination: str
    objects: int = 0
    bytes: int = 0
    versions: list[str] = field(default_factory=list)  # name@version, new at the destination
    tags: list[str] = field(default_factory=list)  # name@tag -> version, new or moved
    notes: list[str] = field(default_factory=list)  # name@version whose note came over
    signatures: list[str] = field(default_factory=list)  # name@version of each signature that came over

    def to_dict(self) -> dict:
        return dict(self.__dict__)
