"""The values the registry API returns: read-only views of versions and models."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from mreg.records.card import ModelCard
    from mreg.records.manifest import FileEntry, Framework, Lineage, Manifest
    from mreg.records.names import Digest
    from mreg.records.notes import Note
    from mreg.records.refs import RefTable


class ModelVersion(NamedTuple):
    """A read-only view of one registered version."""

    digest: Digest
    manifest: Manifest
    tags: tuple[str, ...] = ()
    note: Note | None = None  # added after registration (see mreg.notes)
    source: str | None = None  # the fallback it comes from; None: this registry

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
    def family(self) -> str | None:
        return self.manifest.family

    @property
    def framework(self) -> Framework | None:
        return self.manifest.framework

    @property
    def properties(self) -> Mapping[str, Any]:
        """Free metadata recorded at registration."""
        return self.manifest.properties

    @property
    def metrics(self) -> Mapping[str, float]:
        """The metrics recorded at registration."""
        return self.manifest.metrics

    @property
    def evaluation(self) -> Mapping[str, float]:
        """The metrics noted after registration (``mreg note --metric``)."""
        return self.note.metrics if self.note is not None else {}

    @property
    def all_metrics(self) -> dict[str, float]:
        """Registration metrics, overridden by noted ones of the same name (filters, sorting)."""
        return {**self.manifest.metrics, **self.evaluation}

    @property
    def deprecated(self) -> str | None:
        """Why the version should no longer be used, if a note says so."""
        return self.note.deprecated if self.note is not None else None

    @property
    def lineage(self) -> Lineage:
        return self.manifest.lineage

    @property
    def card(self) -> ModelCard | None:
        """The model card (metadata key ``card``), checked; None when the version has none.

        Raises:
            CorruptObjectError: the stored card is not a valid card.
        """
        if "card" not in self.manifest.properties:
            return None
        from mreg.records.card_field import card_of  # start-up: only versions with a card need it

        return card_of(self.manifest.properties, self.digest)

    @classmethod
    def of(cls, digest: Digest, manifest: Manifest, table: RefTable, note: Note | None = None) -> ModelVersion:
        """The view of a manifest, with the tags its model's refs give it."""
        return cls(digest, manifest, version_tags(table, manifest.version, digest, table.tags_of), note)

    def to_dict(self) -> dict[str, Any]:
        """The JSON view of ``mreg show --json``."""
        data = self.manifest.to_dict()
        del data["kind"], data["schema"]
        notes = self.note.to_dict() if self.note is not None else None
        card = self.card
        return {"digest": self.digest, **data, "tags": list(self.tags), "notes": notes, "card": card.to_dict() if card else None}

    def to_entry_dict(self) -> dict[str, Any]:
        """The JSON view of one line of ``mreg ls NAME``: a :class:`VersionEntry` (its tags
        as the model's refs name them), whether it is the latest version, its registration
        metrics and its notes."""
        tags = [tag for tag in self.tags if tag != "latest"]
        notes = self.note.to_dict() if self.note is not None else None
        entry = VersionEntry(self.name, self.version, self.digest, tuple(tags), self.source)
        return {**entry.to_dict(), "latest": "latest" in self.tags, "metrics": dict(self.metrics), "notes": notes}


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
    metrics: Mapping[str, float] = {}  # the latest version's, recorded at registration

    def to_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "tags": dict(self.tags), "metrics": dict(self.metrics)}


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


def version_tags(table: RefTable, version: str, digest: str, tags_of: Callable[[str], Iterable[str]]) -> tuple[str, ...]:
    """The tags a model's refs give one of its versions, ``latest`` first: none unless
    ``version`` names ``digest`` there. ``tags_of`` gives a version's tags
    (:meth:`RefTable.tags_of`, or a lookup in a table inverted once for many versions)."""
    if table.versions.get(version) != digest:
        return ()
    found = tuple(tags_of(version))
    return ("latest", *found) if table.latest == version else found
