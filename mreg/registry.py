"""The registry: models, versions, tags and lineage on top of objects and refs.

This is the Python API that the CLI mirrors. It returns values and raises
:class:`~mreg.errors.MregError` subclasses; it never prints and never exits.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from mreg.errors import (
    InvalidInputError,
    InvalidTypeError,
    MregError,
    ObjectNotFoundError,
    RegistryNotFoundError,
    UnknownModelError,
    UnknownRefError,
)
from mreg.operations import tagging
from mreg.operations.inputs import FileSource, version_details
from mreg.operations.listing import (
    list_models,
    list_versions,
    named_file,
    version_label,
)
from mreg.operations.register import refuse_case_twin, register
from mreg.operations.tagging import UNSET, remove, untag
from mreg.records.manifest import Dataset, FileEntry, Framework, Manifest
from mreg.records.names import Digest, parse_ref, validate_name
from mreg.records.refs import LogEntry, RefTable
from mreg.records.versions import Bump
from mreg.records.views import (
    AddResult,
    ModelSummary,
    ModelVersion,
    TagChange,
    VersionEntry,
)
from mreg.storage.blobs import Segment
from mreg.storage.files import write_atomically
from mreg.storage.identity import now_utc
from mreg.storage.locks import FileLock
from mreg.storage.objects import ObjectStore
from mreg.storage.refs import RefStore, RefUpdate
from mreg.storage.threads import ProgressReport, counting
from mreg.store.resolution import (
    find_object,
    is_manifest,
    resolve_at,
    resolve_digest,
    resolve_in_table,
)

if TYPE_CHECKING:
    from mreg.operations.diff import TensorComparer
    from mreg.operations.export import ExportReport
    from mreg.operations.usage import UsageReport
    from mreg.records.diffs import VersionDiff
    from mreg.records.notes import NoteChange
    from mreg.records.reports import FsckReport, GcReport
    from mreg.sharing.fallbacks import Fallbacks
    from mreg.sharing.transfer import TransferReport
    from mreg.storage.config import Config
    from mreg.storage.index import ManifestRow, MetadataIndex

REGISTRY_DIR = ".mreg"
CONFIG_FILE = "config"
STORE_LOCK = "lock"
CREATE_LOCK = "_lock"  # in models/: a name no model segment can take


class Registry:
    """A model registry stored in a ``.mreg`` directory.

    Open one with :meth:`open` (finds the store like git finds ``.git``) or create
    one with :meth:`init`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.objects = ObjectStore(self.root)
        self.refs = RefStore(self.root)
        self._config: Config | None = None
        self._fallbacks: Fallbacks | None = None
        self._index: MetadataIndex | None = None

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ------------------------------------------------------------ opening

    @classmethod
    def init(cls, path: str | os.PathLike = ".") -> Registry:
        """Create an empty registry in ``path/.mreg`` (harmless if it exists)."""
        _require_path(path)
        root = Path(path) / REGISTRY_DIR
        for sub in ("objects", "models", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        config = root / CONFIG_FILE
        if not config.exists():
            write_atomically(config, b"[core]\n\tformatversion = 1\n")
        return cls(root)

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> Registry:
        """Open the registry at ``path`` (a project directory or its ``.mreg``).

        Without ``path``: ``MREG_DIR`` if set, else the nearest ``.mreg`` found
        walking up from the current directory.

        Raises:
            RegistryNotFoundError: there is no registry there.
        """
        if path is None and os.environ.get("MREG_DIR"):
            path = os.environ["MREG_DIR"]
        if path is not None:
            _require_path(path)
            root = _registry_root(Path(path))
            if root is None:
                raise RegistryNotFoundError(f"no mreg registry at '{path}' (run 'mreg init' to create one)")
            return cls(root)
        here = Path.cwd()
        for directory in (here, *here.parents):
            if (directory / REGISTRY_DIR / CONFIG_FILE).is_file():
                return cls(directory / REGISTRY_DIR)
        raise RegistryNotFoundError(
            "not in an mreg registry (no .mreg here or in any parent directory); "
            "run 'mreg init' to create one, or use --registry or MREG_DIR"
        )

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's shared lock while writing objects, so gc never removes them."""
        with FileLock(self.root / STORE_LOCK, shared=True, what="the store (gc is running)"):
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's lock exclusively: no object writer runs meanwhile (gc)."""
        with FileLock(self.root / STORE_LOCK, what="the store (an add or a pull is running)"):
            yield

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
        return register(
            self,
            spec,
            files,
            bump=bump,
            details=version_details(
                family=family,
                framework=framework,
                architecture=architecture,
                input_shape=input_shape,
                metrics=metrics,
                properties=properties,
                datasets=datasets,
                message=message,
            ),
            parents=parents,
            tags=tags,
            author=author,
            progress=progress,
        )

    @contextmanager
    def creating_model(self) -> Iterator[None]:
        """Hold the lock under which new models are checked and created."""
        with FileLock(self.refs.models_dir / CREATE_LOCK, what="the list of models"):
            yield

    @contextmanager
    def updating(self, name: str, *, author: str, message: str) -> Iterator[RefUpdate]:
        """Change a model's refs under its lock (see :meth:`mreg.refs.RefStore.update`).

        A model that has no version yet is also checked and created under the
        creation lock: a case twin is refused, and the change is written before the
        lock is released, so two new models can never race past the check.
        """
        with self.refs.update(name, author=author, message=message, time=now_utc()) as update:
            if update.table.versions:
                yield update
                return
            with self.creating_model():
                refuse_case_twin(self, name)
                from mreg.storage.server_info import list_model

                list_model(self, name)  # listed before it exists: info/models never lags
                yield update
                update.commit()

    def existing_table(self, name: str) -> RefTable:
        """A model's refs; UnknownModelError if it has no version here."""
        table = self.refs.read(name)
        if not table.versions:
            raise UnknownModelError(name)
        return table

    # ---------------------------------------------------------------- lookup

    def resolve(self, ref: str) -> Digest:
        """The manifest digest a reference names (here first, then in the fallbacks).

        Raises:
            UnknownRefError: nothing has that name.
            AmbiguousRefError: a digest prefix matches several manifests.
            InvalidRefError: the reference is malformed.
            RemoteError: it is not here and a fallback failed.
        """
        return self._lookup(ref)[0]

    def _lookup(self, ref: str) -> tuple[Digest, RefTable | None]:
        """The digest ``ref`` names and the ref table it was found in (None for digests)."""
        parsed = parse_ref(ref)
        if parsed.digest_prefix is not None:
            return resolve_digest(self, parsed), None
        if parsed.at is not None:
            return resolve_at(parsed, self.refs.log(parsed.name)[0]), None
        table = self.refs.read(parsed.name)
        try:
            return resolve_in_table(parsed, table), table
        except UnknownRefError:
            found = self.fallbacks.lookup(parsed, resolve_in_table) if self.fallbacks else None
            if found is None:
                raise
            return found

    def get(self, ref: str) -> ModelVersion:
        """A read-only view of the version ``ref`` names, with its tags."""
        from mreg.operations.notes import note_of

        digest, table = self._lookup(ref)
        expect = None
        if table is not None:  # a named reference: the manifest must be that version's
            expect = (parse_ref(ref).name, next(v for v, d in table.versions.items() if d == digest))
        manifest = self.manifest(digest, expect=expect)
        table = table if table is not None else self.refs.read(manifest.name)
        return ModelVersion.of(digest, manifest, table, note_of(self, manifest.name, digest))

    def manifest(self, digest: str, *, expect: tuple[str, str] | None = None) -> Manifest:
        """Read and validate a manifest (fetched from a fallback if it is not here).

        With ``expect`` (name, version) the manifest must be that version's; one
        fetched from a fallback is kept only if it passes every check.
        """
        from mreg.records.manifest import manifest_check

        check = manifest_check(digest, expect)
        if not self.objects.contains(digest) and self.fallbacks:
            with self.writing():
                if not self.objects.contains(digest):
                    return self.fallbacks.fetch_manifest(Digest(digest), self.objects, check)
        self._ensure_local(Digest(digest))
        manifest = Manifest.decode(self.objects.read_bytes(digest), digest)
        check(manifest)
        return manifest

    def manifests(self, digests: Iterable[str]) -> dict[Digest, Manifest]:
        """Many manifests at once, from the metadata index where it has them.

        The batched form of :meth:`manifest`, for queries over thousands of versions
        (see :meth:`manifest_rows`).
        """
        return {digest: row.manifest() for digest, row in self.manifest_rows(digests).items()}

    def manifest_rows(self, digests: Iterable[str], *, skip_unreadable: bool = False) -> dict[Digest, ManifestRow]:
        """Many manifests as the metadata index keeps them: plain rows, cheap to filter on.

        The index (``.mreg/index.sqlite``) answers in one query; manifests it lacks
        are read from their objects, validated and added to it. With
        ``skip_unreadable``, a manifest that cannot be read (missing, damaged: for fsck
        to report) is left out instead of raising.
        """
        from mreg.storage.index import ManifestRow

        wanted = [Digest(d) for d in dict.fromkeys(digests)]
        found = self.index.rows(wanted)
        fresh = []
        for digest in wanted:
            if digest not in found:
                try:
                    self._ensure_local(digest)
                    data = self.objects.read_bytes(digest)
                    found[digest] = ManifestRow.of(Manifest.decode(data, digest), len(data))
                except MregError:
                    if not skip_unreadable:
                        raise
                    continue
                fresh.append((digest, found[digest]))
        self.index.record(fresh)
        return found

    @property
    def index(self) -> MetadataIndex:
        """The metadata index: a cache of manifests for queries (never the source of truth)."""
        if self._index is None:
            from mreg.storage.index import MetadataIndex

            self._index = MetadataIndex(self.root)
        return self._index

    def label(self, digest: str) -> str:
        """``name@version (sha256:abcd1234)`` for a manifest, or the bare digest if it is gone."""
        try:
            manifest = self.manifest(digest)
        except MregError:
            return digest  # removed and collected: lineage outlives objects
        return version_label(manifest.name, manifest.version, digest)

    def versions(self, name: str) -> list[VersionEntry]:
        """Every version of a model, highest precedence first (fallbacks' included)."""
        return list_versions(self, validate_name(name))

    def models(self) -> list[ModelSummary]:
        """Every model with at least one version, sorted by name (fallbacks' included)."""
        return list_models(self)

    def query(self, **conditions: Any) -> list[ModelVersion]:
        """Versions matching every condition, optionally ordered by a metric and limited
        (``sort=``, ``reverse=``, ``limit=``); see :func:`mreg.query.select`."""
        import inspect

        from mreg.operations.query import select

        try:
            inspect.signature(select).bind(self, **conditions)
        except TypeError as exc:
            raise InvalidTypeError(f"query: {exc}") from None
        return select(self, **conditions)

    def log(self, name: str, limit: int | None = None) -> list[LogEntry]:
        """The model's ref history, newest first; with ``limit``, only that many entries."""
        validate_name(name)
        entries = self.refs.recent_log(name, limit)
        if not entries and not self.refs.read(name).versions:
            raise UnknownModelError(name)
        return entries

    def path(self, ref: str, file: str | None = None, *, progress: ProgressReport | None = None) -> Path:
        """The absolute local path of a file with a registered file's exact bytes.

        ``file`` may be omitted when the version has exactly one file. The file is
        read-only and shared: copy it before modifying it. A file only a fallback has
        is fetched and cached here first; a file stored as chunks is assembled (and
        verified) once into ``.mreg/cache/``, which ``gc`` trims to ``cache.maxsize``.
        """
        entry = self.file_entry(ref, file)
        self._ensure_local(entry.digest, size=entry.size, progress=progress)
        if self.objects.is_chunked(entry.digest):
            from mreg.storage.cache import mark_used

            with self.writing():
                return mark_used(self.objects.materialize(entry.digest))
        return self.objects.object_path(entry.digest)

    def export(self, ref: str, directory: str | os.PathLike, *, link: bool = True) -> ExportReport:
        """Write every file of a version into ``directory``, verified (see :mod:`mreg.export`).

        Whole-file objects are hard-linked (read-only) where possible unless ``link`` is
        False; files already there with the same bytes are kept.

        Raises:
            ConflictError: a file exists there with other content (nothing is written).
        """
        from mreg.operations.export import export

        return export(self, ref, directory, link=link)

    def segments(self, entry: FileEntry, *, check: bool = True) -> list[Segment]:
        """The local blobs that hold a registered file's bytes (fetched if needed), in order
        (``check``: see :meth:`ObjectStore.segments`)."""
        self._ensure_local(entry.digest, size=entry.size)
        return self.objects.segments(entry.digest, check=check)

    def file_entry(self, ref: str, file: str | None = None) -> FileEntry:
        """The manifest entry of one file of a version."""
        manifest = self.get(ref).manifest
        if file is None:
            if len(manifest.files) != 1:
                names = ", ".join(f.path for f in manifest.files)
                raise InvalidInputError(f"{ref} has {len(manifest.files)} files ({names}): name the one you want")
            return manifest.files[0]
        return named_file(manifest, ref, file)

    # ------------------------------------------------------- objects, fallbacks

    def find_object(self, text: str) -> Digest:
        """The object a full digest or a unique prefix (8+ hex digits) names, of any type."""
        return find_object(self.objects, text)

    def object_type(self, digest: Digest) -> str:
        """``manifest`` or ``blob``."""
        return "manifest" if is_manifest(self.objects, digest) else "blob"

    def hash_object(self, path: str | os.PathLike, *, write: bool = False) -> Digest:
        """A file's digest; with ``write`` the file is also stored as an object."""
        from mreg.storage.files import regular_file

        regular_file(path)
        if not write:
            return self.objects.hash_file(Path(path))[0]
        with self.writing():
            return self.objects.add_file(Path(path)).digest

    @property
    def config(self) -> Config:
        """The store's config (read once per Registry object)."""
        if self._config is None:
            from mreg.storage.config import Config

            self._config = Config.load(self.root / CONFIG_FILE)
        return self._config

    def set_config(self, key: str, value: str | None, *, add: bool = False) -> None:
        """Change the config as ``mreg config`` does: set a key, ``add`` a repeated value,
        or unset every value (``value`` None)."""
        from mreg.records.names import text_of
        from mreg.storage.config import update

        text_of(key, "a config key")
        if value is not None:
            text_of(value, "a config value")
        self._config = update(self.root / CONFIG_FILE, key, value, add=add)
        self._fallbacks = None

    @property
    def fallbacks(self) -> Fallbacks:
        """The stores to fall back on: ``MREG_FALLBACK``'s, then ``fallback.url``'s, in order."""
        if self._fallbacks is None:
            from mreg.sharing.fallbacks import Fallbacks

            self._fallbacks = Fallbacks.configured(self.config, self.root.parent)
        return self._fallbacks

    @property
    def warnings(self) -> list[str]:
        """Failures of fallback stores that the last operations worked around."""
        return list(self._fallbacks.warnings) if self._fallbacks is not None else []

    def update_server_info(self) -> None:
        """Rewrite ``info/models``, which static HTTP servers of this store need."""
        from mreg.storage.server_info import write_server_info

        with self.creating_model():
            write_server_info(self)

    def fetch(self, digest: Digest, *, size: int | None = None, progress: ProgressReport | None = None) -> None:
        """Fetch an object from the fallbacks into this store (verified, atomically).

        ``size`` is the file's size from its manifest: no more is read, and the
        fetched file must have it; without it the object must be manifest-sized.
        ``progress(done, size)`` is told how the transfer goes, when ``size`` is known.
        """
        with self.writing():
            if not self.objects.contains(digest):
                self.fallbacks.fetch(digest, self.objects, counting(progress, size or 0), size=size)

    def _ensure_local(self, digest: Digest, *, size: int | None = None, progress: ProgressReport | None = None) -> None:
        if not self.objects.contains(digest):
            if not self.fallbacks:
                raise ObjectNotFoundError(digest)
            self.fetch(digest, size=size, progress=progress)

    # ------------------------------------------------------------------ refs

    def tag(self, ref: str, tag: str, *, expected: str | None = UNSET) -> TagChange:
        """Point ``tag`` at the version ``ref`` names, creating or moving it.

        With ``expected`` the move is a compare-and-swap: it happens only if the tag
        currently points at that version (None: only if the tag does not exist).

        Raises:
            RefChangedError: the tag did not point where ``expected`` said.
        """
        return tagging.tag(self, ref, tag, expected=expected)

    def untag(self, name: str, tag: str, *, expected: str | None = UNSET) -> TagChange:
        """Remove a tag from a model (with ``expected``, only if it points there)."""
        return untag(self, name, tag, expected=expected)

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
        """Add to or change the note on the version ``ref`` names (see :mod:`mreg.notes`).

        ``message`` replaces the note's text, ``metrics`` add to its evaluation metrics,
        ``deprecated`` gives a reason to stop using the version (``undeprecate`` withdraws
        it), ``remove`` drops the whole note. With ``expected`` (a note digest, None for
        no note) the change is a compare-and-swap. The note is ``get(ref).note``.

        Raises:
            RefChangedError: the note was not ``expected``.
            NotFoundError: ``remove`` without a note.
        """
        from mreg.operations.notes import NoteEdit, annotate

        return annotate(self, ref, NoteEdit(message, metrics, deprecated, undeprecate, remove), expected=expected)

    def remove(self, spec: str, *, message: str = "") -> Digest:
        """Remove ``NAME@VERSION``: its tags go too and ``latest`` is recomputed.

        Its objects stay until :meth:`gc`. Returns the removed manifest's digest.
        """
        return remove(self, spec, message=message)

    # ------------------------------------------------- comparing and sharing

    def diff(self, old: str, new: str, *, compare_tensors: TensorComparer | None = None) -> VersionDiff:
        """What changed between two versions; ``mreg.pytorch.diff`` adds the tensors."""
        from mreg.operations.diff import diff_versions

        return diff_versions(self, old, new, compare_tensors=compare_tensors)

    def disk_usage(self) -> UsageReport:
        """Registered (logical) bytes against stored bytes, per model and in total."""
        from mreg.operations.usage import disk_usage

        return disk_usage(self)

    def pull(self, source: str, names: Sequence[str] = (), *, force: bool = False) -> TransferReport:
        """Copy models from another registry (a path, an http(s) URL, a bucket URL or a remote name)."""
        from mreg.operations.remotes import pull

        return pull(self, source, names, force=force)

    def push(self, destination: str, names: Sequence[str] = (), *, force: bool = False) -> TransferReport:
        """Copy models into another registry: a path, a bucket URL (s3://, gs://, az://) or a remote name."""
        from mreg.operations.remotes import push

        return push(self, destination, names, force=force)

    # ----------------------------------------------------------- maintenance

    def fsck(self, *, repair: bool = False) -> FsckReport:
        """Verify every object, manifest and ref; ``repair`` rewrites derived state
        (``info/models``). See :func:`mreg.maintenance.fsck`."""
        from mreg.operations.maintenance import fsck

        return fsck(self, repair=repair)

    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Delete unreachable objects and stale temporary files."""
        from mreg.operations.maintenance import gc

        return gc(self, dry_run=dry_run)


# ---------------------------------------------------------------- helpers


def _require_path(path: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"a registry path must be a str or os.PathLike, not {type(path).__name__}")


def _registry_root(path: Path) -> Path | None:
    for candidate in (path, path / REGISTRY_DIR):
        if (candidate / CONFIG_FILE).is_file() and (candidate / "objects").is_dir():
            return candidate
    return None
