"""Version notes in a bucket: the ``_notes`` table by compare-and-swap, note objects create-only.

The layout is a directory's: ``models/NAME/_notes`` maps manifest digests to note
digests, and each note is an object under ``objects/``. A change re-reads the table
with its ETag, applies the change and writes it only if the ETag still holds (on a
lost race it re-reads and re-applies), then records the change as one log object,
as ref changes are (:mod:`mreg.buckets.refs`).
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING

from mreg.errors import ConflictError, RemoteError
from mreg.records.chain import entry_fields
from mreg.records.codec import sha256_digest
from mreg.records.limits import MAX_NOTE_SIZE, MAX_NOTES_TABLE_SIZE
from mreg.records.names import Digest, validate_name
from mreg.records.notes import Note, encode_table, parse_table
from mreg.sharing.buckets.client import FRESHEN_AFTER, READERS, Bucket, age
from mreg.sharing.buckets.log import append
from mreg.sharing.buckets.refs import MAX_ATTEMPTS
from mreg.storage.layout import object_key
from mreg.storage.refs import NOTES_FILE

if TYPE_CHECKING:
    from mreg.sharing.buckets.gc_guard import Freshened
    from mreg.sharing.note_sync import NotesUpdate


class BucketNotes:
    """The notes of a registry in a bucket (a :class:`mreg.note_sync.NoteHome`)."""

    readers = READERS
    """Notes tables :class:`mreg.note_sync.NoteSync` reads at once."""

    def __init__(self, bucket: Bucket, freshened: Freshened | None = None) -> None:
        self.bucket = bucket
        self.freshened = freshened  # a push's record of what it rewrote (see .gc_guard)

    def notes(self, name: str) -> dict[Digest, Digest]:
        return self._read(name)[0]

    def note_bytes(self, digest: Digest) -> bytes | None:
        got = self.bucket.get(object_key(digest), MAX_NOTE_SIZE)
        if got is None:
            return None
        if sha256_digest(got[0]) != digest:
            raise RemoteError(f"{self.bucket.location}: note object {digest} does not match its digest")
        return got[0]

    def note(self, digest: Digest) -> Note | None:
        """A note object there, decoded, or None when it lacks it."""
        data = self.note_bytes(digest)
        return Note.decode(data, digest) if data is not None else None

    def add_note_object(self, data: bytes) -> None:
        """Write a note object create-only; one already there but old is written again
        ("freshened", as a push does its objects), so a concurrent gc spares it."""
        path = object_key(sha256_digest(data))
        info = self.bucket.head(path)
        if info is None:
            self.bucket.create(path, data)  # False: another push wrote the same bytes first
        elif age(info, datetime.now(timezone.utc)) > FRESHEN_AFTER:
            self.bucket.overwrite(path, data)
            if self.freshened is not None:
                self.freshened.record(path, partial(self.bucket.overwrite, path, data))

    def change_notes(self, name: str, change: NotesUpdate) -> None:
        for attempt in range(MAX_ATTEMPTS):
            ours, etag = self._read(name)
            table, entries = change(ours)
            if not entries:
                return
            if self.bucket.swap(_key(name), encode_table(table), etag):
                append(self.bucket, name, [entry_fields(e, target=_target(ours, table, e.old, e.new)) for e in entries])
                return
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # let the winner finish
        raise ConflictError(f"the notes of '{name}' in {self.bucket.location} kept changing: gave up after {MAX_ATTEMPTS} attempts")

    def _read(self, name: str) -> tuple[dict[Digest, Digest], str | None]:
        got = self.bucket.get(_key(name), MAX_NOTES_TABLE_SIZE)
        if got is None:
            return {}, None
        return parse_table(got[0], f"notes of '{name}' in {self.bucket.location}"), got[1]


def _target(before: dict[Digest, Digest], after: dict[Digest, Digest], old: str | None, new: str | None) -> Digest | None:
    """The manifest whose note went from ``old`` to ``new`` (what a log entry of it names)."""
    return next((t for t in sorted(set(before) | set(after)) if (before.get(t), after.get(t)) == (old, new)), None)


def _key(name: str) -> str:
    return f"models/{validate_name(name)}/{NOTES_FILE}"
