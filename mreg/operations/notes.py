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

import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from mreg.errors import (
    CorruptObjectError,
    CorruptRefsError,
    InvalidInputError,
    NotFoundError,
    RefChangedError,
    UnknownRefError,
)
from mreg.operations.listing import version_view
from mreg.records.manifest import validate_metrics
from mreg.records.notes import (
    MAX_MESSAGE_LENGTH,
    Note,
    NoteChange,
    history,
)
from mreg.records.refs import UNSET, LogEntry
from mreg.storage.identity import current_author, now_utc

if TYPE_CHECKING:

    from mreg.records.names import Digest
    from mreg.store.store import Store

def reachable(store: Store, name: str) -> set[Digest]:
    """The note objects a model's notes keep alive: each current note and its history (gc)."""
    objects = store.objects

    def local(digest: Digest) -> Note | None:
        return Note.decode(objects.read_bytes(digest), digest) if objects.contains(digest) else None

    found: set[Digest] = set()
    for head in store.refs.read_notes(name).values():
        found.update(d for d in history(local, head) if objects.contains(d))
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
            raise InvalidInputError("nothing to note: give a message, a metric, a deprecation or {remove}", options={"remove": "remove=True"})
        return edits


def annotate(store: Store, ref: str, edit: NoteEdit, *, expected: Digest | None = UNSET) -> NoteChange:
    """Add to, change or remove the note on a version; see :meth:`mreg.Registry.note`."""
    view = version_view(store, ref)
    edits = edit.fields()
    author, time = current_author(), now_utc()
    with store.writing(), store.refs.update(view.name, author=author, message="", time=time) as update:
        if update.table.versions.get(view.version) != view.digest:
            raise UnknownRefError(ref, f"{view.name}@{view.version} is no longer registered")
        table = store.refs.read_notes(view.name)
        current = table.get(view.digest)
        if expected is not UNSET and current != expected:
            raise RefChangedError(
                f"the note on {view.name}@{view.version} is {current or 'absent'}, not {expected or 'absent'}: "
                "it was changed by someone else"
            )
        old = store.note(current) if current is not None else None
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
            new = store.objects.add_bytes(note.encode()).digest
            table[view.digest] = new
        store.refs.write_notes(view.name, table, [LogEntry(time, author, f"notes/{view.version}", current, new)])
    return NoteChange(view.name, view.version, current, new, note)


def _checked_text(text: str, what: str) -> str:
    if len(text) > MAX_MESSAGE_LENGTH:
        raise InvalidInputError(f"the {what} is longer than {MAX_MESSAGE_LENGTH} characters")
    return text


# --------------------------------------------------------------------- for readers


class DeprecatedVersionWarning(UserWarning):
    """A version that a note deprecates was loaded."""


def warn_if_deprecated(store: Store, ref: str) -> None:
    """Warn through :mod:`warnings` when a note deprecates the version ``ref`` names."""
    view = version_view(store, ref)
    if view.deprecated:
        message = f"{view.name}@{view.version} is deprecated: {view.deprecated}"
        warnings.warn(message, DeprecatedVersionWarning, stacklevel=3)


def note_finder(store: Store, name: str) -> Callable[[Digest], Note | None]:
    """A function that gives the note a version of this model has here, by manifest
    digest (the model's notes are read once; notes are loaded only for noted versions)."""
    table = store.refs.read_notes(name)
    if not table:
        return lambda digest: None

    def find(digest: Digest) -> Note | None:
        note = table.get(digest)
        return store.note(note) if note is not None else None

    return find


def check(store: Store, name: str) -> tuple[set[Digest], list[str]]:
    """fsck of a model's notes: the objects they keep alive, and what is wrong with them."""
    try:
        table = store.refs.read_notes(name)
        found = reachable(store, name)
    except (CorruptRefsError, CorruptObjectError) as exc:
        return set(), [f"model '{name}': {exc}"]
    problems = []
    for target, head in table.items():
        if head not in found:
            problems.append(f"model '{name}': the note on {target} ({head}) is missing")
        elif Note.decode(store.objects.read_bytes(head), head).target != target:
            problems.append(f"model '{name}': the note {head} is filed under {target} but annotates another version")
    return found, problems
