"""Notes in push, pull and clone: checked before anything is copied, applied after the refs.

:mod:`mreg.transfer` calls :class:`NoteSync`; the rules live here, beside the notes
(:mod:`mreg.notes`). Where the notes go is a :class:`NoteHome`: a registry on a file
system (:class:`RegistryNotes`, changed under the model's lock) or a bucket
(:class:`mreg.buckets.notes.BucketNotes`, changed by compare-and-swap).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Protocol

from mreg.errors import ConflictError, RemoteError
from mreg.records.codec import sha256_digest
from mreg.records.limits import MAX_NOTE_SIZE
from mreg.records.names import Digest
from mreg.records.notes import Note, history, parse_table
from mreg.records.refs import LogEntry
from mreg.sharing.transfer_rules import PULL, Sides
from mreg.storage.identity import current_author, now_utc
from mreg.storage.layout import object_key
from mreg.storage.threads import in_parallel

if TYPE_CHECKING:
    from mreg.records.refs import RefTable
    from mreg.sharing.sources import Source

NotesUpdate = Callable[[dict[Digest, Digest]], tuple[dict[Digest, Digest], list[LogEntry]]]
"""Given a model's notes, their new value and the log entries of the change."""


class NoteHome(Protocol):
    """Where a transfer writes notes: their tables, their objects, and atomic changes."""

    def notes(self, name: str) -> dict[Digest, Digest]:
        """A model's notes there: manifest digest -> note digest."""

    def note_bytes(self, digest: Digest) -> bytes | None:
        """A note object's bytes there (verified), or None when it lacks it."""

    def add_note_object(self, data: bytes) -> None:
        """Store a note object (create-only: the same bytes may already be there)."""

    def change_notes(self, name: str, change: NotesUpdate) -> None:
        """Replace a model's notes by ``change(notes)`` atomically and log the change;
        ``change`` may run more than once (once per lost race) and may raise."""


class NoteSync:
    """The notes a transfer brings along, checked before anything is copied and
    applied after the refs, under each model's lock (compare-and-swap).

    Where both sides annotate a version differently, the incoming note wins when it
    descends from ours (its ``previous`` chain reaches ours: only that side changed),
    ours stays when it descends from theirs, and anything else is a conflict unless
    forced, as for tags. Removals do not travel, as tag removals do not.
    """

    def __init__(
        self, source: Source, destination: NoteHome, tables: Mapping[str, RefTable], notes: Mapping[str, bytes], force: bool, sides: Sides = PULL
    ) -> None:
        self.source, self.destination, self.force, self.sides = source, destination, force, sides
        self._objects: dict[Digest, bytes | None] = {}
        self._ours: dict[str, dict[Digest, Digest]] = {}  # the destination's notes, as conflicts() read them
        self.versions = {name: {d: v for v, d in table.versions.items()} for name, table in tables.items()}
        self.incoming = incoming_notes(source.location, tables, notes)

    def conflicts(self) -> list[str]:
        """Why applying the incoming notes would overwrite a note (empty: it would not)."""
        found = []
        readers = getattr(self.destination, "readers", 1)  # a bucket: one request each, read at once
        in_parallel(self._read_ours, list(self.incoming), readers)
        for name, notes in self.incoming.items():
            ours = self._ours[name]
            for target, theirs in notes.items():
                decision = self._decide(ours.get(target), theirs)
                if decision == "conflict":
                    found.append(self._conflict(name, target, ours[target], theirs))
                elif decision == "take":  # read and verified before anything is copied
                    self._check(target, theirs)
        return found

    def apply(self, message: str) -> list[str]:
        """Take the incoming notes that win; return ``name@version`` of each note changed.

        A model whose notes :meth:`conflicts` found with nothing to take is left alone
        (ordered before any change made to them since, as a no-op).
        """
        changing = [name for name, notes in self.incoming.items() if self._takes(name, notes)]
        if not changing:
            return []
        changed = []
        template = LogEntry(now_utc(), current_author(), "", None, None, message)
        for name in changing:
            written: list[LogEntry] = []
            self.destination.change_notes(name, partial(self._merged, name, self.incoming[name], template, written))
            changed += [f"{name}@{entry.ref.removeprefix('notes/')}" for entry in written]
        return changed

    def _read_ours(self, name: str) -> None:
        self._ours[name] = self.destination.notes(name)

    def _takes(self, name: str, notes: Mapping[Digest, Digest]) -> bool:
        """Would any incoming note of the model be taken (unknown until :meth:`conflicts` ran)?"""
        ours = self._ours.get(name)
        return ours is None or any(self._decide(ours.get(target), theirs) != "keep" for target, theirs in notes.items())

    def _merged(
        self, name: str, notes: Mapping[Digest, Digest], template: LogEntry, written: list[LogEntry], ours: dict[Digest, Digest]
    ) -> tuple[dict[Digest, Digest], list[LogEntry]]:
        """``ours`` with the incoming notes that win, and the log entries of the change
        (kept in ``written`` too: when this runs again after a lost race, the last run
        is the one that was written)."""
        table, entries = dict(ours), []
        for target, theirs in sorted(notes.items()):
            decision = self._decide(table.get(target), theirs)
            if decision == "conflict":  # the destination changed since we looked
                raise ConflictError(self._conflict(name, target, table[target], theirs), options={"force": "force=True"})
            if decision == "take":
                self._store(theirs)
                version = self.versions[name][target]
                entries.append(template._replace(ref=f"notes/{version}", old=table.get(target), new=theirs))
                table[target] = theirs
        written[:] = entries
        return table, entries

    def _decide(self, ours: Digest | None, theirs: Digest) -> str:
        if ours == theirs:
            return "keep"
        if ours is None or ours in history(self._remote, theirs) or self.force:
            return "take"
        if theirs in history(self._local, ours):
            return "keep"
        return "conflict"

    def _conflict(self, name: str, target: Digest, ours: Digest, theirs: Digest) -> str:
        version = self.versions[name][target]
        here, there = self.sides
        return f"the note on {name}@{version} is {ours[:15]} {here} but {theirs[:15]} {there} (use {{force}} to replace it)"

    def _check(self, target: Digest, digest: Digest) -> None:
        """The source has the note, and it annotates the version it is filed under."""
        note = self._remote(digest)
        if note is None:
            raise RemoteError(f"{self.source.location} lacks note object {digest}, which its notes need")
        if note.target != target:
            raise RemoteError(f"{self.source.location}: note {digest} is filed under {target} but annotates another version")

    def _remote(self, digest: Digest) -> Note | None:
        """A note object of the source, verified, or None when it lacks it."""
        data = self._remote_bytes(digest)
        return Note.decode(data, digest) if data is not None else None

    def _remote_bytes(self, digest: Digest) -> bytes | None:
        if digest not in self._objects:
            data = self.source.read(object_key(digest))
            if data is not None and (len(data) > MAX_NOTE_SIZE or sha256_digest(data) != digest):
                raise RemoteError(f"{self.source.location}: note object {digest} is corrupt")
            self._objects[digest] = data
        return self._objects[digest]

    def _local(self, digest: Digest) -> Note | None:
        data = self.destination.note_bytes(digest)
        return Note.decode(data, digest) if data is not None else None

    def _store(self, head: Digest) -> None:
        """Copy a note and the history the destination lacks (objects before the table)."""
        for digest in history(self._remote, head):
            data = self._remote_bytes(digest)
            if data is not None and self.destination.note_bytes(digest) is None:
                self.destination.add_note_object(data)
        if self.destination.note_bytes(head) is None:
            raise RemoteError(f"{self.source.location} lacks note object {head}, which its notes need")


def incoming_notes(location: str, tables: Mapping[str, RefTable], notes: Mapping[str, bytes]) -> dict[str, dict[Digest, Digest]]:
    """The notes another registry has on the versions in ``tables``: model -> manifest ->
    note digest, from its notes tables' bytes (``notes``: model -> bytes, read bounded).

    Raises:
        RemoteError: a notes table is malformed.
    """
    found = {}
    for name, data in notes.items():
        targets = set(tables[name].versions.values())
        found[name] = {t: n for t, n in parse_table(data, f"notes of '{name}' in {location}").items() if t in targets}
    return found
