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

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mreg.errors import CorruptRefsError
from mreg.records.names import Digest, validate_name
from mreg.records.notes import encode_table, parse_table
from mreg.records.refs import LogEntry, RefTable, changes, parse_log, parse_log_line
from mreg.storage.files import append_line, write_atomically
from mreg.storage.locks import FileLock

TABLE_FILE = "_refs"
LOG_FILE = "_log"
LOCK_FILE = "_lock"
NOTES_FILE = "_notes"


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
        import json  # start-up: only writers and log readers need it, not `mreg show`

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
    import json  # start-up: only writers and log readers need it, not `mreg show`

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
        self.root = root
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

    def read_notes(self, name: str) -> dict[Digest, Digest]:
        """A model's notes table (``_notes``): manifest digest -> note digest (empty without notes)."""
        data = self.read_file(name, NOTES_FILE)
        if data is None:
            return {}
        return parse_table(data, f"notes of '{name}'")

    def write_notes(self, name: str, table: Mapping[Digest, Digest], entries: list[LogEntry]) -> None:
        """Log the changes, then replace ``_notes`` (the caller holds the model's lock)."""
        directory = self.model_dir(name)
        log_then_replace(directory / LOG_FILE, entries, directory / NOTES_FILE, encode_table(table))

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
            entry = parse_log_line(line)
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
