"""Ref tables and logs: a model's versions, tags and ``latest``, and their history."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from mreg.errors import (
    CorruptRefsError,
    MregError,
    RemoteError,
)
from mreg.records.limits import MAX_LOG_FIELD
from mreg.records.names import Digest, is_digest, validate_tag
from mreg.records.versions import is_version, parse_version
from mreg.text import printable

TABLE_HEADER = "# mreg refs 1"
CHAIN_LINE = re.compile(r"chain (0|[1-9][0-9]{0,17}) (sha256:[0-9a-f]{64})", re.ASCII)
"""The head of the model's log, last line of a ``_refs`` on disk (see :mod:`mreg.records.chain`)."""
BOOKKEEPING = "_"
"""Log lines whose ref starts with this keep the hash chain (a seal, a merge), not a ref's history."""

UNSET: Any = object()
"""``expected`` not given: change the ref (a tag, a note) whatever it points at now."""


def _precedence(version: str) -> tuple:
    return parse_version(version).precedence


def _later(candidate: str, current: str | None) -> bool:
    """Would ``candidate`` replace ``current`` as ``latest``? (releases beat pre-releases)"""
    if current is None:
        return True
    new, old = parse_version(candidate), parse_version(current)
    if new.is_prerelease != old.is_prerelease:
        return not new.is_prerelease
    return new.precedence > old.precedence


_EMPTY: Mapping[str, str] = MappingProxyType({})


class RefTable(NamedTuple):
    """A snapshot of one model's refs. Change it with the ``with_*`` methods.

    ``removed`` holds the tombstones: every version ever removed, with the manifest it
    named. A tombstone is never dropped, so a released ``NAME@VERSION`` never names
    other bytes; the version may live again only with that same manifest (a restore).
    ``signatures`` files signature objects (:mod:`mreg.records.evidence`) under the
    manifests they sign: (manifest, signature object) pairs, only ever added.
    """

    versions: Mapping[str, Digest] = _EMPTY  # type: ignore[assignment]  # ascending precedence
    tags: Mapping[str, str] = _EMPTY  # tag -> version
    latest: str | None = None
    removed: Mapping[str, Digest] = _EMPTY  # type: ignore[assignment]  # tombstones: version -> manifest
    signatures: frozenset[tuple[Digest, Digest]] = frozenset()

    def with_version(self, version: str, digest: Digest) -> RefTable:
        """Add a version (the caller has checked it is new) and move ``latest`` if needed."""
        order = list(self.versions)
        index = bisect.bisect_right(order, _precedence(version), key=_precedence)
        order.insert(index, version)
        versions = {v: self.versions.get(v, digest) for v in order}
        latest = version if _later(version, self.latest) else self.latest
        return RefTable(versions, dict(self.tags), latest, dict(self.removed), self.signatures)

    def without_version(self, version: str) -> RefTable:
        """Drop a version, the tags that point at it, and recompute ``latest`` (see :meth:`retired`)."""
        versions = {v: d for v, d in self.versions.items() if v != version}
        tags = {t: v for t, v in self.tags.items() if v != version}
        latest = self.latest
        if latest == version:
            releases = [v for v in versions if not parse_version(v).is_prerelease]
            pool = releases or list(versions)
            latest = pool[-1] if pool else None  # versions are in ascending order
        return RefTable(versions, tags, latest, dict(self.removed), self.signatures)

    def retired(self, version: str) -> RefTable:
        """Remove a version and leave its tombstone: the version can never name other bytes."""
        digest = self.versions[version]
        table = self.without_version(version)
        return table if version in self.removed else table.with_tombstone(version, digest)

    def with_tombstone(self, version: str, digest: Digest) -> RefTable:
        """Record that ``version`` was removed while it named ``digest`` (tombstones only accumulate)."""
        removed = {**self.removed, version: digest}
        ordered = {v: removed[v] for v in sorted(removed, key=_precedence)}
        return RefTable(dict(self.versions), dict(self.tags), self.latest, ordered, self.signatures)

    def with_tag(self, tag: str, version: str) -> RefTable:
        """Point ``tag`` at ``version`` (which must exist)."""
        return RefTable(dict(self.versions), {**self.tags, tag: version}, self.latest, dict(self.removed), self.signatures)

    def without_tag(self, tag: str) -> RefTable:
        """Remove a tag."""
        return RefTable(dict(self.versions), {t: v for t, v in self.tags.items() if t != tag}, self.latest, dict(self.removed), self.signatures)

    def with_signatures(self, pairs: Iterable[tuple[Digest, Digest]]) -> RefTable:
        """File signature objects under the manifests they sign (signatures are only added)."""
        return self._replace(signatures=self.signatures | frozenset(pairs))

    def version_of(self, digest: str) -> str | None:
        """The version that names, or named before its removal, a manifest."""
        found = next((v for v, d in self.versions.items() if d == digest), None)
        return found if found is not None else next((v for v, d in self.removed.items() if d == digest), None)

    def signed(self, digest: str) -> list[Digest]:
        """The signature objects filed under a manifest, sorted."""
        return sorted(signature for target, signature in self.signatures if target == digest)

    def reuse(self, version: str, digest: str) -> str | None:
        """Why ``version`` may not name ``digest`` here (None: it may): it names, or was
        removed while it named, another manifest."""
        live, gone = self.versions.get(version), self.removed.get(version)
        if live is not None and live != digest:
            return f"{version} is {live[:15]}"
        if gone is not None and gone != digest:
            return f"{version} was removed while it was {gone[:15]}, and a version number is never reused"
        return None

    def same_precedence(self, version: str) -> str | None:
        """An existing version with the precedence of ``version`` (differing only in build)."""
        order = list(self.versions)
        key = _precedence(version)
        index = bisect.bisect_left(order, key, key=_precedence)
        if index < len(order) and _precedence(order[index]) == key:
            return order[index]
        return None

    @property
    def highest(self) -> str | None:
        """The version of highest precedence (pre-releases included), or None."""
        return next(reversed(list(self.versions)), None)

    def tags_of(self, version: str) -> list[str]:
        """The tags that point at ``version``, sorted."""
        return sorted(t for t, v in self.tags.items() if v == version)

    def encode(self) -> bytes:
        """The text stored in ``_refs``."""
        lines = [TABLE_HEADER]
        lines += [f"version {v} {d}" for v, d in self.versions.items()]
        lines += [f"removed {v} {d}" for v, d in self.removed.items()]
        lines += [f"tag {t} {self.tags[t]}" for t in sorted(self.tags)]
        lines += [f"signature {target} {signature}" for target, signature in sorted(self.signatures)]
        if self.latest is not None:
            lines.append(f"latest {self.latest}")
        return ("\n".join(lines) + "\n").encode("ascii")

    @classmethod
    def parse(cls, text: str, where: str = "ref table") -> RefTable:
        """Parse ``_refs`` text (cheaply: fsck calls :meth:`problems` for a full check).

        A ``chain`` line (the log's head, which only a store on disk writes) is checked
        for its form and left to :func:`mreg.records.chain.table_head`.
        """
        versions: dict[str, Digest] = {}
        removed: dict[str, Digest] = {}
        signatures: set[tuple[Digest, Digest]] = set()
        tags: dict[str, str] = {}
        latest = None
        lines = text.splitlines()
        if not lines or lines[0] != TABLE_HEADER:
            raise CorruptRefsError(f"{where} is corrupt: missing '{TABLE_HEADER}' header")
        for number, line in enumerate(lines[1:], start=2):
            kind, _, rest = line.partition(" ")
            left, _, right = rest.partition(" ")
            if kind == "version" and right:
                versions[left] = Digest(right)
            elif kind == "removed" and right and " " not in right:
                removed[left] = Digest(right)
            elif kind == "signature" and right and " " not in right:
                signatures.add((Digest(left), Digest(right)))
            elif kind == "chain" and CHAIN_LINE.fullmatch(line):
                continue
            elif kind == "tag" and right:
                tags[left] = right
            elif kind == "latest" and left and not right:
                latest = left
            else:
                raise CorruptRefsError(f"{where} is corrupt at line {number}: {printable(line)}")
        return cls(versions, tags, latest, removed, frozenset(signatures))

    def problems(self) -> list[str]:
        """Everything wrong with this table: the one rule that fsck, pull, fallbacks, buckets
        and the web apply, to tables of this store and of others alike.

        Versions valid and in strictly ascending precedence (no two that only build
        metadata sets apart), every digest valid, tags valid names (neither ``latest``
        nor version-like) that point at listed versions, and ``latest`` the highest
        release (else the highest pre-release).
        """
        found = [f"invalid version '{printable(v)}'" for v in (*self.versions, *self.removed) if not is_version(v)]
        found += [
            f"version {printable(v)} points at invalid digest '{printable(d)}'"
            for v, d in (*self.versions.items(), *self.removed.items())
            if not is_digest(d)
        ]
        if found:
            return found
        found += [
            f"version {v} is {self.versions[v]} but its tombstone names {d}"
            for v, d in self.removed.items()
            if self.versions.get(v, d) != d
        ]
        named = set(self.versions.values()) | set(self.removed.values())
        found += [
            f"signature {printable(s)} is filed under {printable(t)}, which no version names"
            for t, s in sorted(self.signatures)
            if not (is_digest(t) and is_digest(s)) or t not in named
        ]
        parsed = [parse_version(v) for v in self.versions]  # once each: tables can hold 10^5 versions
        keys = [version.precedence for version in parsed]
        pairs = list(zip(self.versions, keys))
        if any(a[1] > b[1] for a, b in zip(pairs, pairs[1:])):
            found.append("versions are not in precedence order")
        twins = [(a[0], b[0]) for a, b in zip(pairs, pairs[1:]) if a[1] == b[1]]
        found += [f"versions {a} and {b} differ only in build metadata" for a, b in twins]
        for tag, version in self.tags.items():
            try:
                validate_tag(tag)
            except MregError as exc:
                found.append(exc.message)
            if version not in self.versions:
                found.append(f"tag {printable(tag)} points at missing version {printable(version)}")
        expected = None
        for version in self.versions:
            expected = version if _later(version, expected) else expected
        if self.latest != expected:
            found.append(f"latest is {printable(self.latest)} but should be {expected}")
        return found


class LogEntry(NamedTuple):
    """One change of one ref, as recorded in the model's log."""

    time: str
    author: str
    ref: str  # "versions/1.0.0", "tags/production" or "latest"
    old: str | None
    new: str | None
    message: str = ""

    def to_dict(self) -> dict[str, str | None]:
        return self._asdict()


def changes(old: RefTable, new: RefTable) -> list[tuple[str, str | None, str | None]]:
    """The ref changes from ``old`` to ``new`` as (ref, old value, new value)."""
    found: list[tuple[str, str | None, str | None]] = []
    changed = (old.versions.keys() ^ new.versions.keys()) | _differing(old.versions, new.versions)
    for version in sorted(changed, key=_precedence):  # few: no need to parse the others
        found.append((f"versions/{version}", old.versions.get(version), new.versions.get(version)))
    added, dropped = new.signatures - old.signatures, old.signatures - new.signatures
    if added or dropped:  # a signature's ref is the version of its manifest (one, ever: tombstones)
        owner = {d: v for table in (old, new) for mapping in (table.removed, table.versions) for v, d in mapping.items()}
        found += [(f"signatures/{owner.get(target)}", None, signature) for target, signature in sorted(added)]
        found += [(f"signatures/{owner.get(target)}", signature, None) for target, signature in sorted(dropped)]
    gone = (old.removed.keys() ^ new.removed.keys()) | _differing(old.removed, new.removed)
    for version in sorted(gone, key=_precedence):
        implied = old.versions.get(version) == new.removed.get(version) and version not in new.versions
        if not implied:  # a removal logs its version's entry, which implies the tombstone; one that arrived alone is logged
            found.append((f"removed/{version}", old.removed.get(version), new.removed.get(version)))
    for tag in sorted(old.tags.keys() | new.tags.keys()):
        if old.tags.get(tag) != new.tags.get(tag):
            found.append((f"tags/{tag}", old.tags.get(tag), new.tags.get(tag)))
    if old.latest != new.latest:
        found.append(("latest", old.latest, new.latest))
    return found


def _differing(old: Mapping[str, str], new: Mapping[str, str]) -> set[str]:
    return {key for key in old.keys() & new.keys() if old[key] != new[key]}


def parse_log(text: str, where: str) -> tuple[list[LogEntry], list[str]]:
    """Log entries from ``_log`` text, and a description of each unreadable line
    (the chain's bookkeeping lines, a seal or a merge, are no ref's history: skipped)."""
    entries, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = parse_log_line(line)
        if entry is None:
            problems.append(f"{where} line {number} is unreadable")
        elif not entry.ref.startswith(BOOKKEEPING):
            entries.append(entry)
    return entries, problems


def parse_log_line(line: str) -> LogEntry | None:
    """One ``_log`` line, or None if it cannot be read."""
    import json  # start-up: only log readers need it, not `mreg show`

    try:
        return log_entry(json.loads(line))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


def checked_table(table: RefTable, name: str, location: str) -> RefTable:
    """``table`` if it has no :meth:`~RefTable.problems`, else RemoteError naming the model."""
    problems = table.problems()
    if problems:
        raise RemoteError(f"{location}: the refs of '{name}' are invalid ({printable(problems[0], 120)}); skipped")
    return table


def log_entry(raw: Any) -> LogEntry:
    """A log line's JSON value as a LogEntry, every field of the right type.

    Raises:
        ValueError: a field is missing, of the wrong type, or too long.
    """
    if not isinstance(raw, dict):
        raise ValueError("a log line is not a JSON object")
    values: dict[str, str | None] = {}
    for key in LogEntry._fields:
        value = raw.get(key, "" if key == "message" else None)
        optional = key in ("old", "new")
        if not (isinstance(value, str) or (optional and value is None)):
            raise ValueError(f"log field {key} has the wrong type")
        if value is not None and len(value) > MAX_LOG_FIELD:
            raise ValueError(f"log field {key} is too long")
        values[key] = value
    time, author, ref, message = (str(values[key]) for key in ("time", "author", "ref", "message"))
    return LogEntry(time, author, ref, values["old"], values["new"], message)
