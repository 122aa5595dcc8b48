"""push, pull and clone for a registry on this machine, and fsck and gc of a bucket.

The steps of a transfer are :mod:`mreg.sharing.transfer`'s; here are the registry
side of it (:class:`RegistryDestination`: refs change under each model's lock, and
notes too, :class:`RegistryNotes`) and the names of remotes in a registry's config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.errors import ConflictError, InvalidInputError, RemoteError
from mreg.operations.trust import protections, require_signed, trust_root
from mreg.records.names import Digest, text_of
from mreg.records.refs import LogEntry, RefTable, parse_log_line
from mreg.sharing.buckets.url import is_bucket_url
from mreg.sharing.fetching import WORKERS, fetch_all, thread_safe
from mreg.sharing.history import LogSince, log_since
from mreg.sharing.locations import open_source
from mreg.sharing.sources import DEFAULT_HTTP_TIMEOUT, DirectorySource, Source
from mreg.sharing.transfer import Destination, Importer, require_complete, transfer
from mreg.sharing.transfer_rules import PUSH
from mreg.storage import config as config_file
from mreg.storage.files import refuse_symlinks
from mreg.storage.identity import current_author, now_utc
from mreg.storage.threads import ProgressReport, counting
from mreg.store.store import Store

if TYPE_CHECKING:
    from mreg.operations.protection import StorePolicy
    from mreg.records.manifest import Manifest
    from mreg.records.reports import FsckReport, GcReport
    from mreg.records.transfer_report import TransferReport
    from mreg.sharing.evidence_sync import SignatureHome
    from mreg.sharing.note_sync import NoteHome, NotesUpdate
    from mreg.storage.config import Config


def transfer_policy(store: Store, *, signed: bool | None = None, manifest: Callable[[Digest], Manifest] | None = None) -> StorePolicy | None:
    """This registry's policy for a transfer (None: nothing is protected, no signature
    is required and no trust root is configured: arriving signatures are only checked
    for their form and their place)."""
    rules = protections(store)
    signed = require_signed(store, signed)
    trust = trust_root(store)
    if not rules and not signed and trust is None:
        return None
    from mreg.operations.protection import StorePolicy  # start-up: a transfer with no policy loads no approval code

    return StorePolicy(trust, rules, signed, manifest or store.manifest)


def pull(
    store: Store,
    location: str,
    names: Sequence[str] = (),
    *,
    force: bool = False,
    progress: ProgressReport | None = None,
    require_signed: bool | None = None,
) -> TransferReport:
    """Copy models (all, or ``names``) from another registry: a directory, an HTTP URL or a bucket.

    What arrives is checked against this registry's own policy and trust root
    (:mod:`mreg.operations.protection`); ``require_signed`` (default: the config's
    ``pull.requiresigned``) refuses versions without a trusted registration signature.
    """
    url = remote_url(store, location)
    source = open_source(url, timeout=store.fallbacks.timeout, config=store.config, check=False)  # the first read checks
    destination = RegistryDestination(store)
    policy = transfer_policy(store, signed=require_signed, manifest=partial(source_manifest, source))
    return transfer(source, destination, names, force=force, progress=progress, message=f"pull from {source.location}", policy=policy)


def push(
    store: Store, location: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
) -> TransferReport:
    """Copy models (all, or ``names``) into another registry: a directory or a bucket.

    This registry's policy applies to what it publishes: a protected tag moves only
    with its approvals.
    """
    url = remote_url(store, location)
    if re.match(r"https?://", url):
        raise RemoteError(f"cannot push to {url}: HTTP stores are read-only; push to a directory or a bucket")
    destination: Destination
    if is_bucket_url(url):
        from mreg.sharing.buckets.destination import (
            BucketDestination,  # start-up: obstore, only when a bucket is used
        )

        destination = BucketDestination(url, store.config, store.fallbacks.timeout)
    else:
        target = Store.open(url)
        refuse_symlinks(target.root)  # writes would follow a planted link out of the store
        destination = RegistryDestination(target)
    source = DirectorySource(store.root)
    policy = transfer_policy(store, signed=False)
    return transfer(source, destination, names, force=force, progress=progress, message=f"push from {store.root}", policy=policy, sides=PUSH)


def clone(location: str, directory: str, *, progress: ProgressReport | None = None) -> tuple[Store, TransferReport]:
    """Create a registry in ``directory`` holding every model of another, which it calls ``origin``."""
    source = open_source(location)  # first: a source that cannot be read leaves no new registry behind
    store_dir = Path(directory) / ".mreg"
    created = not store_dir.exists()
    try:
        destination = Store.init(directory)
        if destination.refs.names():
            raise ConflictError(f"{destination.root} already holds models: clone into a new directory")
        policy = transfer_policy(destination, manifest=partial(source_manifest, source))
        report = transfer(source, RegistryDestination(destination), progress=progress, message=f"pull from {source.location}", policy=policy)
        is_url = re.match(r"https?://", location) or is_bucket_url(location)
        absolute = location if is_url else str(Path(location).expanduser().resolve())
        config_file.update(destination.root / "config", "remote.origin.url", absolute)
    except BaseException:
        if created:  # a failed clone leaves no registry behind
            import shutil  # start-up: a no-op transfer never needs it

            shutil.rmtree(store_dir, ignore_errors=True)
        raise
    return destination, report


def remote_url(store: Store, name_or_location: str) -> str:
    """A configured remote's URL (``remote.NAME.url``, as ``clone`` sets ``origin``),
    or the path or URL as given."""
    text_of(name_or_location, "a location")
    if re.fullmatch(r"[A-Za-z0-9_-]+", name_or_location):
        return store.config.get(f"remote.{name_or_location}.url") or name_or_location
    return name_or_location


class RegistryDestination:
    """A registry on a file system: refs change under each model's lock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.location = str(store.root)
        self._tables: dict[str, RefTable] = {}  # as read before the copy

    def tables(self, names: list[str]) -> dict[str, RefTable]:
        """Models' refs here (remembered: the copy skips the versions they hold)."""
        self._tables.update({name: self.store.refs.read(name) for name in names})
        return {name: self._tables[name] for name in names}

    def copy_objects(self, source: Source, tables: dict[str, RefTable], progress: ProgressReport | None) -> tuple[int, int]:
        """Fetch the manifests, then every file the registry lacks, several objects at once, with one progress total.

        A version the registry already had with the same digest is skipped: objects land
        before refs, so its objects are here (a second pull of 10,000 versions reads no manifest).
        """
        objects = self.store.objects
        workers = getattr(source, "concurrency", WORKERS)
        known = {(name, v, d) for name, table in self._tables.items() for v, d in table.versions.items()}
        manifests = sorted((d, name, v) for name, table in tables.items() for v, d in table.versions.items() if (name, v, d) not in known)
        counter = require_complete(source, fetch_all(source, objects, {d: None for d, _, _ in manifests if not objects.contains(d)}, workers))
        wanted: dict[Digest, int] = {}
        if manifests:
            from mreg.store.sizes import refuse_wrong_sizes  # start-up: a transfer that brings no version needs no size check
        for digest, name, version in manifests:  # each ref's manifest must be that version's
            manifest = self.store.manifest(digest, expect=(name, version))
            refuse_wrong_sizes(objects, manifest, source.location)  # a file here is not fetched: its size is checked here
            for entry in manifest.files:
                if not objects.contains(entry.digest):
                    wanted[entry.digest] = entry.size
        files = require_complete(source, fetch_all(source, objects, wanted, workers, thread_safe(counting(progress, sum(wanted.values())))))
        return counter.objects + files.objects, counter.bytes + files.bytes

    def writing(self) -> AbstractContextManager[object]:
        return self.store.writing()

    def histories(self, names: list[str], source_id: str) -> dict[str, LogSince]:
        return {name: local_since(self.store, name, source_id) for name in names}

    def update_refs(self, name: str, merge: Callable[[RefTable], RefTable], imported: Importer, via: str, entry: LogEntry) -> tuple[RefTable, RefTable]:
        with self.store.updating(name, author=entry.author, message=entry.message) as update:
            old = update.table
            update.table = merge(old)
            if update.table != old:
                entries, marker = imported(local_since(self.store, name, via))  # read again under the lock
                update.import_log(entries, via=via, merge=marker)
        return old, update.table

    def note_home(self) -> NoteHome:
        return RegistryNotes(self.store)

    def signature_home(self) -> SignatureHome:
        return RegistrySignatures(self.store)

    def finish(self, names: list[str]) -> None:
        """Nothing to do: :meth:`Store.updating` lists a new model before its first version,
        so nothing can fail once the refs are written."""


class RegistryNotes:
    """The notes of a registry on a file system: changed under the model's lock."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def notes(self, name: str) -> dict[Digest, Digest]:
        return self.store.refs.read_notes(name)

    def note_bytes(self, digest: Digest) -> bytes | None:
        objects = self.store.objects
        return objects.read_bytes(digest) if objects.contains(digest) else None

    def add_note_object(self, data: bytes) -> None:
        self.store.objects.add_bytes(data)

    def change_notes(self, name: str, change: NotesUpdate) -> None:
        with self.store.refs.update(name, author=current_author(), message="", time=now_utc()):  # the model's lock
            table, entries = change(self.store.refs.read_notes(name))
            if entries:
                self.store.refs.write_notes(name, table, entries)


def source_manifest(source: Source, digest: Digest) -> Manifest:
    """A manifest where a transfer reads from, verified (a policy looks at an arriving version's metrics)."""
    from mreg.sharing.fallbacks import fetch_manifest  # start-up: only a policy reads arriving manifests

    found = fetch_manifest(source, digest)
    if found is None:
        raise RemoteError(f"{source.location} lacks manifest {digest}, which its refs need")
    return found[1]


def local_since(store: Store, name: str, source_id: str) -> LogSince:
    """A model's log here, back to its last merge from ``source_id`` (every entry known)."""
    from mreg.operations.history import read_chain  # start-up: a transfer that changes nothing reads no log

    chain = read_chain(store, name)
    legacy = [entry for line in chain.legacy if (entry := parse_log_line(line.decode("utf-8", errors="replace"))) is not None]
    return log_since([*legacy, *chain.links], source_id, known_all=True)


class RegistrySignatures:
    """The signature objects of a registry on a file system (its ref tables file them)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def signature_bytes(self, digest: Digest) -> bytes | None:
        objects = self.store.objects
        return objects.read_bytes(digest) if objects.contains(digest) else None

    def add_signature_object(self, data: bytes) -> None:
        self.store.objects.add_bytes(data)


def bucket_settings(store: Store | None, location: str, command: str) -> tuple[str, Config | None, float]:
    """The URL a bucket argument names (a URL, or a remote's name in ``store``), with the
    config and timeout to reach it; a bucket needs no registry here (``store`` None)."""
    url = remote_url(store, location) if store is not None else location
    if not is_bucket_url(url):
        raise InvalidInputError(f"'{url}' is not a bucket URL (s3://, gs://, az://): run {command} in that registry instead")
    if store is None:
        return url, None, DEFAULT_HTTP_TIMEOUT
    return url, store.config, store.fallbacks.timeout


def check_bucket(store: Store | None, location: str) -> FsckReport:
    """fsck of a registry in a bucket: read-only (see :mod:`mreg.sharing.buckets.check`)."""
    from mreg.sharing.buckets.check import (
        check,  # imports obstore: only when a bucket is used
    )

    return check(*bucket_settings(store, location, "fsck"))


def collect_bucket(store: Store | None, location: str, *, grace: timedelta | None = None, dry_run: bool = False) -> GcReport:
    """gc of a registry in a bucket, sparing objects younger than ``grace`` (see :mod:`mreg.sharing.buckets.sweep`)."""
    from mreg.sharing.buckets.sweep import (  # imports obstore: only when a bucket is used
        DEFAULT_GRACE,
        collect,
    )

    url, config, timeout = bucket_settings(store, location, "gc")
    return collect(url, config, timeout, grace=DEFAULT_GRACE if grace is None else grace, dry_run=dry_run)
