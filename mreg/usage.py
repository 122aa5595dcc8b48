"""``mreg du``: what users registered (logical bytes) against what the store holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .maintenance import file_objects
from .notes import reachable as reachable_notes

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
    """Measure logical and stored bytes, per model and for the whole store.

    Manifests come in one batch from the metadata index (rows, never decoded), and each file's objects
    are looked up once however many versions share it.
    """
    store = registry.objects
    tables = {name: registry.refs.read(name).versions for name in registry.refs.names()}
    tables = {name: versions for name, versions in tables.items() if versions}
    rows = registry.manifest_rows(d for versions in tables.values() for d in versions.values())
    sizes = {digest: row.size for digest, row in rows.items()}
    needs = {f: file_objects(registry, f) for f in {file[1] for row in rows.values() for file in row.files}}
    for objects in needs.values():
        sizes.update((d, store.stored_size(d)) for d in objects if d not in sizes)
    models, everything = [], set()
    for name, versions in tables.items():
        objects = set(versions.values())
        logical = 0
        for digest in versions.values():
            for _, file, size in rows[digest].files:
                logical += size
                objects |= needs[file]
        noted = reachable_notes(registry, name)  # notes and their history, which gc keeps
        sizes.update((d, store.stored_size(d)) for d in noted if d not in sizes)
        objects |= noted
        everything |= objects
        models.append(ModelUsage(name, len(versions), logical, sum(sizes[d] for d in objects)))
    unreachable = sum(store.stored_size(d) for d in set(store.iter_digests()) - everything)
    cache = sum(path.stat().st_size for _, path in store.cached_files())
    return UsageReport(
        models=tuple(models),
        logical=sum(m.logical for m in models),
        stored=sum(sizes[d] for d in everything),
        unreachable=unreachable,
        cache=cache,
    )
