"""push, pull and clone: copy models between registries.

A transfer copies the objects reachable from the chosen models' refs that the
destination lacks (and only those), verified, then the refs, with their history
(:mod:`.history`), notes (:mod:`.note_sync`) and signatures (:mod:`.evidence_sync`).
A version both sides have under different digests is a conflict, so is a tombstone
that names other bytes, and so is a tag that points elsewhere unless forced or a
fast-forward (:mod:`.transfer_rules`); a source whose history rewrites what was read
from it before is refused, and the receiver's policy (protected tags, signed versions)
may refuse what arrives. All of that is found for every model before anything is
copied, and checked again when each model's refs change, so nothing is ever
overwritten. Objects land before refs, so a transfer killed at any instant
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
from typing import TYPE_CHECKING, Any, Protocol

from mreg.errors import ConflictError, NotFoundError, RemoteError
from mreg.records.evidence import SignedStatement
from mreg.records.names import Digest, names_of, validate_name
from mreg.records.refs import LogEntry, RefTable
from mreg.records.transfer_report import TransferReport
from mreg.sharing.evidence_sync import SignatureHome, SignatureSync
from mreg.sharing.history import History, LogSince, check_growth, fast_forward, identity, read_history, to_import
from mreg.sharing.note_sync import NoteHome, NoteSync
from mreg.sharing.transfer_rules import PULL, Sides, conflicts, diverging_tags, merged
from mreg.storage.identity import current_author, now_utc

if TYPE_CHECKING:
    from mreg.sharing.fetching import Counter
    from mreg.sharing.sources import RemoteModel, Source
    from mreg.signing.statement import Statement
    from mreg.storage.threads import ProgressReport

Importer = Callable[[LogSince], tuple[list[LogEntry], dict[str, Any] | None]]
"""Given the destination's log since its last merge from the source, the entries to bring in
and the ``_merge`` fields to end the change with."""
Signatures = Callable[[Digest], list[tuple[Digest, SignedStatement]]]


class Destination(Protocol):
    """Where a transfer writes: a registry on a file system, or one in a bucket."""

    location: str

    def tables(self, names: list[str]) -> dict[str, RefTable]:
        """Models' refs there (empty for each it has not)."""

    def histories(self, names: list[str], source_id: str) -> dict[str, LogSince]:
        """Models' logs there, read back to their last ``_merge`` from ``source_id``."""

    def copy_objects(self, source: Source, tables: dict[str, RefTable], progress: ProgressReport | None) -> tuple[int, int]:
        """Copy every object the versions in ``tables`` need and lack there; return (objects, bytes)."""

    def update_refs(
        self, name: str, merge: Callable[[RefTable], RefTable], imported: Importer, via: str, entry: LogEntry
    ) -> tuple[RefTable, RefTable]:
        """Replace a model's refs ``ours`` by ``merge(ours)`` atomically; when they change,
        log the source's entries ``imported`` gives (marked ``via``), then the change
        (time, author, message from ``entry``), then the ``_merge`` line; return (old, new)."""

    def note_home(self) -> NoteHome:
        """Where the notes of the transferred versions go."""

    def signature_home(self) -> SignatureHome:
        """Where the signature objects of the transferred versions go."""

    def finish(self, names: list[str]) -> None:
        """Publish the list of models (``info/models``) after the refs changed."""

    def writing(self) -> AbstractContextManager[object]:
        """Held from the first object copied until the last ref changed (gc waits for it)."""


class TransferPolicy(Protocol):
    """The receiving side's rules (protected tags, signed versions), from its own config."""

    def check_signature(self, signed: SignedStatement, statement: Statement) -> None:
        """Raise SignatureError unless an arriving signature verifies."""

    def problems(self, name: str, before: RefTable, after: RefTable, signatures: Signatures) -> list[str]:
        """Why the destination's refs may not go from ``before`` to ``after``."""


def transfer(
    source: Source,
    destination: Destination,
    names: Sequence[str] = (),
    *,
    force: bool = False,
    progress: ProgressReport | None = None,
    message: str = "",
    policy: TransferPolicy | None = None,
    sides: Sides = PULL,
) -> TransferReport:
    """Copy models from ``source`` into ``destination``; see the module docstring."""
    report = TransferReport(source.location, destination.location)
    names = names_of(names, "names")
    models = _source_models(source, [validate_name(name) for name in names]) if names else source.listed_models()
    tables = {name: model.table for name, model in models.items() if model.table is not None}
    ours = destination.tables(list(tables))
    source_id = identity(source)
    # Only the models whose refs would change are read further (their logs, both sides'):
    # a second transfer of the same state reads no log and takes no lock.
    touched = [name for name, table in tables.items() if would_change(table, ours[name])]
    since = destination.histories(touched, source_id) if touched else {}
    histories = {name: _incoming(source, name, models[name], since[name]) for name in touched}
    movable = {name: _movable(tables[name], ours[name], since[name], histories[name]) for name in touched}
    problems = [p for name, table in tables.items() for p in conflicts(name, table, ours[name], force, movable.get(name), sides)]
    incoming = {name: model.notes for name, model in models.items() if model.notes is not None}
    notes = NoteSync(source, destination.note_home(), tables, incoming, force, sides)  # notes travel with their versions
    problems += notes.conflicts()
    signatures = SignatureSync(source, destination.signature_home(), tables, ours, policy.check_signature if policy else None)
    problems += signatures.problems()
    if problems:
        raise ConflictError("nothing was transferred: " + "; ".join(problems), options={"force": "force=True"})
    rules = {name: partial(merged, name, tables[name], force, movable.get(name, {}), sides) for name in tables}
    after = {name: rules[name](ours[name]) for name in touched}
    if policy is not None:
        refused = [p for name in touched for p in policy.problems(name, ours[name], after[name], partial(signatures.for_target, name))]
        if refused:
            raise ConflictError("nothing was transferred: " + "; ".join(refused))
    changing = [name for name in touched if after[name] != ours[name]]
    with destination.writing():
        report.objects, report.bytes = destination.copy_objects(source, tables, progress)
        copied = signatures.copy()  # the objects before the refs that file them
        report.objects, report.bytes = report.objects + copied[0], report.bytes + copied[1]
        entry = LogEntry(now_utc(), current_author() if changing else "", "", None, None, message)  # git config: a process
        for name in changing:
            importer = partial(to_import, histories[name], source_id=source_id)
            old, new = destination.update_refs(name, rules[name], importer, source_id, entry)
            report.versions += [f"{name}@{v}" for v in new.versions if v not in old.versions]
            report.tags += [f"{name}@{t} -> {v}" for t, v in new.tags.items() if old.tags.get(t) != v]
            report.signatures += [f"{name}@{new.version_of(t)}" for t, _ in sorted(new.signatures - old.signatures)]
        report.notes = notes.apply(message)
    destination.finish(list(tables))
    return report


def would_change(theirs: RefTable, ours: RefTable) -> bool:
    """Would copying ``theirs`` add a version, a tombstone or move a tag of ``ours`` (conflicts aside)?"""
    return (
        any(version not in ours.versions for version in theirs.versions)
        or any(version not in ours.removed for version in theirs.removed)
        or any(ours.tags.get(tag) != version for tag, version in theirs.tags.items())
        or not theirs.signatures <= ours.signatures
    )


def _incoming(source: Source, name: str, model: RemoteModel, since: LogSince) -> History:
    """The source's history of a model, read from the destination's last merge from it on,
    and checked to hold what was read from it then."""
    after = since.marker.fields.get("theirs_seq") if since.marker is not None else None
    history = read_history(source, name, model.head, after if isinstance(after, int) else None)
    check_growth(name, source.location, since.marker, history)
    return history


def _movable(theirs: RefTable, ours: RefTable, since: LogSince, history: History) -> dict[str, str]:
    """The diverging tags the source may move without force (fast-forwards), with their value here."""
    return {tag: value for tag, value in diverging_tags(theirs, ours).items() if fast_forward(tag, value, since, history)}


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
