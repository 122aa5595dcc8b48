"""Notes: what is learnt about a version after it was registered, as ``git notes`` do.

A version is immutable, but evaluation results, review comments and deprecations
arrive later. A note holds them:

- The note itself is an immutable object in the object store: canonical msgpack
  (``kind: mreg.note``) naming the manifest it annotates, a message, evaluation
  metrics, an optional deprecation reason, who wrote it and when, and the note it
  replaced (``previous``). It travels as any object does, and its digest changes
  with every edit.
- ``models/NAME/_notes`` maps each annotated manifest digest to its current note
  (text, one ``MANIFEST NOTE`` line each). It changes under the model's lock, by
  one atomic rename, with compare-and-swap, and every change is logged in the
  model's ``_log`` as the ref ``notes/VERSION``.

Notes are keyed by the manifest's digest, not its version: a version removed and
registered again with the same content finds its notes again, as a git note
follows its object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple

from .errors import (
    CorruptObjectError,
    CorruptRefsError,
    InvalidInputError,
    NotFoundError,
    RefChangedError,
    UnknownRefError,
    printable,
)
from .names import Digest, is_digest
from .objects import canonical_encode, validate_metrics
from .refs import LOG_FILE, LogEntry, log_then_replace
from .registration import current_author, now_utc
from .tagging import UNSET

if TYPE_CHECKING:
    from pathlib import Path

    from .registry import Registry

NOTE_KIND = "mreg.note"
NOTE_SCHEMA = 1
NOTES_FILE = "_notes"
NOTES_HEADER = "# mreg notes 1"
MAX_NOTE_SIZE = 1 << 20
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
        import msgpack

        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
            _expect(isinstance(raw, dict) and raw.get("kind") == NOTE_KIND, "it is not an mreg note")
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


# ----------------------------------------------------------------- the notes table


def encode_table(table: Mapping[str, str]) -> bytes:
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


def table_path(registry: Registry, name: str) -> Path:
    """Where a model's notes table is (``models/NAME/_notes``)."""
    return registry.refs.model_dir(name) / NOTES_FILE


def read_table(registry: Registry, name: str) -> dict[Digest, Digest]:
    """A model's notes here: manifest digest -> note digest (empty without notes)."""
    data = registry.refs.read_file(name, NOTES_FILE)
    if data is None:
        return {}
    return parse_table(data, f"notes of '{name}'")


def load(registry: Registry, digest: Digest) -> Note:
    """Read a note object (fetched from a fallback if needed) and validate it."""
    if not registry.objects.contains(digest) and registry.fallbacks:
        registry.fetch(digest)
    return Note.decode(registry.objects.read_bytes(digest), digest)


def note_of(registry: Registry, name: str, target: Digest) -> Note | None:
    """The current note on the version whose manifest is ``target``, if any."""
    digest = read_table(registry, name).get(target)
    return load(registry, digest) if digest is not None else None


def history(load_note: Callable[[Digest], Note | None], head: Digest) -> Iterator[Digest]:
    """``head`` and the notes it replaced, newest first, as far as they can be read."""
    digest: Digest | None = head
    for _ in range(MAX_HISTORY):
        if digest is None:
            return
        yield digest
        note = load_note(digest)
        digest = note.previous if note is not None else None


def reachable(registry: Registry, name: str) -> set[Digest]:
    """The note objects a model's notes keep alive: each current note and its history (gc)."""
    store = registry.objects

    def local(digest: Digest) -> Note | None:
        return Note.decode(store.read_bytes(digest), digest) if store.contains(digest) else None

    found: set[Digest] = set()
    for head in read_table(registry, name).values():
        found.update(d for d in history(local, head) if store.contains(d))
    return found


# ------------------------------------------------------------------ changing notes


class NoteEdit(NamedTuple):
    """A change to a note: the fields to set (None: keep), or ``remove`` it whole."""

    message: str | None = None
    metrics: Mapping[str, float] | None = None
    deprecated: str | None = None
    undeprecate: bool = False
    remove: bool = False

    def fields(self) -> dict[str, Any]:
        """The fields to change, validated; ``remove`` excludes every other edit."""
        edits: dict[str, Any] = {}
        if self.undeprecate and self.deprecated is not None:
            raise InvalidInputError("a version cannot be deprecated and undeprecated at once")
        if self.undeprecate:
            edits["deprecated"] = None
        if self.message is not None:
            edits["message"] = _checked_text(self.message, "note message")
        if self.metrics:
            edits["metrics"] = validate_metrics(self.metrics)
        if self.deprecated is not None:
            if not self.deprecated.strip():
                raise InvalidInputError("give a reason to deprecate a version, e.g. 'leaks test data'")
            edits["deprecated"] = _checked_text(self.deprecated, "deprecation reason")
        if self.remove and edits:
            raise InvalidInputError("removing a note cannot be combined with changing it")
        if not self.remove and not edits:
            raise InvalidInputError("nothing to note: give a message, a metric, a deprecation or --remove")
        return edits


def annotate(registry: Registry, ref: str, edit: NoteEdit, *, expected: Digest | None = UNSET) -> NoteChange:
    """Add to, change or remove the note on a version; see :meth:`mreg.Registry.note`."""
    view = registry.get(ref)
    edits = edit.fields()
    author, time = current_author(), now_utc()
    with registry.writing(), registry.refs.update(view.name, author=author, message="", time=time) as update:
        if update.table.versions.get(view.version) != view.digest:
            raise UnknownRefError(ref, f"{view.name}@{view.version} is no longer registered")
        table = read_table(registry, view.name)
        current = table.get(view.digest)
        if expected is not UNSET and current != expected:
            raise RefChangedError(
                f"the note on {view.name}@{view.version} is {current or 'absent'}, not {expected or 'absent'}: "
                "it was changed by someone else"
            )
        old = load(registry, current) if current is not None else None
        if edit.remove:
            if current is None:
                raise NotFoundError(f"{view.name}@{view.version} has no note")
            note, new = None, None
            del table[view.digest]
        else:
            base = old or Note(view.digest)
            added = edits.pop("metrics", {})
            note = replace(base, **edits, metrics={**base.metrics, **added}, author=author, time=time, previous=current)
            if note.same_content(old):
                return NoteChange(view.name, view.version, current, current, old)
            new = registry.objects.add_bytes(note.encode()).digest
            table[view.digest] = new
        write_table(registry, view.name, table, [LogEntry(time, author, f"notes/{view.version}", current, new)])
    return NoteChange(view.name, view.version, current, new, note)


def _checked_text(text: str, what: str) -> str:
    if len(text) > MAX_MESSAGE_LENGTH:
        raise InvalidInputError(f"the {what} is longer than {MAX_MESSAGE_LENGTH} characters")
    return text


def write_table(registry: Registry, name: str, table: Mapping[str, str], entries: list[LogEntry]) -> None:
    """Log the changes, then replace ``_notes`` (the caller holds the model's lock)."""
    path = table_path(registry, name)
    log_then_replace(path.with_name(LOG_FILE), entries, path, encode_table(table))


# --------------------------------------------------------------------- for readers


class DeprecatedVersionWarning(UserWarning):
    """A version that a note deprecates was loaded."""


def warn_if_deprecated(registry: Registry, ref: str) -> None:
    """Warn through :mod:`warnings` when a note deprecates the version ``ref`` names."""
    view = registry.get(ref)
    if view.deprecated:
        import warnings

        message = f"{view.name}@{view.version} is deprecated: {view.deprecated}"
        warnings.warn(message, DeprecatedVersionWarning, stacklevel=3)


def note_finder(registry: Registry, name: str) -> Callable[[Digest], Note | None]:
    """A function that gives the note a version of this model has here, by manifest
    digest (the model's notes are read once; notes are loaded only for noted versions)."""
    table = read_table(registry, name)
    if not table:
        return lambda digest: None

    def find(digest: Digest) -> Note | None:
        note = table.get(digest)
        return load(registry, note) if note is not None else None

    return find


def check(registry: Registry, name: str) -> tuple[set[Digest], list[str]]:
    """fsck of a model's notes: the objects they keep alive, and what is wrong with them."""
    try:
        table = read_table(registry, name)
        found = reachable(registry, name)
    except (CorruptRefsError, CorruptObjectError) as exc:
        return set(), [f"model '{name}': {exc}"]
    problems = []
    for target, head in table.items():
        if head not in found:
            problems.append(f"model '{name}': the note on {target} ({head}) is missing")
        elif Note.decode(registry.objects.read_bytes(head), head).target != target:
            problems.append(f"model '{name}': the note {head} is filed under {target} but annotates another version")
    return found, problems
