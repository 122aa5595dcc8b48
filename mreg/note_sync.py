"""Notes in push, pull and clone: checked before anything is copied, applied after the refs.

:mod:`mreg.transfer` calls :class:`NoteSync`; the rules live here, beside the notes
(:mod:`mreg.notes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from .errors import ConflictError, RemoteError
from .names import Digest
from .notes import MAX_NOTE_SIZE, NOTES_FILE, Note, history, parse_table, read_table, write_table
from .objects import sha256_digest
from .refs import LogEntry
from .registration import current_author, now_utc

MAX_TABLE_SIZE = 64 << 20  # 450,000 notes

if TYPE_CHECKING:
    from .refs import RefTable
    from .registry import Registry
    from .remote import Source


class NoteSync:
    """The notes a transfer brings along, checked before anything is copied and
    applied after the refs, under each model's lock (compare-and-swap).

    Where both sides annotate a version differently, the incoming note wins when it
    descends from ours (its ``previous`` chain reaches ours: only that side changed),
    ours stays when it descends from theirs, and anything else is a conflict unless
    forced, as for tags. Removals do not travel, as tag removals do not.
    """

    def __init__(self, source: Source, destination: Registry, tables: Mapping[str, RefTable], force: bool) -> None:
        self.source, self.destination, self.force = source, destination, force
        self._objects: dict[Digest, bytes | None] = {}
        self.versions = {name: {d: v for v, d in table.versions.items()} for name, table in tables.items()}
        self.incoming = incoming_notes(source, tables)

    def conflicts(self) -> list[str]:
        """Why applying the incoming notes would overwrite a note (empty: it would not)."""
        found = []
        for name, notes in self.incoming.items():
            ours = read_table(self.destination, name)
            for target, theirs in notes.items():
                decision = self._decide(ours.get(target), theirs)
                if decision == "conflict":
                    found.append(self._conflict(name, target, ours[target], theirs))
                elif decision == "take":  # read and verified before anything is copied
                    self._check(target, theirs)
        return found

    def apply(self, message: str) -> list[str]:
        """Take the incoming notes that win; return ``name@version`` of each note changed."""
        changed = []
        author, time = current_author(), now_utc()
        for name, notes in self.incoming.items():
            with self.destination.refs.update(name, author=author, message=message, time=time):
                ours = read_table(self.destination, name)
                entries = []
                for target, theirs in sorted(notes.items()):
                    decision = self._decide(ours.get(target), theirs)
                    if decision == "conflict":  # the destination changed since we looked
                        raise ConflictError(self._conflict(name, target, ours[target], theirs))
                    if decision == "take":
                        self._store(theirs)
                        version = self.versions[name][target]
                        entries.append(LogEntry(time, author, f"notes/{version}", ours.get(target), theirs, message))
                        changed.append(f"{name}@{version}")
                        ours[target] = theirs
                if entries:
                    write_table(self.destination, name, ours, entries)
        return changed

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
        return f"the note on {name}@{version} is {ours[:15]} here but {theirs[:15]} there (use --force to replace it)"

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
            from .fallback import object_path

            data = self.source.read(object_path(digest))
            if data is not None and (len(data) > MAX_NOTE_SIZE or sha256_digest(data) != digest):
                raise RemoteError(f"{self.source.location}: note object {digest} is corrupt")
            self._objects[digest] = data
        return self._objects[digest]

    def _local(self, digest: Digest) -> Note | None:
        store = self.destination.objects
        return Note.decode(store.read_bytes(digest), digest) if store.contains(digest) else None

    def _store(self, head: Digest) -> None:
        """Copy a note and the history the destination lacks (objects before the table)."""
        for digest in history(self._remote, head):
            data = self._remote_bytes(digest)
            if data is not None and not self.destination.objects.contains(digest):
                self.destination.objects.add_bytes(data)
        if not self.destination.objects.contains(head):
            raise RemoteError(f"{self.source.location} lacks note object {head}, which its notes need")


def incoming_notes(source: Source, tables: Mapping[str, RefTable]) -> dict[str, dict[Digest, Digest]]:
    """The notes ``source`` has on the versions in ``tables``: model -> manifest -> note digest.

    Raises:
        RemoteError: a notes table is too large or malformed.
    """
    found = {}
    for name, table in tables.items():
        data = source.read(f"models/{name}/{NOTES_FILE}")
        if data is None:
            continue
        if len(data) > MAX_TABLE_SIZE:
            raise RemoteError(f"{source.location}: the notes of '{name}' are larger than {MAX_TABLE_SIZE} bytes")
        notes = parse_table(data, f"notes of '{name}' in {source.location}")
        targets = set(table.versions.values())
        found[name] = {t: n for t, n in notes.items() if t in targets}
    return found
