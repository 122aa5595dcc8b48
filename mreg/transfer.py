"""push, pull and clone: copy models between registries.

A transfer copies the objects reachable from the chosen models' refs that the
destination lacks (and only those), verified, then the refs, with their logs. A
version both sides have under different digests is a conflict, and so is a tag
that points elsewhere (unless forced): conflicts are found for every model before
anything is copied, and checked again under each model's lock, so nothing is ever
overwritten. Objects land before refs, so a transfer killed at any instant leaves
both stores valid, and running it again finishes the job.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import config as config_file
from .errors import ConflictError, NotFoundError, RemoteError
from .fallback import fetch_object
from .fileutil import Progress, ProgressReport, counting
from .names import Digest, validate_name
from .note_sync import NoteSync
from .refs import LogEntry, RefTable
from .registration import current_author
from .registry import Registry
from .remote import DirectorySource, Source, open_source
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


def pull(
    registry: Registry, location: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
) -> TransferReport:
    """Copy models (all, or ``names``) from another registry, a directory or an HTTP URL."""
    source = open_source(remote_url(registry, location), timeout=registry.fallbacks.timeout)
    return transfer(source, registry, names, force=force, progress=progress, message=f"pull from {source.location}")


def push(
    registry: Registry, location: str, names: Sequence[str] = (), *, force: bool = False, progress: ProgressReport | None = None
) -> TransferReport:
    """Copy models (all, or ``names``) into another registry on a file system."""
    url = remote_url(registry, location)
    if re.match(r"https?://", url):
        raise RemoteError(f"cannot push to {url}: HTTP stores are read-only; push to a directory (a mount, a share)")
    destination = Registry.open(url)
    refuse_symlinks(destination.root)  # writes would follow a planted link out of the store
    source = DirectorySource(registry.root)
    return transfer(source, destination, names, force=force, progress=progress, message=f"push from {registry.root}")


def clone(location: str, directory: str, *, progress: ProgressReport | None = None) -> tuple[Registry, TransferReport]:
    """Create a registry in ``directory`` holding every model of another, which it calls ``origin``."""
    store = Path(directory) / ".mreg"
    created = not store.exists()
    try:
        destination = Registry.init(directory)
        if destination.refs.names():
            raise ConflictError(f"{destination.root} already holds models: clone into a new directory")
        report = pull(destination, location, progress=progress)
        absolute = location if re.match(r"https?://", location) else str(Path(location).expanduser().resolve())
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
    destination: Registry,
    names: Sequence[str] = (),
    *,
    force: bool = False,
    progress: ProgressReport | None = None,
    message: str = "",
) -> TransferReport:
    """Copy models from ``source`` into ``destination``; see the module docstring."""
    report = TransferReport(source.location, str(destination.root))
    names = names_of(names, "names")
    if names:
        tables = {name: _source_table(source, validate_name(name)) for name in names}
    else:
        tables = source.listed_tables()
    logs = {name: source.log(name) for name in tables}  # checked before anything is written
    notes = NoteSync(source, destination, tables, force)  # notes travel with their versions
    problems = [p for name, table in tables.items() for p in conflicts(name, table, destination.refs.read(name), force)]
    problems += notes.conflicts()
    if problems:
        raise ConflictError("nothing was transferred: " + "; ".join(problems))
    with destination.writing():
        _copy_objects(source, destination, tables, report, progress)
        for name, table in tables.items():
            _update_refs(logs[name], destination, name, table, force, message, report)
        report.notes = notes.apply(message)
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


def _source_table(source: Source, name: str) -> RefTable:
    table = source.table(name)
    if table is None or not table.versions:
        raise NotFoundError(f"no model named '{name}' in {source.location}")
    return table


def _copy_objects(
    source: Source, destination: Registry, tables: dict[str, RefTable], report: TransferReport, progress: ProgressReport | None
) -> None:
    """Fetch the manifests, then every file the destination lacks, with one progress total."""
    store = destination.objects
    manifests = sorted((d, name, v) for name, table in tables.items() for v, d in table.versions.items())
    missing: dict[Digest, int] = {}
    for digest, name, version in manifests:
        if not store.contains(digest):
            _fetch(source, digest, destination, report, None)
        for entry in destination.manifest(digest, expect=(name, version)).files:
            if not store.contains(entry.digest):
                missing[entry.digest] = entry.size
    advance = counting(progress, sum(missing.values()))
    for digest, size in missing.items():
        _fetch(source, digest, destination, report, advance, size)


def _fetch(
    source: Source, digest: Digest, destination: Registry, report: TransferReport, advance: Progress | None, size: int | None = None
) -> None:
    copied = fetch_object(source, digest, destination.objects, advance, size=size)
    if copied is None:
        raise RemoteError(f"{source.location} lacks object {digest}, which its refs need (run 'mreg fsck' there)")
    report.objects += 1
    report.bytes += copied


def _update_refs(
    log: list[LogEntry], destination: Registry, name: str, theirs: RefTable, force: bool, message: str, report: TransferReport
) -> None:
    """Add the versions and tags ``theirs`` has, under the model's lock (compare-and-swap)."""
    with destination.updating(name, author=current_author(), message=message) as update:
        problems = conflicts(name, theirs, update.table, force)
        if problems:  # the destination changed since we looked
            raise ConflictError("; ".join(problems))
        table = update.table
        for version, digest in theirs.versions.items():
            if version not in table.versions:
                table = table.with_version(version, digest)
                report.versions.append(f"{name}@{version}")
        for tag, version in theirs.tags.items():
            if table.tags.get(tag) != version:
                table = table.with_tag(tag, version)
                report.tags.append(f"{name}@{tag} -> {version}")
        update.table = table
        update.import_log(log)

