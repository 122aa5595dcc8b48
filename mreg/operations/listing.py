"""Finding things: references in ref tables, digests among objects, and listings.

Listings merge this registry with its fallbacks: a model or version comes from the
first store that has it (this one first), as a reference to it would resolve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from mreg.errors import (
    MregError,
    NotFoundError,
    UnknownModelError,
)
from mreg.records.manifest import (
    FileEntry,
    Manifest,
)
from mreg.records.names import Digest
from mreg.records.refs import RefTable
from mreg.records.versions import parse_version
from mreg.records.views import ModelSummary, VersionEntry

if TYPE_CHECKING:
    from mreg.registry import Registry
    from mreg.storage.index import ManifestRow


def list_versions(registry: Registry, name: str, *, local: RefTable | None = None) -> list[VersionEntry]:
    """Every version of a model here and in the fallbacks, highest precedence first
    (``local``: the model's refs here, if the caller has read them)."""
    local = registry.refs.read(name) if local is None else local
    tags = tags_by_version(local)
    entries = {v: VersionEntry(name, v, d, tuple(tags.get(v, ()))) for v, d in local.versions.items()}
    if registry.fallbacks:
        for source, table in registry.fallbacks.tables(name):
            for version, digest in table.versions.items():
                if version not in entries:
                    entries[version] = VersionEntry(name, version, digest, tuple(table.tags_of(version)), source.location)
    if not entries:
        raise UnknownModelError(name)
    if len(entries) == len(local.versions):
        return list(reversed(entries.values()))  # the table is already in precedence order
    return sorted(entries.values(), key=lambda e: parse_version(e.version).precedence, reverse=True)


def tags_by_version(table: RefTable) -> dict[str, list[str]]:
    """Each tagged version's tags, sorted (:meth:`RefTable.tags_of` for every version at once)."""
    found: dict[str, list[str]] = {}
    for tag in sorted(table.tags):
        found.setdefault(table.tags[tag], []).append(tag)
    return found


def list_models(registry: Registry) -> list[ModelSummary]:
    """Every model with at least one version, here and in the fallbacks, sorted by name.

    The latest versions' manifests come in one batch from the metadata index.
    """
    found: dict[str, tuple[RefTable, str | None]] = {}
    for name in registry.refs.names():
        table = registry.refs.read(name)
        if table.latest is not None:
            found[name] = (table, None)
    if registry.fallbacks:
        for source, names in registry.fallbacks.model_names():
            for name in names:
                if name in found:
                    continue
                try:
                    table = source.table(name)
                except MregError as exc:
                    registry.fallbacks.warnings.append(str(exc))
                    continue
                if table is not None and table.latest is not None:
                    found[name] = (table, source.location)
    rows = registry.manifest_rows((table.versions[table.latest] for table, _ in found.values()), skip_unreadable=True)
    return [_summary(name, *found[name], rows) for name in sorted(found)]


def parent_labels(registry: Registry, digests: Iterable[str]) -> dict[Digest, list[str]]:
    """The lineage parents of each of these versions, labelled ``name@version (sha256:…)``
    where the parent is still stored (as :meth:`Registry.label` gives them), read in two
    batches; a version whose manifest is gone has none (the log outlives objects)."""
    rows = registry.manifest_rows(digests, skip_unreadable=True)
    parents = registry.manifest_rows((p for row in rows.values() for p in row.parents), skip_unreadable=True)

    def label(digest: str) -> str:
        row = parents.get(Digest(digest))
        return version_label(row.name, row.version, digest) if row is not None else digest

    return {digest: [label(parent) for parent in row.parents] for digest, row in rows.items()}


def _summary(name: str, table: RefTable, source: str | None, rows: dict[Digest, ManifestRow]) -> ModelSummary:
    assert table.latest is not None
    digest = table.versions[table.latest]
    row = rows.get(digest)
    if row is not None and (row.name, row.version) == (name, table.latest):
        family, metrics = row.family, dict(row.metrics)
    else:  # a missing manifest, or another version's, is for fsck to report
        family, metrics = None, {}
    return ModelSummary(name, table.latest, digest, len(table.versions), dict(table.tags), family, source, metrics)


def named_file(manifest: Manifest, ref: str, path: str) -> FileEntry:
    """The entry of the file ``path`` in a version's manifest (``ref`` names the version
    in the error).

    Raises:
        NotFoundError: the version has no such file.
    """
    for entry in manifest.files:
        if entry.path == path:
            return entry
    raise NotFoundError(f"{ref} has no file '{path}'")


def version_label(name: str, version: str, digest: str) -> str:
    """``name@version (sha256:abcd1234)``: a version as lineage and logs show it."""
    return f"{name}@{version} ({digest[:15]})"
