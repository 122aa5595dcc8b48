"""The registry: the Python API that the CLI mirrors, one call per command.

:class:`Registry` is a thin facade over a :class:`~mreg.store.store.Store`: each
method checks nothing itself and calls one operation of :mod:`mreg.operations`
(or the store) *down*; nothing below imports it. It returns values and raises
:class:`~mreg.errors.MregError` subclasses; it never prints and never exits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from mreg.errors import InvalidTypeError
from mreg.operations import listing, tagging
from mreg.records.manifest import Dataset, FileEntry, Framework, Manifest
from mreg.records.names import Digest, validate_name
from mreg.records.refs import UNSET, LogEntry
from mreg.records.versions import Bump
from mreg.records.views import (
    AddResult,
    ModelSummary,
    ModelVersion,
    TagChange,
    VersionEntry,
)
from mreg.storage.blobs import Segment
from mreg.storage.threads import ProgressReport
from mreg.store.store import Store

if TYPE_CHECKING:
    from mreg.operations.diff import TensorComparer
    from mreg.operations.inputs import FileSource
    from mreg.operations.export import ExportReport
    from mreg.operations.usage import UsageReport
    from mreg.records.diffs import VersionDiff
    from mreg.records.notes import NoteChange
    from mreg.records.reports import FsckReport, GcReport
    from mreg.sharing.transfer import TransferReport
    from mreg.storage.config import Config
    from mreg.storage.objects import ObjectStore
    from mreg.storage.refs import RefStore


class Registry:
    """A model registry stored in a ``.mreg`` directory.

    Open one with :meth:`open` (finds the store like git finds ``.git``) or create
    one with :meth:`init`. ``registry.store`` is the open store the operations share.
    """

    def __init__(self, root: Path | Store) -> None:
        self.store = root if isinstance(root, Store) else Store(root)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ------------------------------------------------------------ opening

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Registry:
        """Create an empty registry in ``path/.mreg`` (harmless if it exists)."""
        return cls(Store.init(path))

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Registry:
        """Open the registry at ``path`` (a project directory or its ``.mreg``).

        Without ``path``: ``MREG_DIR`` if set, else the nearest ``.mreg`` found
        walking up from the current directory.

        Raises:
            RegistryNotFoundError: there is no registry there.
        """
        return cls(Store.open(path))

    @property
    def root(self) -> Path:
        """The ``.mreg`` directory."""
        return self.store.root

    @property
    def objects(self) -> ObjectStore:
        """The object store (plumbing: digests and bytes)."""
        return self.store.objects

    @property
    def refs(self) -> RefStore:
        """Every model's refs and logs (plumbing)."""
        return self.store.refs

    # ----------------------------------------------------------- registering

    def add(
        self,
        spec: str,
        files: Sequence[FileSource],
        *,
        bump: Bump | None = None,
        family: str | None = None,
        framework: str | Framework | None = None,
        architecture: str | None = None,
        input_shape: str | Sequence[int] | None = None,
        metrics: Mapping[str, float] | None = None,
        properties: Mapping[str, Any] | None = None,
        datasets: Iterable[str | Dataset] = (),
        parents: Iterable[str] = (),
        message: str = "",
        tags: Iterable[str] = (),
        author: str | None = None,
        progress: ProgressReport | None = None,
    ) -> AddResult:
        """Register files as a new version of a model.

        Args:
            spec: ``NAME@VERSION``, or ``NAME`` together with ``bump``.
            files: files, directories (added recursively) or :class:`Blob` objects.
            bump: ``"major"``, ``"minor"`` or ``"patch"``: the next version after the
                highest existing one.
            parents: references or digests of the versions this one derives from.
            tags: tags to point at the new version.
            progress: called as ``progress(done, total)`` while bytes are stored.

        Returns:
            The new version's digest; ``created`` is False when an identical version
            already existed (re-adding is a no-op).

        Raises:
            VersionConflictError: the version exists with other files or metadata.
            InvalidInputError: a name, version, tag or metadata value is invalid.
            InputFileError: a file is missing or unreadable.
        """
        from mreg.operations.inputs import version_details  # start-up: only writers read weight files
        from mreg.operations.register import register

        details = version_details(
            family=family,
            framework=framework,
            architecture=architecture,
            input_shape=input_shape,
            metrics=metrics,
            properties=properties,
            datasets=datasets,
            message=message,
        )
        return register(
            self.store, spec, files, bump=bump, details=details, parents=parents, tags=tags, author=author, progress=progress
        )

    # ---------------------------------------------------------------- lookup

    def resolve(self, ref: str) -> Digest:
        """The manifest digest a reference names (here first, then in the fallbacks).

        Raises:
            UnknownRefError: nothing has that name.
            AmbiguousRefError: a digest prefix matches several manifests.
            InvalidRefError: the reference is malformed.
            RemoteError: it is not here and a fallback failed.
        """
        return self.store.resolve(ref)

    def get(self, ref: str) -> ModelVersion:
        """A read-only view of the version ``ref`` names, with its tags and note."""
        return listing.version_view(self.store, ref)

    def manifest(self, digest: str) -> Manifest:
        """Read and validate a manifest by its digest (fetched from a fallback if needed)."""
        return self.store.manifest(digest)

    def manifests(self, digests: Iterable[str]) -> dict[Digest, Manifest]:
        """Many manifests at once, from the metadata index where it has them (queries over
        thousands of versions)."""
        return self.store.manifests(digests)

    def label(self, digest: str) -> str:
        """``name@version (sha256:abcd1234)`` for a manifest, or the bare digest if it is gone."""
        return listing.label(self.store, digest)

    def parent_labels(self, digests: Iterable[str]) -> dict[Digest, list[str]]:
        """The lineage parents of each of these versions, labelled as :meth:`label` does."""
        return listing.parent_labels(self.store, digests)

    def versions(self, name: str) -> list[VersionEntry]:
        """Every version of a model, highest precedence first (fallbacks' included)."""
        return listing.list_versions(self.store, validate_name(name))

    def models(self) -> list[ModelSummary]:
        """Every model with at least one version, sorted by name (fallbacks' included)."""
        return listing.list_models(self.store)

    def query(self, **conditions: Any) -> list[ModelVersion]:
        """Versions matching every condition, optionally ordered by a metric and limited
        (``sort=``, ``reverse=``, ``limit=``); see :func:`mreg.operations.query.select`."""
        import inspect  # start-up: only queries need it

        from mreg.operations.query import (
            select,  # start-up: only queries read many versions
        )

        try:
            inspect.signature(select).bind(self.store, **conditions)
        except TypeError as exc:
            raise InvalidTypeError(f"query: {exc}") from None
        return select(self.store, **conditions)

    def log(self, name: str, limit: int | None = None) -> list[LogEntry]:
        """The model's ref history, newest first; with ``limit``, only that many entries."""
        return listing.history(self.store, validate_name(name), limit)

    def path(self, ref: str, file: str | None = None, *, progress: ProgressReport | None = None) -> Path:
        """The absolute local path of a file with a registered file's exact bytes.

        ``file`` may be omitted when the version has exactly one file. The file is
        read-only and shared: copy it before modifying it. A file only a fallback has
        is fetched and cached here first; a file stored as chunks is assembled (and
        verified) once into ``.mreg/cache/``, which ``gc`` trims to ``cache.maxsize``.
        """
        return listing.local_path(self.store, ref, file, progress=progress)

    def export(self, ref: str, directory: str | os.PathLike[str], *, link: bool = True) -> ExportReport:
        """Write every file of a version into ``directory``, verified (see :mod:`mreg.operations.export`).

        Whole-file objects are hard-linked (read-only) where possible unless ``link`` is
        False; files already there with the same bytes are kept.

        Raises:
            ConflictError: a file exists there with other content (nothing is written).
        """
        from mreg.operations.export import (
            export,  # start-up: only export writes elsewhere
        )

        return export(self.store, ref, directory, link=link)

    def segments(self, entry: FileEntry, *, check: bool = True) -> list[Segment]:
        """The local blobs that hold a registered file's bytes (fetched if needed), in order."""
        return self.store.segments(entry, check=check)

    def file_entry(self, ref: str, file: str | None = None) -> FileEntry:
        """The manifest entry of one file of a version."""
        return listing.file_entry(self.store, ref, file)

    # ------------------------------------------------------- objects, fallbacks

    def find_object(self, text: str) -> Digest:
        """The object a full digest or a unique prefix (8+ hex digits) names, of any type."""
        return listing.find_object(self.store, text)

    def object_type(self, digest: Digest) -> str:
        """``manifest`` or ``blob``."""
        return listing.object_type(self.store, digest)

    def object_size(self, digest: Digest) -> int:
        """The size in bytes of a stored object."""
        return self.store.objects.size(digest)

    def object_bytes(self, digest: Digest) -> Iterator[bytes]:
        """A stored object's bytes, verified as they stream."""
        return self.store.objects.iter_bytes(digest)

    def hash_object(self, path: str | os.PathLike[str], *, write: bool = False) -> Digest:
        """A file's digest; with ``write`` the file is also stored as an object."""
        from mreg.operations.register import (
            hash_object,  # start-up: plumbing that reads files
        )

        return hash_object(self.store, path, write=write)

    @property
    def config(self) -> Config:
        """The registry's config (read once per Registry object)."""
        return self.store.config

    def set_config(self, key: str, value: str | None, *, add: bool = False) -> None:
        """Change the config as ``mreg config`` does: set a key, ``add`` a repeated value,
        or unset every value (``value`` None)."""
        self.store.set_config(key, value, add=add)

    @property
    def warnings(self) -> list[str]:
        """Failures of fallback stores that the last operations worked around."""
        return self.store.warnings

    def update_server_info(self) -> None:
        """Rewrite ``info/models``, which static HTTP servers of this store need."""
        self.store.update_server_info()

    # ------------------------------------------------------------------ refs

    def tag(self, ref: str, tag: str, *, expected: str | None = UNSET) -> TagChange:
        """Point ``tag`` at the version ``ref`` names, creating or moving it.

        With ``expected`` the move is a compare-and-swap: it happens only if the tag
        currently points at that version (None: only if the tag does not exist).

        Raises:
            RefChangedError: the tag did not point where ``expected`` said.
        """
        return tagging.tag(self.store, ref, tag, expected=expected)

    def untag(self, name: str, tag: str, *, expected: str | None = UNSET) -> TagChange:
        """Remove a tag from a model (with ``expected``, only if it points there)."""
        return tagging.untag(self.store, name, tag, expected=expected)

    def note(
        self,
        ref: str,
        *,
        message: str | None = None,
        metrics: Mapping[str, float] | None = None,
        deprecated: str | None = None,
        undeprecate: bool = False,
        remove: bool = False,
        expected: Digest | None = UNSET,
    ) -> NoteChange:
        """Add to or change the note on the version ``ref`` names (see :mod:`mreg.operations.notes`).

        ``message`` replaces the note's text, ``metrics`` add to its evaluation metrics,
        ``deprecated`` gives a reason to stop using the version (``undeprecate`` withdraws
        it), ``remove`` drops the whole note. With ``expected`` (a note digest, None for
        no note) the change is a compare-and-swap. The note is ``get(ref).note``.

        Raises:
            RefChangedError: the note was not ``expected``.
            NotFoundError: ``remove`` without a note.
        """
        from mreg.operations.notes import (  # start-up: only `mreg note` writes notes
            NoteEdit,
            annotate,
        )

        return annotate(self.store, ref, NoteEdit(message, metrics, deprecated, undeprecate, remove), expected=expected)

    def remove(self, spec: str, *, message: str = "") -> Digest:
        """Remove ``NAME@VERSION``: its tags go too and ``latest`` is recomputed.

        Its objects stay until :meth:`gc`. Returns the removed manifest's digest.
        """
        return tagging.remove(self.store, spec, message=message)

    # ------------------------------------------------- comparing and sharing

    def diff(self, old: str, new: str, *, compare_tensors: TensorComparer | bool | None = None) -> VersionDiff:
        """What changed between two versions.

        ``compare_tensors`` compares weight files tensor by tensor: True by their bytes
        (no torch), or a comparer (``mreg.pytorch.diff`` passes torch's); None or False
        compares files by digest only.
        """
        from mreg.operations.diff import (
            diff_versions,  # start-up: only `mreg diff` compares
        )

        return diff_versions(self.store, old, new, compare_tensors=compare_tensors)

    def disk_usage(self) -> UsageReport:
        """Registered (logical) bytes against stored bytes, per model and in total."""
        from mreg.operations.usage import (
            disk_usage,  # start-up: only `mreg du` measures
        )

        return disk_usage(self.store)

    def pull(
        self, source: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
    ) -> TransferReport:
        """Copy models from another registry (a path, an http(s) URL, a bucket URL or a remote name)."""
        from mreg.operations.remotes import (
            pull,  # start-up: only transfers load the sources
        )

        return pull(self.store, source, names, force=force, progress=progress)

    def push(
        self, destination: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
    ) -> TransferReport:
        """Copy models into another registry: a path, a bucket URL (s3://, gs://, az://) or a remote name."""
        from mreg.operations.remotes import (
            push,  # start-up: only transfers load the sources
        )

        return push(self.store, destination, names, force=force, progress=progress)

    @classmethod
    def clone(cls, source: str, directory: str | os.PathLike[str] = ".", *, progress: ProgressReport | None = None) -> tuple[Registry, TransferReport]:
        """Create a registry in ``directory`` with every model of ``source``, as remote ``origin``."""
        from mreg.operations.remotes import (
            clone,  # start-up: only transfers load the sources
        )

        store, report = clone(source, str(directory), progress=progress)
        return cls(store), report

    # ----------------------------------------------------------- maintenance

    def fsck(self, *, repair: bool = False, bucket: str | None = None) -> FsckReport:
        """Verify every object, manifest and ref; ``repair`` rewrites derived state
        (``info/models``). With ``bucket`` (a URL or a remote's name), check that
        registry instead, changing nothing. See :mod:`mreg.operations.maintenance`."""
        if bucket is not None:
            return fsck_bucket(bucket, registry=self)
        from mreg.operations.maintenance import (
            fsck,  # start-up: only fsck reads every object
        )

        return fsck(self.store, repair=repair)

    def gc(self, *, dry_run: bool = False, bucket: str | None = None, grace: timedelta | None = None) -> GcReport:
        """Delete unreachable objects and stale temporary files. With ``bucket`` (a URL or a
        remote's name), sweep that registry instead, sparing objects younger than ``grace``."""
        if bucket is not None:
            return gc_bucket(bucket, registry=self, grace=grace, dry_run=dry_run)
        from mreg.operations.maintenance import (
            gc,  # start-up: only gc reads every object
        )

        return gc(self.store, dry_run=dry_run)


def fsck_bucket(location: str, *, registry: Registry | None = None) -> FsckReport:
    """Check a registry in a bucket (a URL, or a remote's name in ``registry``), changing nothing."""
    from mreg.operations.remotes import (
        check_bucket,  # start-up: only bucket commands load obstore
    )

    return check_bucket(registry.store if registry is not None else None, location)


def gc_bucket(location: str, *, registry: Registry | None = None, grace: timedelta | None = None, dry_run: bool = False) -> GcReport:
    """Sweep a registry in a bucket (a URL, or a remote's name in ``registry``): objects no
    ref leads to that are older than ``grace`` (default 24 hours) go."""
    from mreg.operations.remotes import (
        collect_bucket,  # start-up: only bucket commands load obstore
    )

    return collect_bucket(registry.store if registry is not None else None, location, grace=grace, dry_run=dry_run)
