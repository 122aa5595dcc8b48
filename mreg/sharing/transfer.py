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

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Protocol

from mreg.errors import ConflictError, NotFoundError, RemoteError
from mreg.records.names import names_of, validate_name
from mreg.records.refs import LogEntry, RefTable
from mreg.records.reports import TransferReport
from mreg.sharing.fetching import Counter
from mreg.sharing.note_sync import NoteHome, NoteSync
from mreg.sharing.sources import RemoteModel, Source
from mreg.storage.identity import current_author, now_utc
from mreg.storage.threads import ProgressReport


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
        raise ConflictError("nothing was transferred: " + "; ".join(problems), options={"force": "force=True"})
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
            old, new = destination.update_refs(name, partial(merged, name, tables[name], force), partial(logs.__getitem__, name), entry)
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
        here = ours.tags.get(tag)
        if here is not None and here != version and not force:
            found.append(f"tag {name}@{tag} points at {here} here but {version} there (use {{force}} to move it)")
    return found


def merged(name: str, theirs: RefTable, force: bool, ours: RefTable) -> RefTable:
    """``ours`` with the versions and tags of ``theirs`` added.

    Raises:
        ConflictError: they conflict (the destination changed since it was checked).
    """
    problems = conflicts(name, theirs, ours, force)
    if problems:
        raise ConflictError("; ".join(problems), options={"force": "force=True"})
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


def require_complete(source: Source, fetched: Counter) -> Counter:
    """``fetched``, if the source had every object its refs need."""
    if fetched.missing:
        digest = fetched.missing[0]
        raise RemoteError(f"{source.location} lacks object {digest}, which its refs need (run 'mreg fsck' there)")
    return fetched
