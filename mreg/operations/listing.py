"""Finding versions and models: one version's view, a model's versions, every model.

Listings merge this registry with its fallbacks: a model or version comes from the
first store that has it (this one first), as a reference to it would resolve.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.errors import InvalidInputError, MregError, NotFoundError
from mreg.records.names import Digest
from mreg.records.versions import parse_version
from mreg.records.views import ModelSummary, ModelVersion, VersionEntry
from mreg.store.resolution import find_object as find_prefixed
from mreg.store.resolution import is_manifest

if TYPE_CHECKING:
    from mreg.records.manifest import (
        FileEntry,
        Manifest,
    )
    from mreg.records.refs import LogEntry, RefTable
    from mreg.storage.index import ManifestRow
    from mreg.storage.threads import ProgressReport
    from mreg.store.store import Store


def version_view(store: Store, ref: str) -> ModelVersion:
    """A read-only view of the version ``ref`` names, with its tags and its note here."""
    found = store.lookup(ref)
    manifest = store.resolved_manifest(found)
    table = found.table if found.table is not None else store.refs.read(manifest.name)
    noted = store.refs.read_notes(manifest.name).get(found.digest)
    return ModelVersion.of(found.digest, manifest, table, store.note(noted) if noted is not None else None)


def file_entry(store: Store, ref: str, file: str | None = None) -> FileEntry:
    """The manifest entry of one file of a version (``file`` may be omitted when it has one)."""
    manifest = version_view(store, ref).manifest
    if file is None:
        if len(manifest.files) != 1:
            names = ", ".join(f.path for f in manifest.files)
            raise InvalidInputError(f"{ref} has {len(manifest.files)} files ({names}): name the one you want")
        return manifest.files[0]
    return named_file(manifest, ref, file)


def label(store: Store, digest: str) -> str:
    """``name@version (sha256:abcd1234)`` for a manifest, or the bare digest if it is gone."""
    try:
        manifest = store.manifest(digest)
    except MregError:
        return digest  # removed and collected: lineage outlives objects
    return version_label(manifest.name, manifest.version, digest)


def list_versions(store: Store, name: str, *, local: RefTable | None = None) -> list[VersionEntry]:
    """Every version of a model here and in the fallbacks, highest precedence first
    (``local``: the model's refs here, if the caller has read them)."""
    local = store.refs.read(name) if local is None else local
    tags = tags_by_version(local)
    entries = {v: VersionEntry(name, v, d, tuple(tags.get(v, ()))) for v, d in local.versions.items()}
    if store.fallbacks:
        for source, table in store.fallbacks.tables(name):
            for version, digest in table.versions.items():
                if version not in entries:
                    entries[version] = VersionEntry(name, version, digest, tuple(table.tags_of(version)), source.location)
    if not entries:
        raise store.unknown_model(name)
    if len(entries) == len(local.versions):
        return list(reversed(entries.values()))  # the table is already in precedence order
    return sorted(entries.values(), key=lambda e: parse_version(e.version).precedence, reverse=True)


def tags_by_version(table: RefTable) -> dict[str, list[str]]:
    """Each tagged version's tags, sorted (:meth:`RefTable.tags_of` for every version at once)."""
    found: dict[str, list[str]] = {}
    for tag in sorted(table.tags):
        found.setdefault(table.tags[tag], []).append(tag)
    return found


def list_models(store: Store) -> list[ModelSummary]:
    """Every model with at least one version, here and in the fallbacks, sorted by name.

    The latest versions' manifests come in one batch from the metadata index.
    """
    found: dict[str, tuple[RefTable, str | None]] = {}
    for name in store.refs.names():
        table = store.refs.read(name)
        if table.latest is not None:
            found[name] = (table, None)
    if store.fallbacks:
        for source, names in store.fallbacks.model_names():
            for name in names:
                if name in found:
                    continue
                try:
                    theirs = source.table(name)
                except MregError as exc:
                    store.fallbacks.warnings.append(str(exc))
                    continue
                if theirs is not None and theirs.latest is not None:
                    found[name] = (theirs, source.location)
    rows = store.manifest_rows((table.versions[table.latest] for table, _ in found.values() if table.latest is not None), skip_unreadable=True)
    return [_summary(name, *found[name], rows) for name in sorted(found)]


def parent_labels(store: Store, digests: Iterable[str]) -> dict[Digest, list[str]]:
    """The lineage parents of each of these versions, labelled ``name@version (sha256:…)``
    where the parent is still stored (as :meth:`Registry.label` gives them), read in two
    batches; a version whose manifest is gone has none (the log outlives objects)."""
    rows = store.manifest_rows(digests, skip_unreadable=True)
    parents = store.manifest_rows((p for row in rows.values() for p in row.parents), skip_unreadable=True)

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


def history(store: Store, name: str, limit: int | None = None) -> list[LogEntry]:
    """A model's ref history, newest first; with ``limit``, only that many entries."""
    entries = store.refs.recent_log(name, limit)
    if not entries and not store.refs.read(name).versions:
        raise store.unknown_model(name)
    return entries


def local_path(store: Store, ref: str, file: str | None = None, *, progress: ProgressReport | None = None) -> Path:
    """The local path of a file with a registered file's exact bytes (see :meth:`mreg.Registry.path`)."""
    entry = file_entry(store, ref, file)
    store.ensure_local(entry.digest, size=entry.size, progress=progress)
    if store.objects.is_chunked(entry.digest):
        with store.writing():
            from mreg.storage.cache import mark_used  # start-up: only a chunked file's path needs the cache

            return mark_used(store.objects.materialize(entry.digest))
    return store.objects.object_path(entry.digest)


def find_object(store: Store, text: str) -> Digest:
    """The object a full digest or a unique prefix (8+ hex digits) names, of any type."""
    return find_prefixed(store.objects, text)


def object_type(store: Store, digest: Digest) -> str:
    """``manifest`` or ``blob``."""
    return "manifest" if is_manifest(store.objects, digest) else "blob"
