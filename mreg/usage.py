"""``mreg du``: what users registered (logical bytes) against what the store holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .maintenance import model_objects

if TYPE_CHECKING:
    from .registry import Registry


def _ratio(logical: int, stored: int) -> float:
    return logical / stored if stored else 1.0


@dataclass(frozen=True)
class ModelUsage:
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


@dataclass(frozen=True)
class UsageReport:
    """Per model and in total; objects shared between models count once in the total."""

    models: tuple[ModelUsage, ...]
    logical: int
    stored: int
    unreachable: int  # bytes gc would reclaim
    cache: int  # files assembled from chunks by `mreg path`

    @property
    def ratio(self) -> float:
        return _ratio(self.logical, self.stored)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [m.to_dict() for m in self.models],
            "logical": self.logical,
            "stored": self.stored,
            "ratio": self.ratio,
            "unreachable": self.unreachable,
            "cache": self.cache,
        }


def disk_usage(registry: Registry) -> UsageReport:
    """Measure logical and stored bytes, per model and for the whole store."""
    store = registry.objects
    models, everything = [], set()
    for name in registry.refs.names():
        versions = registry.refs.read(name).versions
        if not versions:
            continue
        objects = model_objects(registry, name)
        everything |= objects
        logical = sum(entry.size for d in versions.values() for entry in registry.manifest(d).files)
        stored = sum(store.stored_size(d) for d in objects)
        models.append(ModelUsage(name, len(versions), logical, stored))
    unreachable = sum(store.stored_size(d) for d in set(store.iter_digests()) - everything)
    cache = sum(path.stat().st_size for _, path in store.cached_files())
    return UsageReport(
        models=tuple(models),
        logical=sum(m.logical for m in models),
        stored=sum(store.stored_size(d) for d in everything),
        unreachable=unreachable,
        cache=cache,
    )
