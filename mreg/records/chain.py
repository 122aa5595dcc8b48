"""The hash chain of a model's log: every line names the hash of the line before it.

A model's ``_log`` is JSON lines. Each line mreg writes is *chained*:
its canonical JSON (keys sorted, ASCII, no spaces) carries two more fields, ``seq``
(0, 1, 2, ... without a gap) and ``prev`` (``sha256:`` and the SHA-256 of the line
before it, without its line feed), so editing, dropping, inserting or reordering any
line breaks the chain at that line. The first chained line (seq 0) names instead the
hash of every byte before it: the lines an older mreg wrote are *sealed* by it (a new
model's first line names the hash of nothing). The model's head, ``(seq, hash)`` of its last committed line, is the ``chain`` line of its
``_refs``, written in the same rename as the table: lines past it belong to a change
that was interrupted (see :mod:`mreg.storage.chained_log`).

Three kinds of chained lines: *applied* entries (a change to this store's refs, notes
or signatures: what :mod:`mreg.records.replay` replays), *imported* entries (another
store's history, brought by a push or pull, marked ``via``: kept, never replayed) and
bookkeeping (``_merge``: which head of which store a transfer brought in). Every line also has the six fields of a :class:`~mreg.records.refs.LogEntry`, so
readers that know nothing of chains still read it.

Nothing here does I/O: this module encodes, parses and checks bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from mreg.records.hashing import sha256_hex
from mreg.records.limits import MAX_LOG_FIELD
from mreg.records.names import is_digest
from mreg.records.refs import BOOKKEEPING, CHAIN_LINE, LogEntry, log_entry, parse_log_line
from mreg.text import printable

MERGE = "_merge"
EMPTY_HASH = "sha256:" + sha256_hex(b"")
MAX_SEQ = 10**18
_EXTRA = {"seq", "prev", "via", "from", "theirs", "theirs_seq", "target", "approvals", "signature"}
"""Fields a chained line may have besides a LogEntry's six."""


def line_hash(line: bytes) -> str:
    """``sha256:`` and the hex SHA-256 of one line (without its line feed)."""
    return "sha256:" + sha256_hex(line)


def encode_line(fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a chained line (no line feed): what its hash covers."""
    import json  # start-up: only writers and log readers need it, not `mreg show`

    return json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class Head(NamedTuple):
    """The last committed line of a chain: its ``seq`` and hash."""

    seq: int
    hash: str

    def line(self) -> str:
        """The ``chain`` line of ``_refs``."""
        return f"chain {self.seq} {self.hash}"


class Link(NamedTuple):
    """One chained line: its fields, hash and place in the file."""

    seq: int
    prev: str
    hash: str
    fields: Mapping[str, Any]
    number: int  # 1-based line number in the log (or in a bucket's log object)

    @property
    def ref(self) -> str:
        return str(self.fields.get("ref", ""))

    @property
    def via(self) -> str | None:
        """The store an imported entry came from (None: not imported)."""
        via = self.fields.get("via")
        return via if isinstance(via, str) else None

    @property
    def bookkeeping(self) -> bool:
        return self.ref.startswith(BOOKKEEPING)

    @property
    def applied(self) -> bool:
        """A change to this store's refs, notes or signatures (what a replay checks)."""
        return not self.bookkeeping and self.via is None

    @property
    def entry(self) -> LogEntry:
        return log_entry(dict(self.fields))

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)


def table_head(text: str) -> Head | None:
    """The ``chain`` line of ``_refs`` text (None: the table has none: an older mreg wrote it)."""
    for line in reversed(text.splitlines()):
        match = CHAIN_LINE.fullmatch(line)
        if match is not None:
            return Head(int(match[1]), match[2])
    return None


def with_head(table_bytes: bytes, head: Head) -> bytes:
    """An encoded table with its ``chain`` line (``_refs`` as a store on disk writes it)."""
    return table_bytes + (head.line() + "\n").encode("ascii")


def chained(fields: Iterable[Mapping[str, Any]], head: Head | None, legacy: bytes = b"") -> tuple[list[bytes], Head]:
    """Lines that continue a chain after ``head``; without a head, the first one seals
    ``legacy`` (the bytes an older mreg wrote before it). Returns the lines (without
    line feeds) and the new head."""
    lines: list[bytes] = []
    seq, prev = (0, line_hash(legacy)) if head is None else (head.seq + 1, head.hash)
    for item in fields:
        line = encode_line({**item, "seq": seq, "prev": prev})
        lines.append(line)
        seq, prev = seq + 1, line_hash(line)
    return lines, Head(seq - 1, prev) if lines else head  # type: ignore[return-value]


def entry_fields(entry: LogEntry, **extra: Any) -> dict[str, Any]:
    """A log entry's fields for a chained line, with extra fields (``via``, ``target``...)."""
    return {**entry.to_dict(), **{key: value for key, value in extra.items() if value is not None}}


def parse_link(line: bytes, number: int) -> Link | str | None:
    """A chained line, the problem with one that claims to be chained, or None for a
    line of an older mreg (no ``seq``)."""
    import json  # start-up: only writers and log readers need it, not `mreg show`

    try:
        fields = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or "seq" not in fields:
        return None
    seq, prev = fields.get("seq"), fields.get("prev")
    if type(seq) is not int or not 0 <= seq < MAX_SEQ or not (isinstance(prev, str) and is_digest(prev)):
        return f"line {number} has an invalid seq or prev"
    if encode_line(fields) != line:
        return f"line {number} (seq {seq}) is not in canonical form: it was edited"
    unknown = set(fields) - _EXTRA - set(LogEntry._fields)
    if unknown:
        return f"line {number} (seq {seq}) has unknown fields {printable(', '.join(sorted(unknown)), 80)}"
    try:
        log_entry(fields)
    except ValueError as exc:
        return f"line {number} (seq {seq}): {exc}"
    if any(isinstance(value, str) and len(value) > MAX_LOG_FIELD for value in fields.values()):
        return f"line {number} (seq {seq}) has a field that is too long"
    return Link(seq, prev, line_hash(line), fields, number)


class Chain(NamedTuple):
    """A log read as a chain: the lines before the first chained one, the chained lines, what is wrong."""

    legacy: list[bytes]  # lines an older mreg wrote, before the first chained one
    links: list[Link]
    problems: list[str]

    @property
    def head(self) -> Head | None:
        return self.links[-1].head if self.links else None

    @property
    def sealed(self) -> bool:
        return bool(self.links)

    def entries(self) -> list[LogEntry]:
        """Every ref change, oldest first (legacy lines that parse, then chained ones)."""
        found = [entry for line in self.legacy if (entry := parse_log_line(line.decode("utf-8", "replace"))) is not None]
        found = [entry for entry in found if not entry.ref.startswith(BOOKKEEPING)]
        return found + [link.entry for link in self.links if not link.bookkeeping]

    def link(self, seq: int) -> Link | None:
        """The line of a seq (links are contiguous from the first one read)."""
        if not self.links:
            return None
        index = seq - self.links[0].seq
        return self.links[index] if 0 <= index < len(self.links) else None


def parse_chain(data: bytes, where: str) -> Chain:
    """Read a whole ``_log`` and check its chain: its first chained line covers the bytes
    before it, every later line is chained, seqs follow each other and each ``prev`` is the hash
    of the line before. Problems name the first line that breaks."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        return Chain(lines, [], [f"{where} ends without a line feed"])
    legacy: list[bytes] = []
    links: list[Link] = []
    problems: list[str] = []
    offset = 0  # bytes before the current line
    for number, line in enumerate(lines, start=1):
        parsed = parse_link(line, number)
        if isinstance(parsed, str):
            problems.append(f"{where}: {parsed}")
            break
        if parsed is None:
            if links:
                problems.append(f"{where}: line {number} follows seq {links[-1].seq} but is not chained (edited, or written by an older mreg)")
                break
            legacy.append(line)
        else:
            problem = _follows(parsed, links[-1] if links else None, data[:offset])
            if problem:
                problems.append(f"{where}: {problem}")
                break
            links.append(parsed)
        offset += len(line) + 1
    return Chain(legacy, links, problems)


def _follows(link: Link, previous: Link | None, before: bytes) -> str | None:
    """What is wrong with ``link`` coming after ``previous`` (None: nothing)."""
    if previous is None:
        if link.seq != 0:
            return f"line {link.number} has seq {link.seq} but is the first chained line: lines before it were dropped or moved"
        if link.prev != line_hash(before):
            return f"the {_count_lines(before)} line(s) before seq 0, which it seals, were changed since it was written"
        return None
    if link.seq != previous.seq + 1:
        return f"line {link.number} has seq {link.seq} after seq {previous.seq}: a line was dropped, inserted or moved"
    if link.prev != previous.hash:
        return f"line {link.number} (seq {link.seq}) does not follow seq {previous.seq}: that line was edited, or this one moved"
    return None


def continues(links: list[Link], head: Head | None, legacy: bytes = b"") -> str | None:
    """What is wrong with ``links`` as a continuation of ``head`` (without a head: as the
    start of a chain sealing ``legacy``)."""
    if not links:
        return None
    first = links[0]
    if head is None:
        if first.seq != 0 or first.prev != line_hash(legacy):
            return f"the chain does not start at seq 0 after the {_count_lines(legacy)} line(s) before it"
    elif first.seq != head.seq + 1 or first.prev != head.hash:
        return f"seq {first.seq} does not follow seq {head.seq}"
    for previous, link in zip(links, links[1:]):
        if link.seq != previous.seq + 1 or link.prev != previous.hash:
            return f"seq {link.seq} does not follow seq {previous.seq}"
    return None


def _count_lines(data: bytes) -> int:
    return data.count(b"\n")
