"""Checking a model's history: an intact chain whose changes explain the model's state.

:mod:`mreg.records.chain` says whether the lines of a log follow each other. This
module says whether they tell the truth about the model: replaying the *applied*
entries (imported history and bookkeeping aside) must give the current refs, notes and
signatures, and each entry's ``old`` must be what the ref held before it. For a model
whose log was chained from its first line the replay is complete: every ref, note and
signature must come from an entry. For a model whose older lines were sealed, the
refs they set are taken as they are; every ref changed since must agree.

What it finds, and how it reads:

================================  =============================================
an edited, dropped, inserted or   the chain breaks at that line (``prev``, ``seq``
reordered line                    or canonical form)
the tail cut off                  the log lacks the line of the head ``_refs`` names
``_refs`` (or ``_notes``)         the replay gives another value for a ref, note
changed alone                     or signature
a whole tail rewritten            the replay disagrees, unless the rewrite is
consistently                      consistent: then only a store that pulled the
                                  old one (or a signed statement) can tell
================================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mreg.records.names import Digest

if TYPE_CHECKING:
    from mreg.records.chain import Chain, Head, Link
    from mreg.records.refs import RefTable

TABLE_KINDS = ("versions", "removed", "tags", "latest")


@dataclass
class HistoryReport:
    """What a check of a model's history found: ``problems`` mean tampering or damage;
    ``notes`` are for information (an interrupted change, lines older mreg wrote)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head: Head | None = None
    legacy_lines: int = 0
    entries: int = 0

    @property
    def intact(self) -> bool:
        return not self.problems


def check_history(chain: Chain, head: Head | None, table: RefTable, notes: Mapping[Digest, Digest]) -> HistoryReport:
    """Check one model's log against its head and its state (see the module docstring)."""
    report = HistoryReport(problems=list(chain.problems), head=head, legacy_lines=len(chain.legacy), entries=len(chain.links))
    if chain.problems:
        return report  # a broken chain cannot be replayed meaningfully
    committed, pending = _at_head(chain, head, report)
    if report.problems:
        return report
    effective = _effective(pending, notes)  # a note whose _notes was replaced before the head moved: it took effect
    _pending(pending[len(effective) :], table, report)
    committed = committed + effective
    replay = _Replay(complete=not chain.legacy)
    for link in committed:
        if link.applied:
            problem = replay.apply(link)
            if problem:
                report.problems.append(problem)
    report.problems += replay.differences(table, notes)
    if chain.legacy:
        report.notes.append(f"{len(chain.legacy)} log line(s) written before the log was chained are sealed, not replayed")
    return report


def _at_head(chain: Chain, head: Head | None, report: HistoryReport) -> tuple[list[Link], list[Link]]:
    """The lines up to the head, and those past it."""
    if head is None:
        return [], chain.links
    link = chain.link(head.seq)
    if link is None:
        report.problems.append(f"the log ends at seq {chain.head.seq if chain.head else '(none)'} but its head is seq {head.seq}: lines were cut off")
        return [], []
    if link.hash != head.hash:
        report.problems.append(f"the log's line at seq {head.seq} is not the one its head names: the log was rewritten")
        return [], []
    index = head.seq - chain.links[0].seq + 1
    return chain.links[:index], chain.links[index:]


def _effective(pending: list[Link], notes: Mapping[Digest, Digest]) -> list[Link]:
    """The leading lines past the head whose change is visible: notes ``_notes`` already holds
    (what the next change keeps, :mod:`mreg.storage.chained_log`)."""
    found: list[Link] = []
    for link in pending:
        target = link.fields.get("target")
        if not (link.ref.startswith("notes/") and link.applied and isinstance(target, str) and notes.get(Digest(target)) == link.fields.get("new")):
            break
        found.append(link)
    return found


def _pending(pending: list[Link], table: RefTable, report: HistoryReport) -> None:
    """Lines past the head: an interrupted change, unless the table already shows its effect
    (then the head was moved back to hide them)."""
    if not pending:
        return
    for link in pending:
        kind = link.ref.partition("/")[0]
        if link.applied and kind in TABLE_KINDS and link.fields.get("new") is not None:
            if _table_value(table, link.ref) == link.fields.get("new") != link.fields.get("old"):
                report.problems.append(f"seq {link.seq} is past the head in _refs, yet the refs show its change: the head was moved back")
                return
    report.notes.append(f"{len(pending)} log line(s) past the head belong to an interrupted change; the next change drops them")


def _table_value(table: RefTable, ref: str) -> str | None:
    kind, _, key = ref.partition("/")
    if kind == "versions":
        return table.versions.get(key)
    if kind == "removed":
        return table.removed.get(key)
    if kind == "tags":
        return table.tags.get(key)
    return table.latest if ref == "latest" else None


class _Replay:
    """The state the applied entries build, ref by ref."""

    def __init__(self, complete: bool) -> None:
        self.complete = complete  # chained from the first line: every ref starts absent
        self.refs: dict[str, str | None] = {}
        self.notes: dict[str, str | None] = {}  # by manifest
        self.signatures: set[tuple[str, str]] = set()

    def apply(self, link: Link) -> str | None:
        """Apply one entry; the problem if it does not follow what came before."""
        ref, old, new = link.ref, link.fields.get("old"), link.fields.get("new")
        kind = ref.partition("/")[0]
        if kind == "signatures":
            target = link.fields.get("target")
            if old is not None or not isinstance(target, str) or not isinstance(new, str):
                return f"seq {link.seq}: a signature entry must add one signature to one manifest"
            self.signatures.add((target, new))
            return None
        if kind == "notes":
            target = link.fields.get("target")
            if not isinstance(target, str):
                return f"seq {link.seq}: a note entry names no manifest"
            state, key = self.notes, target
        elif kind in TABLE_KINDS:
            state, key = self.refs, ref
        else:
            return f"seq {link.seq}: unknown ref '{ref[:60]}'"
        if (self.complete or key in state) and state.get(key) != old:
            return f"seq {link.seq}: {ref} was {state.get(key) or 'absent'} before it, but the entry says {old or 'absent'}"
        state[key] = new
        if kind == "versions" and new is None and old is not None:
            self.refs.setdefault(f"removed/{ref.partition('/')[2]}", old)  # a removal leaves its tombstone
        return None

    def differences(self, table: RefTable, notes: Mapping[Digest, Digest]) -> list[str]:
        """Where the replayed state is not the model's (only for refs the log covers, unless complete)."""
        found = []
        actual: dict[str, str | None] = {f"versions/{v}": d for v, d in table.versions.items()}
        actual |= {f"removed/{v}": d for v, d in table.removed.items()}
        actual |= {f"tags/{t}": v for t, v in table.tags.items()}
        actual["latest"] = table.latest
        keys = set(actual) | set(self.refs) if self.complete else set(self.refs)
        for key in sorted(keys):
            if self.refs.get(key) != actual.get(key):
                found.append(f"{key} is {actual.get(key) or 'absent'} but the log says {self.refs.get(key) or 'absent'}: changed without a log entry")
        note_keys = set(notes) | set(self.notes) if self.complete else set(self.notes)
        for target in sorted(note_keys):
            if self.notes.get(target) != notes.get(target):  # type: ignore[call-overload]
                found.append(f"the note on {target[:15]} is {notes.get(target) or 'absent'} but the log says {self.notes.get(target) or 'absent'}")  # type: ignore[call-overload]
        extra = {pair for pair in table.signatures if pair not in self.signatures}
        missing = {pair for pair in self.signatures if pair not in table.signatures}
        found += [f"signature {s[:15]} on {t[:15]} is in _refs without a log entry" for t, s in sorted(extra)]
        found += [f"signature {s[:15]} on {t[:15]} is logged but missing from _refs" for t, s in sorted(missing)]
        return found
