"""The open registry: its parts, the locks they share, and reads that may fall back elsewhere.

A :class:`Store` is what every operation (:mod:`mreg.operations`) works on, as a
dulwich ``Repo`` is built from an object store and a ref container: the object
store, the refs, the metadata index, the config, the fallback stores, and the few
things that need several of them at once (locks, resolving a reference, reading
a manifest that only a fallback has). It never calls an operation, and nothing
below it knows it exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import (
    InvalidTypeError,
    MregError,
    ObjectNotFoundError,
    RegistryNotFoundError,
    UnknownModelError,
    UnknownRefError,
)
from mreg.records.manifest import FileEntry, Manifest, manifest_check
from mreg.records.names import Digest, format_ref, parse_ref, refuse_case_twin, text_of
from mreg.records.notes import Note
from mreg.storage.files import write_atomically
from mreg.storage.identity import now_utc
from mreg.storage.locks import FileLock
from mreg.storage.objects import ObjectStore
from mreg.storage.refs import RefStore, RefUpdate
from mreg.storage.server_info import list_model, write_server_info
from mreg.storage.threads import ProgressReport, counting
from mreg.store.resolution import refuse_reuse, resolve_at, resolve_digest, resolve_in_table
from mreg.store.trust import refuse_foreign

if TYPE_CHECKING:
    from mreg.records.refs import RefTable
    from mreg.sharing.fallbacks import Fallbacks
    from mreg.storage.blobs import Segment
    from mreg.storage.config import Config
    from mreg.storage.index import ManifestRow, MetadataIndex

REGISTRY_DIR = ".mreg"
CONFIG_FILE = "config"
STORE_LOCK = "lock"
CREATE_LOCK = "_lock"  # in models/: a name no model segment can take


class Resolved(NamedTuple):
    """What a reference named: the manifest's digest, and as much as the lookup learnt
    on the way (a digest reference names no model or version until its manifest is read)."""

    digest: Digest
    name: str | None = None
    version: str | None = None
    table: RefTable | None = None  # the model's refs where it was found (None: a digest or the log)
    source: str | None = None  # the fallback it was found in; None: this store


class Store:
    """A registry stored in a ``.mreg`` directory: objects, refs, index, config, fallbacks."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.objects = ObjectStore(self.root)
        self.refs = RefStore(self.root)
        self._config: Config | None = None
        self._fallbacks: Fallbacks | None = None
        self._index: MetadataIndex | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # ------------------------------------------------------------ opening

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Store:
        """Create an empty store in ``path/.mreg`` (harmless if it exists)."""
        _require_path(path)
        root = Path(path) / REGISTRY_DIR
        for sub in ("objects", "models", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        config = root / CONFIG_FILE
        if not config.exists():
            write_atomically(config, b"[core]\n\tformatversion = 1\n")
        return cls(root)

    @classmethod
    def locate(cls, path: str | os.PathLike[str] | None = None) -> Path:
        """The ``.mreg`` directory of the store at ``path``; without ``path``, ``MREG_DIR``'s,
        else the nearest found walking up from the current directory, which must be the
        user's own (:mod:`mreg.store.trust`; a store named by ``path`` or ``MREG_DIR`` is
        trusted by being named).

        Raises:
            RegistryNotFoundError: there is no store there.
            UntrustedRegistryError: the nearest store is another user's, and not trusted.
        """
        if path is None and os.environ.get("MREG_DIR"):
            path = os.environ["MREG_DIR"]
        if path is not None:
            _require_path(path)
            root = _registry_root(Path(path))
            if root is None:
                raise RegistryNotFoundError(f"no mreg registry at '{path}' (run 'mreg init' to create one)")
            return root
        here = Path.cwd()
        for directory in (here, *here.parents):
            if (directory / REGISTRY_DIR / CONFIG_FILE).is_file():
                refuse_foreign(directory / REGISTRY_DIR, found_from=here)  # another user's: refused (git's safe.directory)
                return directory / REGISTRY_DIR
        raise RegistryNotFoundError(
            "not in an mreg registry (no .mreg here or in any parent directory); "
            "run 'mreg init' to create one, or name one with {path} or MREG_DIR",
            options=("path",),
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Store:
        """Open the store at ``path`` (see :meth:`locate`)."""
        return cls(cls.locate(path))

    # -------------------------------------------------------------- locks

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

    @contextmanager
    def creating_model(self) -> Iterator[None]:
        """Hold the lock under which new models are checked and created."""
        with FileLock(self.refs.models_dir / CREATE_LOCK, what="the list of models"):
            yield

    @contextmanager
    def updating(self, name: str, *, author: str, message: str) -> Iterator[RefUpdate]:
        """Change a model's refs under its lock (see :meth:`mreg.storage.refs.RefStore.update`).

        A model that has no version yet is also checked and created under the
        creation lock: a case twin is refused, and the change is written before the
        lock is released, so two new models can never race past the check.
        """
        with self.refs.update(name, author=author, message=message, time=now_utc()) as update:
            if update.table.versions:
                yield update
                return
            with self.creating_model():
                refuse_case_twin(self.refs.names(), name)
                list_model(self.refs, name)  # listed before it exists: info/models never lags
                yield update
                update.commit()

    def update_server_info(self) -> None:
        """Rewrite ``info/models``, which static HTTP servers of this store need."""
        with self.creating_model():
            write_server_info(self.refs)

    def existing_table(self, name: str) -> RefTable:
        """A model's refs; UnknownModelError if it has no version here."""
        table = self.refs.read(name)
        if not table.versions:
            raise self.unknown_model(name)
        return table

    def similar_models(self, name: str) -> tuple[str, ...]:
        """Models here whose names are close to ``name`` (a mistyped name's suggestions)."""
        from mreg.records.suggestions import similar  # start-up: only a name not found needs it

        return similar(name, self.refs.names())

    def unknown_model(self, name: str) -> UnknownModelError:
        """The error for a model that has no version, naming the models the user may have meant."""
        return UnknownModelError(name, self.similar_models(name))

    # ------------------------------------------------------------- config

    @property
    def config(self) -> Config:
        """The store's config (read once per Store object)."""
        if self._config is None:
            from mreg.storage.config import (
                Config,  # only commands that read settings pay for the parser
            )

            self._config = Config.load(self.root / CONFIG_FILE)
        return self._config

    def set_config(self, key: str, value: str | None, *, add: bool = False) -> Config:
        """Change the config as ``mreg config`` does: set a key, ``add`` a repeated value,
        or unset every value (``value`` None); a bucket URL must parse."""
        from mreg.sharing.buckets.url import (  # only `mreg config` writes settings
            is_bucket_url,
            parse_bucket_url,
        )
        from mreg.storage.config import (  # start-up: only `mreg config` writes settings
            parse_key,
            update,
        )

        text_of(key, "a config key")
        if value is not None:
            text_of(value, "a config value")
            if parse_key(key)[2] == "url" and is_bucket_url(value):
                parse_bucket_url(value)
        self._config = update(self.root / CONFIG_FILE, key, value, add=add)
        self._fallbacks = None
        return self._config

    @property
    def fallbacks(self) -> Fallbacks:
        """The stores to fall back on: ``MREG_FALLBACK``'s, then ``fallback.url``'s, in order."""
        if self._fallbacks is None:
            from mreg.sharing.fallbacks import (
                Fallbacks,  # a store without fallbacks never needs the sources
            )

            self._fallbacks = Fallbacks.configured(self.config, self.root.parent)
        return self._fallbacks

    @property
    def warnings(self) -> list[str]:
        """Failures of fallback stores that the last operations worked around."""
        return list(self._fallbacks.warnings) if self._fallbacks is not None else []

    # --------------------------------------------------------- resolution

    def lookup(self, ref: str) -> Resolved:
        """What a reference names, here first, then in the fallbacks.

        Raises:
            UnknownRefError: nothing has that name.
            AmbiguousRefError: a digest prefix matches several manifests.
            InvalidRefError: the reference is malformed.
            RemoteError: it is not here and a fallback failed.
        """
        parsed = parse_ref(ref)
        if parsed.digest_prefix is not None:
            return Resolved(resolve_digest(self.objects, parsed, self._fetch_if_configured))
        if parsed.at is not None:
            version, digest = resolve_at(parsed, self.refs.log(parsed.name)[0])
            return Resolved(digest, parsed.name, version)
        table = local = self.refs.read(parsed.name)
        try:
            version, digest = resolve_in_table(parsed, table)
            return Resolved(digest, parsed.name, version, table)
        except UnknownRefError as exc:
            found = self.fallbacks.lookup(parsed, resolve_in_table) if self.fallbacks else None
            if found is None:
                if table.versions:
                    raise
                meant = [format_ref(parsed._replace(name=name)) for name in self.similar_models(parsed.name)]
                raise UnknownRefError(exc.ref, exc.detail, meant) from None
            (version, digest), table, location = found
            refuse_reuse(local, parsed.name, version, digest, location)  # a version removed here never names other bytes
            return Resolved(digest, parsed.name, version, table, location)

    def resolve(self, ref: str) -> Digest:
        """The manifest digest a reference names (see :meth:`lookup`)."""
        return self.lookup(ref).digest

    def _fetch_if_configured(self, digest: Digest) -> None:
        if not self.objects.contains(digest) and self.fallbacks:
            try:
                self.fetch(digest)
            except ObjectNotFoundError:
                pass

    # ---------------------------------------------------------- manifests

    def manifest(self, digest: str, *, expect: tuple[str, str] | None = None) -> Manifest:
        """Read and validate a manifest (fetched from a fallback if it is not here).

        With ``expect`` (name, version) the manifest must be that version's; one
        fetched from a fallback is kept only if it passes every check.
        """
        check = manifest_check(digest, expect)
        if not self.objects.contains(digest) and self.fallbacks:

            def fetched(manifest: Manifest) -> None:
                from mreg.store.sizes import refuse_wrong_sizes  # start-up: only a manifest from a fallback

                check(manifest)
                refuse_wrong_sizes(self.objects, manifest, "")  # the fallback names itself

            with self.writing():
                if not self.objects.contains(digest):
                    return self.fallbacks.fetch_manifest(Digest(digest), self.objects, fetched)
        self.ensure_local(Digest(digest))
        manifest = Manifest.decode(self.objects.read_bytes(digest), digest)
        check(manifest)
        return manifest

    def resolved_manifest(self, found: Resolved) -> Manifest:
        """The manifest of what :meth:`lookup` found, checked against the version the refs named."""
        expect = (found.name, found.version) if found.name is not None and found.version is not None else None
        return self.manifest(found.digest, expect=expect)

    def manifests(self, digests: Iterable[str]) -> dict[Digest, Manifest]:
        """Many manifests at once, from the metadata index where it has them."""
        return {digest: row.manifest() for digest, row in self.manifest_rows(digests).items()}

    def manifest_rows(self, digests: Iterable[str], *, skip_unreadable: bool = False) -> dict[Digest, ManifestRow]:
        """Many manifests as the metadata index keeps them: plain rows, cheap to filter on.

        The index (``.mreg/index.sqlite``) answers in one query; manifests it lacks
        are read from their objects, validated and added to it. With
        ``skip_unreadable``, a manifest that cannot be read (missing, damaged: for fsck
        to report) is left out instead of raising.
        """
        from mreg.storage.index import (
            ManifestRow,  # sqlite3: only commands that read many versions
        )

        wanted = [Digest(d) for d in dict.fromkeys(digests)]
        found = self.index.rows(wanted)
        fresh = []
        for digest in wanted:
            if digest not in found:
                try:
                    self.ensure_local(digest)
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
            from mreg.storage.index import (
                MetadataIndex,  # sqlite3: only commands that read many versions
            )

            self._index = MetadataIndex(self.root)
        return self._index

    def note(self, digest: Digest) -> Note:
        """A note object (fetched from a fallback if needed), validated."""
        self.ensure_local(digest)
        return Note.decode(self.objects.read_bytes(digest), digest)

    # ------------------------------------------------- objects from elsewhere

    def fetch(self, digest: Digest, *, size: int | None = None, progress: ProgressReport | None = None) -> None:
        """Fetch an object from the fallbacks into this store (verified, atomically).

        ``size`` is the file's size from its manifest: no more is read, and the
        fetched file must have it; without it the object must be manifest-sized.
        ``progress(done, size)`` is told how the transfer goes, when ``size`` is known.
        """
        with self.writing():
            if not self.objects.contains(digest):
                self.fallbacks.fetch(digest, self.objects, counting(progress, size or 0), size=size)

    def ensure_local(self, digest: Digest, *, size: int | None = None, progress: ProgressReport | None = None) -> None:
        """Make sure an object is stored here, fetching it from a fallback if needed.

        Raises:
            ObjectNotFoundError: it is neither here nor in a fallback.
        """
        if not self.objects.contains(digest):
            if not self.fallbacks:
                raise ObjectNotFoundError(digest)
            self.fetch(digest, size=size, progress=progress)

    def segments(self, entry: FileEntry, *, check: bool = True) -> list[Segment]:
        """The local blobs that hold a registered file's bytes (fetched if needed), in order
        (``check``: see :meth:`ObjectStore.segments`)."""
        self.ensure_local(entry.digest, size=entry.size)
        return self.objects.segments(entry.digest, check=check)


def _require_path(path: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"a registry path must be a str or os.PathLike, not {type(path).__name__}")


def _registry_root(path: Path) -> Path | None:
    for candidate in (path, path / REGISTRY_DIR):
        if (candidate / CONFIG_FILE).is_file() and (candidate / "objects").is_dir():
            return candidate
    return None

