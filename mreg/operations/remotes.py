"""push, pull and clone for a registry on this machine."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mreg.errors import ConflictError, RemoteError
from mreg.operations.notes import read_table, write_table
from mreg.records.names import Digest, text_of
from mreg.records.refs import LogEntry, RefTable
from mreg.registry import Registry
from mreg.sharing.buckets.url import is_bucket_url
from mreg.sharing.fetching import WORKERS, fetch_all, thread_safe
from mreg.sharing.note_sync import NoteHome, NotesUpdate
from mreg.sharing.sources import (
    DirectorySource,
    Source,
    open_source,
)
from mreg.sharing.transfer import (
    Destination,
    TransferReport,
    require_complete,
    transfer,
)
from mreg.storage import config as config_file
from mreg.storage.files import refuse_symlinks
from mreg.storage.identity import current_author, now_utc
from mreg.storage.threads import ProgressReport, counting

if TYPE_CHECKING:
    from mreg.records.refs import RefTable
    from mreg.registry import Registry
    from mreg.sharing.sources import Source


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
        from mreg.sharing.buckets.destination import BucketDestination

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
        counter = require_complete(source, fetch_all(source, store, {d: None for d, _, _ in manifests if not store.contains(d)}, workers))
        wanted: dict[Digest, int] = {}
        for digest, name, version in manifests:  # each ref's manifest must be that version's
            for entry in self.registry.manifest(digest, expect=(name, version)).files:
                if not store.contains(entry.digest):
                    wanted[entry.digest] = entry.size
        files = require_complete(source, fetch_all(source, store, wanted, workers, thread_safe(counting(progress, sum(wanted.values())))))
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


class RegistryNotes:
    """The notes of a registry on a file system: changed under the model's lock."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def notes(self, name: str) -> dict[Digest, Digest]:
        return read_table(self.registry, name)

    def note_bytes(self, digest: Digest) -> bytes | None:
        store = self.registry.objects
        return store.read_bytes(digest) if store.contains(digest) else None

    def add_note_object(self, data: bytes) -> None:
        self.registry.objects.add_bytes(data)

    def change_notes(self, name: str, change: NotesUpdate) -> None:
        with self.registry.refs.update(name, author=current_author(), message="", time=now_utc()):  # the model's lock
            table, entries = change(read_table(self.registry, name))
            if entries:
                write_table(self.registry, name, table, entries)
