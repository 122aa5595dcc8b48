"""Histories in transfers: another store's log brought in, checked to only ever grow.

Every store keeps its own chained log (:mod:`mreg.records.chain`). A push or pull
brings the source's entries the destination lacks into the destination's log, each
marked ``via`` the source (kept, never replayed), then the destination's own entries
for the refs it changed, then a ``_merge`` line naming the source and the head of
its log that was read (``from``, ``theirs_seq``, ``theirs``).

That last line is the destination's memory of the source. The next transfer from the
same source finds it and

- refuses a source whose log no longer has that line at that seq (its history was
  rewritten: what was pulled before must stay as it was);
- reads only the source's entries after it (a bucket: only those log objects);
- judges a tag that differs on the two sides: a *fast-forward* when only the source
  moved it since (its history moves it from the destination's value, and the
  destination has not moved it since the line), a conflict otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from mreg.errors import ConflictError, RemoteError
from mreg.records.chain import MERGE, Head, Link, parse_chain
from mreg.records.limits import MAX_LOG_SIZE
from mreg.records.names import validate_name
from mreg.records.refs import LogEntry, parse_log_line
from mreg.storage.refs import LOG_FILE

if TYPE_CHECKING:
    from mreg.sharing.sources import Source


class HistoryRewrittenError(ConflictError):
    """A store's log no longer holds what an earlier transfer read from it."""


class History(NamedTuple):
    """A model's log as another store has it: the lines an older mreg wrote, and the
    chained ones (all of them, or those from ``since`` on), up to its head."""

    legacy: list[LogEntry]
    links: list[Link]

    @property
    def head(self) -> Head | None:
        return self.links[-1].head if self.links else None

    def entries(self, after: int | None = None) -> list[LogEntry]:
        """Its ref changes, oldest first (only those after seq ``after``, when given)."""
        legacy = self.legacy if after is None else []
        return legacy + [link.entry for link in self.links if not link.bookkeeping and (after is None or link.seq > after)]

    def moves(self, tag: str, after: int | None = None) -> list[tuple[str | None, str | None]]:
        """The moves of ``tags/TAG`` this store made itself (not imported), oldest first."""
        ref = f"tags/{tag}"
        moves = [(e.old, e.new) for e in self.legacy if e.ref == ref] if after is None else []
        mine = [link for link in self.links if link.ref == ref and link.applied and (after is None or link.seq > after)]
        return moves + [(link.fields.get("old"), link.fields.get("new")) for link in mine]


def identity(source: Source) -> str:
    """How a destination names a source in its log: a store on disk by its ``.mreg``
    directory (however it was spelt), any other by its URL."""
    root = getattr(source, "root", None)
    return str(root) if root is not None else source.location


def read_history(source: Source, name: str, head: Head | None = None, since: int | None = None) -> History:
    """A model's log in ``source``, checked: every legacy line readable, the chain intact,
    cut at ``head`` (the committed head its ``_refs`` names: lines past it belong to an
    interrupted change there). A bucket reads only the log objects from seq ``since`` on.

    Raises:
        RemoteError: the log is too large, a line is unreadable, or the chain is broken.
    """
    reader = getattr(source, "history", None)
    if reader is not None:
        found: History = reader(name, since)
        return found
    where = f"log of '{name}' in {source.location}"
    data = source.read_limited(f"models/{validate_name(name)}/{LOG_FILE}", MAX_LOG_SIZE) or b""
    chain = parse_chain(data, where)
    if chain.problems:
        raise RemoteError(f"{chain.problems[0]}; refused")
    legacy = []
    for number, line in enumerate(chain.legacy, start=1):
        entry = parse_log_line(line.decode("utf-8", errors="replace"))
        if entry is None:
            raise RemoteError(f"{where} line {number} is unreadable; refused")
        legacy.append(entry)
    links = chain.links
    if head is not None:
        at = chain.link(head.seq)
        if at is None or at.hash != head.hash:
            raise RemoteError(f"{where} does not hold the head its refs name (seq {head.seq}); refused")
        links = links[: head.seq - links[0].seq + 1]
    return History(legacy, links)


class LogSince(NamedTuple):
    """What a destination's log says since its last ``_merge`` from one source."""

    marker: Link | None  # that line (None: never merged from it, or its log was not chained)
    since: list[Link | LogEntry]  # the destination's entries after it (all of them without one)
    known: set[LogEntry]  # entries the destination has that the source may send again

    def moved(self, tag: str) -> bool:
        """Has the destination moved the tag itself since the marker?"""
        return self.last_move(tag) is not None

    def last_move(self, tag: str) -> tuple[str | None, str | None] | None:
        """The destination's last move of the tag (since the marker), as (old, new)."""
        ref = f"tags/{tag}"
        for item in reversed(self.since):
            if isinstance(item, Link):
                if item.ref == ref and item.applied:
                    return item.fields.get("old"), item.fields.get("new")
            elif item.ref == ref:
                return item.old, item.new
        return None


def log_since(entries: Iterable[Link | LogEntry], source_id: str, known_all: bool) -> LogSince:
    """A destination's log (oldest first) read back to its last ``_merge`` from ``source_id``;
    ``known_all``: every entry counts as known (a store on disk reads its whole log)."""
    items = list(entries)
    marker_at = next((i for i in range(len(items) - 1, -1, -1) if _is_marker(items[i], source_id)), None)
    marker = items[marker_at] if marker_at is not None else None
    since = items[marker_at + 1 :] if marker_at is not None else items
    pool = items if known_all else since
    known = {item.entry if isinstance(item, Link) else item for item in pool if not (isinstance(item, Link) and item.bookkeeping)}
    return LogSince(marker if isinstance(marker, Link) else None, since, known)


def _is_marker(item: Link | LogEntry, source_id: str) -> bool:
    return isinstance(item, Link) and item.ref == MERGE and item.fields.get("from") == source_id


def check_growth(name: str, location: str, marker: Link | None, theirs: History) -> None:
    """Refuse a source whose log no longer holds the head the marker says was read from it.

    Raises:
        HistoryRewrittenError: naming the model, the seq and the source.
    """
    if marker is None:
        return
    seq, expected = marker.fields.get("theirs_seq"), marker.fields.get("theirs")
    if not isinstance(seq, int):
        return
    link = next((link for link in theirs.links if link.seq == seq), None)
    if link is None or link.hash != expected:
        what = "no longer has" if link is None else "has another"
        raise HistoryRewrittenError(
            f"the history of '{name}' in {location} was rewritten: it {what} entry seq {seq}, which was read from it before "
            "(history only grows; nothing was transferred)"
        )


def to_import(theirs: History, since: LogSince, *, source_id: str) -> tuple[list[LogEntry], dict[str, Any] | None]:
    """The source's entries the destination lacks (in the source's order), and the
    ``_merge`` fields that record the source's head."""
    after = since.marker.fields.get("theirs_seq") if since.marker is not None else None
    seen = set(since.known)
    entries = []
    for entry in theirs.entries(after if isinstance(after, int) else None):
        if entry not in seen:
            seen.add(entry)
            entries.append(entry)
    head = theirs.head
    merge = {"from": source_id, "theirs_seq": head.seq, "theirs": head.hash} if head is not None else None
    return entries, merge


def fast_forward(tag: str, ours: str, since: LogSince, theirs: History) -> bool:
    """May the source's value of ``tag`` replace the destination's ``ours`` without force?

    With a marker: the destination has not moved the tag since, and the source moved it
    on from ``ours`` since. Without one (never synced): the destination's last move of
    it is one the source's history also has, and the source moved on from ``ours``.
    """
    if since.marker is not None:
        after = since.marker.fields.get("theirs_seq")
        after = after if isinstance(after, int) else None
        return not since.moved(tag) and any(old == ours for old, _ in theirs.moves(tag, after))
    last = since.last_move(tag)
    transitions = {(e.old, e.new) for e in theirs.entries() if e.ref == f"tags/{tag}"}
    return last is not None and last in transitions and any(old == ours for old, _ in theirs.moves(tag))
