"""Notes: what is learnt about a version after it was registered."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mreg.errors import (
    CorruptObjectError,
    CorruptRefsError,
    InvalidInputError,
)
from mreg.records.codec import canonical_encode, decode_record
from mreg.records.manifest import validate_metrics
from mreg.records.names import Digest, is_digest
from mreg.text import printable

NOTE_KIND = "mreg.note"


NOTE_SCHEMA = 1


NOTES_HEADER = "# mreg notes 1"




MAX_MESSAGE_LENGTH = 64 << 10


MAX_HISTORY = 1000  # notes followed back through `previous` (reachability, fast-forwards)


@dataclass(frozen=True)
class Note:
    """A note on one version: a message, evaluation metrics, a deprecation."""

    target: Digest  # the manifest it annotates
    message: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    deprecated: str | None = None  # the reason, when the version should no longer be used
    author: str = ""
    time: str = ""
    previous: Digest | None = None  # the note this one replaced

    def to_dict(self) -> dict[str, Any]:
        """The JSON view of ``mreg show --json`` (key ``notes``)."""
        return {
            "message": self.message,
            "metrics": dict(self.metrics),
            "deprecated": self.deprecated,
            "author": self.author,
            "time": self.time,
            "previous": self.previous,
        }

    def encode(self) -> bytes:
        """The canonical bytes stored as the note's object."""
        return canonical_encode({"kind": NOTE_KIND, "schema": NOTE_SCHEMA, "target": self.target, **self.to_dict()})

    def same_content(self, other: Note | None) -> bool:
        """True when ``other`` says the same (author, time and history aside)."""
        return other is not None and (self.message, dict(self.metrics), self.deprecated) == (
            other.message,
            dict(other.metrics),
            other.deprecated,
        )

    @classmethod
    def decode(cls, data: bytes, digest: str = "note") -> Note:
        """Parse and validate a note object (it may come from another store)."""
        try:
            raw = decode_record(data, NOTE_KIND)
            _expect(raw.get("schema") == NOTE_SCHEMA, f"unknown note schema {printable(repr(raw.get('schema')))}")
            note = cls(
                target=_digest(raw["target"]),
                message=_text(raw["message"], MAX_MESSAGE_LENGTH),
                metrics=validate_metrics(raw["metrics"]),
                deprecated=None if raw["deprecated"] is None else _text(raw["deprecated"], MAX_MESSAGE_LENGTH),
                author=_text(raw["author"], 1000),
                time=_text(raw["time"], 100),
                previous=None if raw["previous"] is None else _digest(raw["previous"]),
            )
        except (ValueError, TypeError, KeyError, InvalidInputError) as exc:
            raise CorruptObjectError(Digest(digest), f"not a valid note: {exc}") from None
        return note


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def _text(value: Any, limit: int) -> str:
    _expect(isinstance(value, str) and len(value) <= limit, "a text field is not text or too long")
    return value


def _digest(value: Any) -> Digest:
    _expect(isinstance(value, str) and is_digest(value), "a digest field is not a digest")
    return Digest(value)


class NoteChange(NamedTuple):
    """What ``mreg note`` did: the notes before and after (digests; None: no note)."""

    name: str
    version: str
    old: Digest | None
    new: Digest | None
    note: Note | None


def encode_table(table: Mapping[Digest, Digest]) -> bytes:
    """The text of ``_notes``: one ``MANIFEST NOTE`` line per annotated version."""
    lines = [NOTES_HEADER, *(f"{target} {table[target]}" for target in sorted(table))]
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_table(data: bytes, where: str) -> dict[Digest, Digest]:
    """Parse ``_notes`` text, validating every digest (it may come from another store)."""
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise CorruptRefsError(f"{where} is not text") from None
    if not lines or lines[0] != NOTES_HEADER:
        raise CorruptRefsError(f"{where} is corrupt: missing '{NOTES_HEADER}' header")
    table: dict[Digest, Digest] = {}
    for number, line in enumerate(lines[1:], start=2):
        target, _, note = line.partition(" ")
        if not (is_digest(target) and is_digest(note)):
            raise CorruptRefsError(f"{where} is corrupt at line {number}: {printable(line)}")
        table[Digest(target)] = Digest(note)
    return table


def history(load_note: Callable[[Digest], Note | None], head: Digest) -> Iterator[Digest]:
    """``head`` and the notes it replaced, newest first, as far as they can be read."""
    digest: Digest | None = head
    for _ in range(MAX_HISTORY):
        if digest is None:
            return
        yield digest
        note = load_note(digest)
        digest = note.previous if note is not None else None
