"""The values the registry API returns: read-only views of versions and models."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from .names import Digest
from .objects import FileEntry, Lineage, Manifest
from .refs import RefTable


class ModelVersion(NamedTuple):
    """A read-only view of one registered version."""

    digest: Digest
    manifest: Manifest
    tags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return self.manifest.files

    @property
    def metrics(self) -> Mapping[str, float]:
        return self.manifest.metrics

    @property
    def lineage(self) -> Lineage:
        return self.manifest.lineage

    @classmethod
    def of(cls, digest: Digest, manifest: Manifest, table: RefTable) -> ModelVersion:
        """The view of a manifest, with the tags its model's refs give it."""
        tags: tuple[str, ...] = ()
        if table.versions.get(manifest.version) == digest:
            tags = tuple(table.tags_of(manifest.version))
            if table.latest == manifest.version:
                tags = ("latest", *tags)
        return cls(digest, manifest, tags)

    def to_dict(self) -> dict[str, Any]:
        """The JSON view of ``mreg show --json``."""
        data = self.manifest.to_dict()
        del data["kind"], data["schema"]
        return {"digest": self.digest, **data, "tags": list(self.tags)}


class VersionEntry(NamedTuple):
    """One line of ``mreg ls NAME``: a version, its manifest and its tags."""

    name: str
    version: str
    digest: Digest
    tags: tuple[str, ...]
    source: str | None = None  # the fallback it comes from; None: this registry

    def to_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "tags": list(self.tags)}


class ModelSummary(NamedTuple):
    """One line of ``mreg ls``: a model, its latest version and its tags."""

    name: str
    latest: str
    digest: Digest
    versions: int
    tags: Mapping[str, str]
    family: str | None
    source: str | None = None  # the fallback it comes from; None: this registry

    def to_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "tags": dict(self.tags)}


class AddResult(NamedTuple):
    """What ``add`` did: the version's digest, and whether it is new."""

    name: str
    version: str
    digest: Digest
    created: bool


class TagChange(NamedTuple):
    """A tag move: ``old`` and ``new`` are versions (None: absent)."""

    name: str
    tag: str
    old: str | None
    new: str | None
