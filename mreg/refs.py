"""Refs: the mutable names of a model, and their history.

Each model has a directory ``.mreg/models/<name>/`` holding three files whose names
start with ``_``, a character no name segment may start with, so a model's files
never collide with a nested model's directory:

``_refs``
    The model's ref table, in text::

        # mreg refs 1
        version 1.0.0 sha256:...      (versions, ascending precedence)
        tag production 1.0.0          (tags point at versions)
        latest 1.0.0

    One file per model makes a change that touches several refs (a version, its
    tags and ``latest``) one atomic rename. Keeping it sorted means reading needs
    no version parsing, so resolving and listing stay fast at 10,000 versions.
``_log``
    The model's reflog: one JSON line per ref change (old, new, time, author, message).
``_lock``
    Held with ``flock`` by whoever changes the table.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, NamedTuple

from .errors import CorruptRefsError, printable
from .fileutil import FileLock, append_line, write_atomically
from .names import Digest, is_digest, validate_name
from .versions import is_version, parse_version

TABLE_HEADER = "# mreg refs 1"
TABLE_FILE = "_refs"
LOG_FILE = "_log"
LOCK_FILE = "_lock"


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
    """A snapshot of one model's refs. Change it with the ``with_*`` methods."""

    versions: Mapping[str, Digest] = _EMPTY  # type: ignore[assignment]  # ascending precedence
    tags: Mapping[str, str] = _EMPTY  # tag -> version
    latest: str | None = None

    def with_version(self, version: str, digest: Digest) -> RefTable:
        """Add a version (the caller has checked it is new) and move ``latest`` if needed."""
        order = list(self.versions)
        index = bisect.bisect_right(order, _precedence(version), key=_precedence)
        order.insert(index, version)
        versions = {v: self.versions.get(v, digest) for v in order}
        latest = version if _later(version, self.latest) else self.latest
        return RefTable(versions, dict(self.tags), latest)

    def without_version(self, version: str) -> RefTable:
        """Drop a version, the tags that point at it, and recompute ``latest``."""
        versions = {v: d for v, d in self.versions.items() if v != version}
        tags = {t: v for t, v in self.tags.items() if v != version}
        latest = self.latest
        if latest == version:
            releases = [v for v in versions if not parse_version(v).is_prerelease]
            pool = releases or list(versions)
            latest = pool[-1] if pool else None  # versions are in ascending order
        return RefTable(versions, tags, latest)

    def with_tag(self, tag: str, version: str) -> RefTable:
        """Point ``tag`` at ``version`` (which must exist)."""
        return RefTable(dict(self.versions), {**self.tags, tag: version}, self.latest)

    def without_tag(self, tag: str) -> RefTable:
        """Remove a tag."""
        return RefTable(dict(self.versions), {t: v for t, v in self.tags.items() if t != tag}, self.latest)

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
        return next(reversed(self.versions), None) if self.versions else None

    def tags_of(self, version: str) -> list[str]:
        """The tags that point at ``version``, sorted."""
        return sorted(t for t, v in self.tags.items() if v == version)

    def encode(self) -> bytes:
        """The text stored in ``_refs``."""
        lines = [TABLE_HEADER]
        lines += [f"version {v} {d}" for v, d in self.versions.items()]
        lines += [f"tag {t} {self.tags[t]}" for t in sorted(self.tags)]
        if self.latest is not None:
            lines.append(f"latest {self.latest}")
        return ("\n".join(lines) + "\n").encode("ascii")

    @classmethod
    def parse(cls, text: str, where: str = "ref table") -> RefTable:
        """Parse ``_refs`` text (cheaply: fsck calls :meth:`problems` for a full check)."""
        versions: dict[str, Digest] = {}
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
            elif kind == "tag" and right:
                tags[left] = right
            elif kind == "latest" and left and not right:
                latest = left
            else:
                raise CorruptRefsError(f"{where} is corrupt at line {number}: {printable(line)}")
        return cls(versions, tags, latest)

    def problems(self) -> list[str]:
        """Everything wrong with this table (used by fsck)."""
        found = [f"invalid version '{printable(v)}'" for v in self.versions if not is_version(v)]
        found += [f"version {v} points at invalid digest '{printable(d)}'" for v, d in self.versions.items() if not is_digest(d)]
        if found:
            return found
        order = list(self.versions)
        if order != sorted(order, key=_precedence):
            found.append("versions are not in precedence order")
        found += [f"tag {t} points at missing version {v}" for t, v in self.tags.items() if v not in self.versions]
        expected = None
        for version in order:
            expected = version if _later(version, expected) else expected
        if self.latest != expected:
            found.append(f"latest is {self.latest} but should be {expected}")
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
    for tag in sorted(old.tags.keys() | new.tags.keys()):
        if old.tags.get(tag) != new.tags.get(tag):
            found.append((f"tags/{tag}", old.tags.get(tag), new.tags.get(tag)))
    if old.latest != new.latest:
        found.append(("latest", old.latest, new.latest))
    return found


def _differing(old: Mapping[str, str], new: Mapping[str, str]) -> set[str]:
    return {key for key in old.keys() & new.keys() if old[key] != new[key]}


class RefUpdate:
    """An open change to one model's refs, made while its lock is held.

    Set ``table``; the change is written when the ``update`` block ends, or earlier
    by :meth:`commit` (to write while another lock is still held).
    """

    def __init__(self, directory: Path, table: RefTable, entry: LogEntry) -> None:
        self.directory = directory
        self.original = table
        self.table = table
        self._entry = entry  # time, author and message for the log
        self._imported: list[LogEntry] = []

    def import_log(self, entries: Iterable[LogEntry]) -> None:
        """Merge another store's history of this model into its log (at commit)."""
        self._imported.extend(entries)

    def commit(self) -> None:
        """Write the new table in one rename, and log every changed ref."""
        import json  # only writers and log readers need it: keep `mreg show` quick

        diff = changes(self.original, self.table)
        if not diff and not self._imported:
            return
        # Log first, in one write, then rename the table (git's order): a failure (a
        # full disk) leaves table and log as they were; a kill in between leaves a
        # line for a change that did not happen, never a change without its line.
        entries = [self._entry._replace(ref=ref, old=old, new=new) for ref, old, new in diff]
        log = self.directory / LOG_FILE
        size = _file_size(log)  # None: no log yet
        saved = log.read_bytes() if self._imported and size is not None else None
        try:
            if self._imported:
                self._merge_log()
            if diff:
                append_line(log, "\n".join(json.dumps(e.to_dict(), sort_keys=True) for e in entries))
                write_atomically(self.directory / TABLE_FILE, self.table.encode(), temp=self.directory / (TABLE_FILE + ".tmp"))
        except BaseException:
            _restore(log, size, saved)
            raise
        self.original = self.table

    def _merge_log(self) -> None:
        """Rewrite the log as the union of its entries and the imported ones, by time."""
        import json

        path = self.directory / LOG_FILE
        try:
            existing, _ = parse_log(path.read_text(encoding="utf-8", errors="replace"), str(path))
        except FileNotFoundError:
            existing = []
        merged, known = list(existing), set(existing)
        for entry in self._imported:
            if entry not in known:
                known.add(entry)
                merged.append(entry)
        merged.sort(key=lambda e: e.time)  # stable: entries of the same second keep their order
        lines = "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in merged)
        write_atomically(path, lines.encode("utf-8"), temp=self.directory / (LOG_FILE + ".tmp"))
        self._imported = []


def log_then_replace(log: Path, entries: list[LogEntry], target: Path, data: bytes) -> None:
    """Append ``entries`` to ``log`` in one write, then replace ``target`` with ``data``
    (git's order, as :meth:`RefUpdate.commit` does): a failure puts the log back, and a
    kill in between leaves a line for a change that did not happen, never a change
    without its line. The caller holds the lock that covers both files."""
    import json

    size = _file_size(log)
    try:
        if entries:
            append_line(log, "\n".join(json.dumps(e.to_dict(), sort_keys=True) for e in entries))
        write_atomically(target, data, temp=target.with_name(target.name + ".tmp"))
    except BaseException:
        _restore(log, size, None)
        raise


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _restore(path: Path, size: int | None, saved: bytes | None) -> None:
    """Put a log back as it was after a failed change: its ``saved`` bytes (after a
    merge), its first ``size`` bytes (after an append), or absent.

    Best effort: the disk may be gone.
    """
    try:
        if size is None:
            path.unlink(missing_ok=True)
        elif saved is not None:
            write_atomically(path, saved, temp=path.with_name(LOG_FILE + ".tmp"))
        else:
            os.truncate(path, size)
    except OSError:
        pass


class RefStore:
    """Every model's refs and logs under ``root/models``."""

    def __init__(self, root: Path) -> None:
        self.models_dir = root / "models"
        self._models = str(self.models_dir)

    def model_dir(self, name: str) -> Path:
        """The directory of a model (the name is validated, so it stays inside the store)."""
        return self.models_dir.joinpath(*validate_name(name).split("/"))

    def model_file(self, name: str, file: str) -> str:
        """The path of one of a model's files (``_refs``, ``_notes``), as a plain string:
        ``ls`` and ``du`` read a thousand models', and pathlib or ``os.path.join`` cost
        more than the open. The name is validated, so it stays inside the store."""
        return f"{self._models}/{validate_name(name)}/{file}"

    def read_file(self, name: str, file: str) -> bytes | None:
        """One of a model's files (``_refs``, ``_log``, ``_notes``) whole, or None if it does not exist.

        Every read of them goes through here, so a reader that must not follow links
        (the web server) overrides this one method.
        """
        try:
            with open(self.model_file(name, file), "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def read(self, name: str) -> RefTable:
        """The model's current refs (empty when the model does not exist)."""
        try:
            data = self.read_file(name, TABLE_FILE)
            if data is None:
                return RefTable()
            text = data.decode("ascii")
        except (UnicodeDecodeError, OSError) as exc:
            raise CorruptRefsError(f"refs of '{name}' are unreadable: {exc}") from None
        return RefTable.parse(text, where=f"ref table of '{name}'")

    def names(self) -> list[str]:
        """Every model that has a ref table, sorted."""
        found: list[str] = []
        _find_tables(str(self.models_dir), "", found)
        return sorted(found)

    @contextmanager
    def update(self, name: str, *, author: str, message: str, time: str) -> Iterator[RefUpdate]:
        """Change a model's refs atomically under its lock.

        Yields a :class:`RefUpdate`; set its ``table``. When the block ends without an
        exception the new table replaces the old one in one rename, and every changed
        ref is appended to the model's log.
        """
        directory = self.model_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(directory / LOCK_FILE, what=f"model '{name}'"):
            update = RefUpdate(directory, self.read(name), LogEntry(time, author, "", None, None, message))
            yield update
            update.commit()

    def log(self, name: str) -> tuple[list[LogEntry], list[str]]:
        """The model's log, oldest first, and a description of each unreadable line."""
        data = self.read_file(name, LOG_FILE)
        if data is None:
            return [], []
        return parse_log(data.decode("utf-8", errors="replace"), f"log of '{name}'")

    def recent_log(self, name: str, limit: int | None = None) -> list[LogEntry]:
        """The model's newest log entries first, at most ``limit`` of them (unreadable lines skipped).

        Only the lines shown are parsed, so ``log -n 20`` stays fast with 10,000 versions.
        """
        data = self.read_file(name, LOG_FILE)
        if data is None:
            return []
        text = data.decode("utf-8", errors="replace")
        entries: list[LogEntry] = []
        for line in reversed(text.splitlines()):
            if limit is not None and len(entries) >= limit:
                break
            entry = _log_entry(line)
            if entry is not None:
                entries.append(entry)
        return entries


def _find_tables(directory: str, prefix: str, found: list[str]) -> None:
    """Add the names of the models under ``directory`` (one scandir per directory)."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name == TABLE_FILE and prefix and entry.is_file():
            found.append(prefix[:-1])
        elif not entry.name.startswith("_") and entry.is_dir(follow_symlinks=False):
            _find_tables(entry.path, prefix + entry.name + "/", found)


def parse_log(text: str, where: str) -> tuple[list[LogEntry], list[str]]:
    """Log entries from ``_log`` text, and a description of each unreadable line."""
    entries, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _log_entry(line)
        if entry is None:
            problems.append(f"{where} line {number} is unreadable")
        else:
            entries.append(entry)
    return entries, problems


def _log_entry(line: str) -> LogEntry | None:
    """One ``_log`` line, or None if it cannot be read."""
    import json

    from .validation import log_entry

    try:
        return log_entry(json.loads(line))
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
