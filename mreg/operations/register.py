"""Registering a version: its inputs (files, metadata, who and when) and the commit.

Every input is validated, and every conflict that can be seen early is checked,
before a byte is stored; the same checks run again under the locks, where they
decide. A bad option never leaves a half-registered version behind.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import (
    TYPE_CHECKING,
)

from mreg.errors import (
    ConflictError,
    InputFileError,
    InvalidInputError,
    InvalidTypeError,
    VersionConflictError,
)
from mreg.formats.containers import is_weights_name
from mreg.formats.cuts import file_cuts, stream_cuts
from mreg.formats.weights import Weights, describe_paths, describe_weights, summarize
from mreg.operations.attestations import RegistrationSigner, refuse_protected, registration_signer
from mreg.operations.bundles import bundle_details
from mreg.operations.inputs import (
    Blob,
    FileSource,
    FileToStore,
    VersionDetails,
    collect_files,
)
from mreg.operations.tombstones import check_bump_base, restored
from mreg.records.limits import MAX_MANIFEST_SIZE
from mreg.records.manifest import FileEntry, Lineage, Manifest
from mreg.records.names import (
    Digest,
    names_of,
    parse_name_version,
    refuse_case_twin,
    text_of,
    validate_tag,
)
from mreg.records.versions import Bump
from mreg.records.versions import bump as next_version
from mreg.records.views import AddResult
from mreg.storage.blobs import SegmentReader
from mreg.storage.files import regular_file
from mreg.storage.identity import current_author, now_utc
from mreg.storage.threads import ProgressReport, counting
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.refs import RefTable
    from mreg.store.store import Store


def register(
    store: Store,
    spec: str,
    files: Sequence[FileSource],
    *,
    bump: Bump | None,
    details: VersionDetails,
    parents: Iterable[str],
    tags: Iterable[str],
    author: str | None,
    progress: ProgressReport | None,
    inherit: bool = True,
    sign: bool = False,
    key: str | None = None,
) -> AddResult:
    """Register files as a new version; see :meth:`mreg.Registry.add`."""
    name, version = parse_name_version(spec)
    version, details = bundle_details(files, version=version, bump=bump, details=details)  # a MONAI bundle fills in the rest
    if (version is None) == (bump is None):
        raise InvalidInputError(f"give either NAME@VERSION or {{bump}}, not {'both' if version else 'neither'}", options=("bump",))
    if bump is not None and bump not in ("major", "minor", "patch"):
        raise InvalidInputError(f"bump must be 'major', 'minor' or 'patch', not {printable(bump)}")
    tag_names = [validate_tag(t) for t in names_of(tags, "tags")]
    to_store = collect_files(names_of(files, "files"))
    parents = names_of(parents, "parents")
    if progress is not None and not callable(progress):
        raise InvalidTypeError(f"progress must be a callable, not {type(progress).__name__}")
    if author is not None:
        text_of(author, "author")
    # Weight files are read (headers, pickles) before a byte is stored, so an unsafe
    # checkpoint is refused early; what is recorded is read again from the stored bytes.
    checked = describe_paths([(item.path, item.source) for item in to_store if isinstance(item.source, Path)])  # and where to cut
    draft = Manifest(
        name=name,
        version=version or "0.0.0",
        files=(),
        family=details.family,
        framework=details.framework,
        architecture=details.architecture,
        input_shape=details.input_shape,
        metrics=details.metrics,
        properties=details.properties,
        lineage=Lineage(
            datasets=details.datasets,
            parents=tuple(store.resolve(p) for p in parents),
            author=author or current_author(),
            message=details.message,
        ),
    )
    refuse_oversized(draft)
    signer = registration_signer(store, key) if sign else None  # a bad key stops the add before a byte is stored
    refuse_protected(store, tag_names)
    known = store.refs.read(name)
    refuse_twins(store, name, version, known)
    inherit = bool(inherit) and bump is not None and not parents  # explicit parents say what it derives from
    if inherit and known.highest is not None:
        store.manifest(known.versions[known.highest])  # unreadable: refused before a byte is stored
    if version is not None and (version in known.versions or version in known.removed):
        # Re-adding an existing version: hash the files without writing anything.
        entries = tuple(hash_file(store, item) for item in to_store)
        described = with_weights(draft, details, describe_stored(store, entries) or checked)
        result = commit(store, replace(described, files=entries), tag_names, bump=None, stored=False, signer=signer)
        if result is not None:
            return result
        # The version was removed meanwhile: store the files and register it anew.
    total = sum(item.source.stat().st_size for item in to_store if isinstance(item.source, Path))
    advance = counting(progress, total)
    with store.writing():
        entries = tuple(store_file(store, item, advance, checked.cuts) for item in to_store)
        described = with_weights(draft, details, describe_stored(store, entries) or Weights({}, None, {}))
        result = commit(store, replace(described, files=entries), tag_names, bump=bump, stored=True, inherit=inherit, signer=signer)
    assert result is not None  # with stored files, commit always registers or raises
    return result


def with_weights(draft: Manifest, details: VersionDetails, described: Weights) -> Manifest:
    """The draft with the weight files' tensor metadata; what the caller gave takes precedence."""
    if not described.properties:
        return draft
    return replace(draft, framework=details.framework or described.framework, properties={**described.properties, **details.properties})


def describe_stored(store: Store, entries: Sequence[FileEntry]) -> Weights | None:
    """Tensor metadata read from the stored bytes of the weight files (None: one is not stored)."""
    weights = [entry for entry in entries if is_weights_name(entry.path)]
    if not all(store.objects.contains(entry.digest) for entry in weights):
        return None
    streams = [(entry.path, io.BufferedReader(SegmentReader(store.objects.segments(entry.digest))), entry.size) for entry in weights]
    try:
        return describe_weights(streams)
    finally:
        for _, stream, _ in streams:
            stream.close()


def commit(
    store: Store,
    draft: Manifest,
    tags: list[str],
    *,
    bump: Bump | None,
    stored: bool,
    inherit: bool = False,
    signer: RegistrationSigner | None = None,
) -> AddResult | None:
    """Under the model's lock: pick the version, write the manifest, update the refs
    (a removed version only comes back with its old manifest: :mod:`.tombstones`).

    With ``bump`` and ``inherit``, the new version starts from the description of the
    version it follows (see :func:`inherited`). Returns None, having written nothing,
    when the files were only hashed (``stored`` False) and the version no longer exists.
    """
    name = draft.name
    lineage = draft.lineage
    with store.updating(name, author=lineage.author, message=lineage.message) as update:
        table = update.table
        version = next_version(check_bump_base(table), bump) if bump else draft.version
        manifest = replace(draft, version=version, lineage=replace(lineage, created=now_utc()))
        if inherit and table.highest is not None:
            manifest = inherited(manifest, store.manifest(table.versions[table.highest]), table.versions[table.highest])
        existing = table.versions.get(version) or restored(store, table, manifest, stored=stored)
        if existing is not None and version not in table.versions:
            table = table.with_version(version, existing)  # a restore: the version names its old manifest again
        if existing is None and not stored:
            return None
        if existing is not None:
            check_same(store, existing, manifest)
        else:
            refuse_precedence_twin(name, version, table)
            refuse_oversized(manifest)
            existing = store.objects.add_bytes(manifest.encode()).digest
            table = table.with_version(version, existing)
        for tag in tags:
            table = table.with_tag(tag, version)
        if signer is not None:
            table = table.with_signatures([(existing, signer(name, version, existing))])
        created = version not in update.table.versions
        update.table = table
    return AddResult(name, version, existing, created)


def inherited(manifest: Manifest, predecessor: Manifest, digest: Digest) -> Manifest:
    """A bumped version's manifest, starting from the description of the version it follows.

    What the new version says itself wins (given by the caller, or read from its own
    weight files); what it leaves out is taken from ``predecessor``: family, framework,
    architecture, input shape and properties, except the tensor summary of the
    predecessor's files. Metrics, datasets and the message describe one training run
    and are never inherited. The predecessor (``digest``) becomes the parent.
    """
    summary = summarize(())  # the keys that describe the predecessor's own weight files
    properties = {key: value for key, value in predecessor.properties.items() if key not in summary}
    return replace(
        manifest,
        family=manifest.family if manifest.family is not None else predecessor.family,
        framework=manifest.framework or predecessor.framework,
        architecture=manifest.architecture if manifest.architecture is not None else predecessor.architecture,
        input_shape=manifest.input_shape if manifest.input_shape is not None else predecessor.input_shape,
        properties={**properties, **manifest.properties},
        lineage=replace(manifest.lineage, parents=(digest,)),
    )


def refuse_oversized(manifest: Manifest) -> None:
    """Refuse a manifest larger than readers accept (``MAX_MANIFEST_SIZE``): one limit, checked on write."""
    size = len(manifest.encode())
    if size > MAX_MANIFEST_SIZE:
        raise InvalidInputError(
            f"the metadata of {manifest.name} takes {size} bytes, more than the {MAX_MANIFEST_SIZE} a manifest may have"
        )


def refuse_twins(store: Store, name: str, version: str | None, table: RefTable) -> None:
    """Refuse a version that only build metadata sets apart, and a case twin of a model."""
    if not table.versions:
        refuse_case_twin(store.refs.names(), name)
    if version is not None:
        refuse_precedence_twin(name, version, table)


def refuse_precedence_twin(name: str, version: str, table: RefTable) -> None:
    """Refuse a new version with the precedence of an existing one (only build metadata differs)."""
    if version in table.versions:
        return
    twin = table.same_precedence(version)
    if twin is not None:
        raise ConflictError(
            f"{name}@{version} would have the same precedence as the existing {name}@{twin}: "
            "versions that differ only in build metadata cannot both exist"
        )


def check_same(store: Store, existing: Digest, manifest: Manifest) -> None:
    """Re-adding a version: the files and user metadata must be those registered."""
    current = store.manifest(existing)
    if current.same_content(manifest):
        return
    what = "different files" if current.files != manifest.files else "different metadata"
    raise VersionConflictError(manifest.name, manifest.version, existing, what)


def store_file(store: Store, item: FileToStore, progress: Callable[[int], None] | None, cuts: Mapping[str, list[int]]) -> FileEntry:
    """Store one file's bytes (hashing while copying), cut where its tensors lie, and describe it.

    ``cuts`` holds the cut points of the weight files already read; another file is
    cut if its bytes are a weight file all the same (a safetensors stream, a zip checkpoint).
    """
    if isinstance(item.source, Blob):
        found, blocks = stream_cuts(item.source.blocks())
        stored = store.objects.add_stream(blocks, cuts=found, progress=progress)
    else:
        where = cuts.get(item.path)
        stored = store.objects.add_file(item.source, cuts=readable_cuts(item.source) if where is None else where, progress=progress)
    return FileEntry(item.path, stored.digest, stored.size)


def readable_cuts(path: Path) -> list[int]:
    """:func:`~mreg.formats.cuts.file_cuts` of a file given by a user.

    Raises:
        InputFileError: the file is missing or unreadable.
    """
    try:
        return file_cuts(path, path.stat().st_size)
    except OSError as exc:
        raise InputFileError(f"cannot read '{path}': {exc.strerror or exc}") from None


def hash_file(store: Store, item: FileToStore) -> FileEntry:
    """Describe one file without storing it."""
    if isinstance(item.source, Blob):
        digest, size = store.objects.hash_stream(item.source.blocks())
    else:
        digest, size = store.objects.hash_file(item.source)
    return FileEntry(item.path, digest, size)


def hash_object(store: Store, path: str | os.PathLike[str], *, write: bool = False) -> Digest:
    """A file's digest (``mreg hash-object``); with ``write`` the file is also stored, cut
    where its tensors lie if it is a weight file."""
    source = regular_file(path)
    if not write:
        return store.objects.hash_file(source)[0]
    with store.writing():
        return store.objects.add_file(source, cuts=readable_cuts(source)).digest
