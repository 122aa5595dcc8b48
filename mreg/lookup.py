"""Finding things: references in ref tables, digests among objects, and listings.

Listings merge this registry with its fallbacks: a model or version comes from the
first store that has it (this one first), as a reference to it would resolve.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Iterable

from .errors import AmbiguousRefError, MregError, NotFoundError, ObjectNotFoundError, UnknownModelError, UnknownRefError
from .names import LATEST, Digest, Ref, parse_digest_prefix
from .object_store import ObjectStore
from .objects import MAX_MANIFEST_SIZE, FileEntry, Manifest, looks_like_manifest
from .refs import LogEntry, RefTable
from .versions import parse_version
from .views import ModelSummary, VersionEntry

if TYPE_CHECKING:
    from .index import ManifestRow
    from .registry import Registry


def resolve_in_table(ref: Ref, table: RefTable) -> Digest:
    """The digest a named reference has in one model's refs.

    Raises:
        UnknownRefError: the model, version or tag is not there.
    """
    if not table.versions:
        raise UnknownRefError(str(ref), f"no model named '{ref.name}'")
    if ref.is_latest:
        assert table.latest is not None  # a table with versions always has latest
        return table.versions[table.latest]
    if ref.tag is not None:
        version = table.tags.get(ref.tag)
        if version is None:
            raise UnknownRefError(str(ref), f"'{ref.name}' has no tag '{ref.tag}'")
        return table.versions[version]
    digest = table.versions.get(ref.version or "")
    if digest is None:
        raise UnknownRefError(str(ref), f"'{ref.name}' has no version {ref.version} (latest is {table.latest})")
    return digest


def resolve_at(ref: Ref, log: list[LogEntry]) -> Digest:
    """The digest a tag or ``latest`` named at the time ``ref.at``, replaying the
    model's log (oldest first) as git replays a reflog for ``ref@{date}``.

    Raises:
        UnknownRefError: the tag (or the model) did not exist then.
    """
    assert ref.at is not None
    what = LATEST if ref.is_latest else f"tags/{ref.tag}"
    label = "latest version" if ref.is_latest else f"tag '{ref.tag}'"
    version, first = _value_at(log, what, ref.at)
    if version is None:
        since = f" (it was first set at {first})" if first else ""
        raise UnknownRefError(str(ref), f"'{ref.name}' had no {label} at {ref.at}{since}")
    digest, _ = _value_at(log, f"versions/{version}", ref.at)
    if digest is None:
        raise UnknownRefError(str(ref), f"the log of '{ref.name}' does not say what {version} was at {ref.at}")
    return Digest(digest)


def _value_at(log: list[LogEntry], ref: str, at: str) -> tuple[str | None, str | None]:
    """What ``ref`` pointed at, at time ``at`` (None: nothing), and when it was first set."""
    value, first = None, None
    for entry in log:
        if entry.ref != ref:
            continue
        first = first or entry.time
        if entry.time <= at:  # the log's fixed-width UTC times order as text
            value = entry.new
    return value, first


def is_manifest(store: ObjectStore, digest: Digest) -> bool:
    """True when a stored object is a manifest (manifests are small msgpack maps)."""
    try:  # non-blocking, then fstat: a FIFO planted among the objects must not hang the lookup
        fd = os.open(store.object_path(digest), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with open(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        data = stream.read(MAX_MANIFEST_SIZE + 1)
    return len(data) <= MAX_MANIFEST_SIZE and looks_like_manifest(data)


def resolve_digest(registry: Registry, ref: Ref) -> Digest:
    """The manifest a ``sha256:`` reference names: a full digest (here or in a fallback)
    or a unique prefix of one stored here."""
    prefix = ref.digest_prefix or ""
    store = registry.objects
    if len(prefix) == 64:
        digest = Digest("sha256:" + prefix)
        if not store.contains(digest) and registry.fallbacks:
            try:
                registry.fetch(digest)
            except ObjectNotFoundError:
                pass
        if is_manifest(store, digest):
            return digest
        detail = "it is a file, not a manifest" if store.contains(digest) else "no such manifest"
        raise UnknownRefError(str(ref), detail)
    candidates = [d for d in store.find_prefix(prefix) if is_manifest(store, d)]
    if not candidates:
        raise UnknownRefError(str(ref), "no manifest has that digest prefix")
    if len(candidates) > 1:
        raise AmbiguousRefError(f"digest prefix '{ref}' is ambiguous: it matches {len(candidates)} manifests; give more digits")
    return candidates[0]


def find_object(store: ObjectStore, text: str) -> Digest:
    """The object a full digest or a unique prefix (8+ hex digits) names, of any type."""
    candidates = store.find_prefix(parse_digest_prefix(text))
    if not candidates:
        raise ObjectNotFoundError(text)
    if len(candidates) > 1:
        raise AmbiguousRefError(f"digest prefix '{text}' is ambiguous: it matches {len(candidates)} objects")
    return candidates[0]


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
