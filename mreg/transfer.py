"""push, pull and clone: copy models between registries.

A transfer copies the objects reachable from the chosen models' refs that the
destination lacks (and only those), verified, then the refs, with their logs. A
version both sides have under different digests is a conflict, and so is a tag
that points elsewhere (unless forced): conflicts are found for every model before
anything is copied, and checked again when each model's refs change, so nothing is
ever overwritten. Objects land before refs, so a transfer killed at any instant
leaves both stores valid, and running it again finishes the job.

The steps are the same for every kind of destination (:class:`Destination`): a
registry on a file system changes its refs under the model's lock, a bucket by
compare-and-swap (:mod:`mreg.buckets.destination`). Several objects are copied at
once, by a bounded pool of threads.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, Sequence

from . import config as config_file
from .buckets.url import is_bucket_url
from .errors import ConflictError, NotFoundError, RemoteError
from .fetching import WORKERS, Counter, fetch_all, thread_safe
from .fileutil import ProgressReport, counting
from .names import Digest, validate_name
from .note_sync import NoteHome, NoteSync, RegistryNotes
from .refs import LogEntry, RefTable
from .registration import current_author, now_utc
from .registry import Registry
from .remote import DirectorySource, RemoteModel, Source, open_source
from .validation import names_of, refuse_symlinks, text_of



@dataclass
class TransferReport:
    """What a transfer copied."""

    source: str
    destination: str
    objects: int = 0
    bytes: int = 0
    versions: list[str] = field(default_factory=list)  # name@version, new at the destination
    tags: list[str] = field(default_factory=list)  # name@tag -> version, new or moved
    notes: list[str] = field(default_factory=list)  # name@version whose note came over

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Destination(Protocol):
    """Where a transfer writes: a registry on a file system, or one in a bucket."""

    location: str

    def tables(self, names: list[str]) -> dict[str, RefTable]:
        """Models' refs there (empty for each it has not)."""

    def copy_objects(self, source: Source, tables: dict[str, RefTable], progress: ProgressReport | None) -> tuple[int, int]:
        """Copy every object the versions in ``tables`` need and lack there; return (objects, bytes)."""

    def update_refs(
        self, name: str, merge: Callable[[RefTable], RefTable], imported: Callable[[], list[LogEntry]], entry: LogEntry
    ) -> tuple[RefTable, RefTable]:
        """Replace a model's refs ``ours`` by ``merge(ours)`` atomically; when they change,
        log the change (time, author, message from ``entry``) and merge in the source's
        log, ``imported()`` (read only then: an unchanged model costs no log read);
        return (old, new)."""

    def note_home(self) -> NoteHome:
        """Where the notes of the transferred versions go."""

    def finish(self, names: list[str]) -> None:
        """Publish the list of models (``info/models``) after the refs changed."""

    def writing(self) -> AbstractContextManager[object]:
        """Held from the first object copied until the last ref changed (gc waits for it)."""


def pull(
    registry: Registry, location: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
) -> TransferReport:
    """Copy models (all, or ``names``) from another registry: a directory, an HTTP URL or a bucket."""
    url = remote_url(registry, location)
    source = open_source(url, timeout=registry.fallbacks.timeout, config=registry.config, check=False)  # the first read checks
    destination = RegistryDestination(registry)
    return transfer(source, destination, names, force=force, progress=progress, message=f"pull from {source.location}")


def push(
    registry: Registry, location: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
) -> TransferReport:
    """Copy models (all, or ``names``) into another registry: a directory or a bucket."""
    url = remote_url(registry, location)
    if re.match(r"https?://", url):
        raise RemoteError(f"cannot push to {url}: HTTP stores are read-only; push to a directory or a bucket")
    destination: Destination
    if is_bucket_url(url):
        from .buckets.destination import BucketDestination

        destination = BucketDestination(url, registry.config, registry.fallbacks.timeout)
    else:
        target = Registry.open(url)
        refuse_symlinks(target.root)  # writes would follow a planted link out of the store
        destination = RegistryDestination(target)
    source = DirectorySource(registry.root)
    return transfer(source, destination, names, force=force, progress=progress, message=f"push from {registry.root}")


def clone(location: str, directory: str, *, progress: ProgressReport | None = None) -> tuple[Registry, TransferReport]:
    """Create a registry in ``directory`` holding every model of another, which it calls ``origin``."""
    source = open_source(location)  # first: a source that cannot be read leaves no new registry behind
    store = Path(directory) / ".mreg"
    created = not store.exists()
    try:
        destination = Registry.init(directory)
        if destination.refs.names():
            raise ConflictError(f"{destination.root} already holds models: clone into a new directory")
        report = transfer(source, RegistryDestination(destination), progress=progress, message=f"pull from {source.location}")
        is_url = re.match(r"https?://", location) or is_bucket_url(location)
        absolute = location if is_url else str(Path(location).expanduser().resolve())
        config_file.update(destination.root / "config", "remote.origin.url", absolute)
    except BaseException:
        if created:  # a failed clone leaves no registry behind
            shutil.rmtree(store, ignore_errors=True)
        raise
    return destination, report


def remote_url(registry: Registry, name_or_location: str) -> str:
    """A configured remote's URL (``remote.NAME.url``, as ``clone`` sets ``origin``),
    or the path or URL as given."""
    text_of(name_or_location, "a location")
    if re.fullmatch(r"[A-Za-z0-9_-]+", name_or_location):
        return registry.config.get(f"remote.{name_or_location}.url") or name_or_location
    return name_or_location


def transfer(
    source: Source,
    destination: Destination,
    names: Sequence[str] = (),
    *,
    force: bool = False,
    progress: ProgressReport | None = None,
    message: str = "",
) -> TransferReport:
    """Copy models from ``source`` into ``destination``; see the module docstring."""
    report = TransferReport(source.location, destination.location)
    names = names_of(names, "names")
    models = _source_models(source, [validate_name(name) for name in names]) if names else source.listed_models()
    tables = {name: model.table for name, model in models.items() if model.table is not None}
    ours = destination.tables(list(tables))
    problems = [p for name, table in tables.items() for p in conflicts(name, table, ours[name], force)]
    incoming = {name: model.notes for name, model in models.items() if model.notes is not None}
    notes = NoteSync(source, destination.note_home(), tables, incoming, force)  # notes travel with their versions
    problems += notes.conflicts()
    if problems:
        raise ConflictError("nothing was transferred: " + "; ".join(problems))
    # Only the models whose refs change are written, and only their logs are read (and
    # checked) before anything is written: a second transfer of the same state reads no
    # log and takes no lock. Were the destination changed meanwhile, the transfer is
    # ordered before that change, as a no-op.
    changing = [name for name, table in tables.items() if merged(name, table, force, ours[name]) != ours[name]]
    logs = {name: source.log(name) for name in changing}
    with destination.writing():
        report.objects, report.bytes = destination.copy_objects(source, tables, progress)
        entry = LogEntry(now_utc(), current_author() if changing else "", "", None, None, message)  # git config: a process
        for name in changing:
            old, new = destination.update_refs(name, partial(merged, name, tables[name], force), partial(logs.get, name, []), entry)
            report.versions += [f"{name}@{v}" for v in new.versions if v not in old.versions]
            report.tags += [f"{name}@{t} -> {v}" for t, v in new.tags.items() if old.tags.get(t) != v]
        report.notes = notes.apply(message)
    destination.finish(list(tables))
    return report


def conflicts(name: str, theirs: RefTable, ours: RefTable, force: bool) -> list[str]:
    """Why copying ``theirs`` over ``ours`` would overwrite something (empty: it would not)."""
    found = []
    for version, digest in theirs.versions.items():
        mine = ours.versions.get(version)
        if mine is not None and mine != digest:
            found.append(f"{name}@{version} is {mine[:15]} here but {digest[:15]} there")
        elif mine is None and ours.same_precedence(version):
            found.append(f"{name}@{version} has the precedence of {name}@{ours.same_precedence(version)} here")
    for tag, version in theirs.tags.items():
        mine = ours.tags.get(tag)
        if mine is not None and mine != version and not force:
            found.append(f"tag {name}@{tag} points at {mine} here but {version} there (use --force to move it)")
    return found


def merged(name: str, theirs: RefTable, force: bool, ours: RefTable) -> RefTable:
    """``ours`` with the versions and tags of ``theirs`` added.

    Raises:
        ConflictError: they conflict (the destination changed since it was checked).
    """
    problems = conflicts(name, theirs, ours, force)
    if problems:
        raise ConflictError("; ".join(problems))
    table = ours
    for version, digest in theirs.versions.items():
        if version not in table.versions:
            table = table.with_version(version, digest)
    for tag, version in theirs.tags.items():
        if table.tags.get(tag) != version:
            table = table.with_tag(tag, version)
    return table


def _source_models(source: Source, names: list[str]) -> dict[str, RemoteModel]:
    found = source.models(names)
    for name, model in found.items():
        if model.table is None or not model.table.versions:
            raise NotFoundError(f"no model named '{name}' in {source.location}")
    return found


def _complete(source: Source, fetched: Counter) -> Counter:
    """``fetched``, if the source had every object its refs need."""
    if fetched.missing:
        digest = fetched.missing[0]
        raise RemoteError(f"{source.location} lacks object {digest}, which its refs need (run 'mreg fsck' there)")
    return fetched


class RegistryDestination:
    """A registry on a file system: refs change under each model's lock."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.location = str(registry.root)
        self._tables: dict[str, RefTable] = {}  # as read before the copy

    def tables(self, names: list[str]) -> dict[str, RefTable]:
        """Models' refs here (remembered: the copy skips the versions they hold)."""
        self._tables.update({name: self.registry.refs.read(name) for name in names})
        return {name: self._tables[name] for name in names}

    def copy_objects(self, source: Source, tables: dict[str, RefTable], progress: ProgressReport | None) -> tuple[int, int]:
        """Fetch the manifests, then every file the registry lacks, several objects at once, with one progress total.

        A version the registry already had with the same digest is skipped: objects land
        before refs, so its objects are here (a second pull of 10,000 versions reads no manifest).
        """
        store = self.registry.objects
        workers = getattr(source, "concurrency", WORKERS)
        known = {(name, v, d) for name, table in self._tables.items() for v, d in table.versions.items()}
        manifests = sorted((d, name, v) for name, table in tables.items() for v, d in table.versions.items() if (name, v, d) not in known)
        counter = _complete(source, fetch_all(source, store, {d: None for d, _, _ in manifests if not store.contains(d)}, workers))
        wanted: dict[Digest, int] = {}
        for digest, name, version in manifests:  # each ref's manifest must be that version's
            for entry in self.registry.manifest(digest, expect=(name, version)).files:
                if not store.contains(entry.digest):
                    wanted[entry.digest] = entry.size
        files = _complete(source, fetch_all(source, store, wanted, workers, thread_safe(counting(progress, sum(wanted.values())))))
        return counter.objects + files.objects, counter.bytes + files.bytes

    def writing(self) -> AbstractContextManager[object]:
        return self.registry.writing()

    def update_refs(
        self, name: str, merge: Callable[[RefTable], RefTable], imported: Callable[[], list[LogEntry]], entry: LogEntry
    ) -> tuple[RefTable, RefTable]:
        with self.registry.updating(name, author=entry.author, message=entry.message) as update:
            old = update.table
            update.table = merge(old)
            if update.table != old:
                update.import_log(imported())
        return old, update.table

    def note_home(self) -> NoteHome:
        return RegistryNotes(self.registry)

    def finish(self, names: list[str]) -> None:
        """Nothing to do: :meth:`Registry.updating` lists a new model before its first version,
        so nothing can fail once the refs are written."""
