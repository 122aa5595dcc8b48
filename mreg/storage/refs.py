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
    The model's reflog: one JSON line per ref change (old, new, time, author, message),
    each naming the hash of the line before it (a hash chain, :mod:`mreg.records.chain`);
    ``_refs`` ends with the chain's head. Changes are committed by
    :mod:`mreg.storage.chained_log`.
``_lock``
    Held with ``flock`` by whoever changes the table.
``_notes``
    The model's notes (:mod:`mreg.records.notes`), changed under the same lock and
    logged in ``_log``.

No file of a model is read or written through a symbolic link, nor is a model's
directory one: a link planted in a shared store is refused, never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mreg.errors import CorruptRefsError, UnsafeFileError
from mreg.records.names import Digest, validate_name
from mreg.records.notes import encode_table, parse_table
from mreg.records.refs import BOOKKEEPING, LogEntry, RefTable, changes, parse_log, parse_log_line
from mreg.storage.files import read_no_follow
from mreg.storage.locks import FileLock
from mreg.storage.model_files import LOCK_FILE, LOG_FILE, NOTES_FILE, TABLE_FILE

__all__ = ["LOCK_FILE", "LOG_FILE", "NOTES_FILE", "TABLE_FILE", "RefStore", "RefUpdate"]


class RefUpdate:
    """An open change to one model's refs, made while its lock is held.

    Set ``table``; the change is written when the ``update`` block ends, or earlier
    by :meth:`commit` (to write while another lock is still held). Another store's
    history (:meth:`import_log`) is written in the same change.
    """

    def __init__(self, directory: Path, table: RefTable, entry: LogEntry) -> None:
        self.directory = directory
        self.original = table
        self.table = table
        self._entry = entry  # time, author and message for the log
        self._lines: list[dict[str, Any]] = []  # written before the ref changes (imported history, signatures)
        self._extra: dict[str, dict[str, Any]] = {}
        self._merge: dict[str, Any] | None = None  # written last: what the change brought in

    def import_log(self, entries: Iterable[LogEntry], *, via: str | None = None, merge: Mapping[str, Any] | None = None) -> None:
        """Bring another store's history of this model into its log (at commit), marked
        as coming ``via`` that store; ``merge`` (the last line of the change) records
        which head of that store it was (:mod:`mreg.sharing.history`)."""
        from mreg.records.chain import MERGE, entry_fields  # start-up: only writers chain lines, not `mreg show`

        if merge is not None:
            self._merge = {**self._entry._replace(ref=MERGE, old=None, new=None, message="").to_dict(), **merge}
        self._lines += [entry_fields(entry, via=via) for entry in entries]

    def annotate(self, ref: str, **fields: Any) -> None:
        """Extra fields for the log line of a changed ref (the approvals a tag move relied on)."""
        self._extra.setdefault(ref, {}).update(fields)

    def commit(self) -> None:
        """Write the new table in one rename, with a log line for every change."""
        from mreg.storage.chained_log import commit  # start-up: only writers need it, not `mreg show`

        diff = changes(self.original, self.table)
        if not diff and not self._lines:
            return
        lines = self._lines + [self._line(ref, old, new) for ref, old, new in diff]
        lines += [self._merge] if self._merge is not None else []
        commit(self.directory, lines, self.table, {}, time=self._entry.time, author=self._entry.author)
        self.original = self.table
        self._lines, self._extra, self._merge = [], {}, None

    def _line(self, ref: str, old: str | None, new: str | None) -> dict[str, Any]:
        """The log line of one ref change; a signature's names the manifest it signs."""
        from mreg.records.chain import entry_fields  # start-up: only writers chain lines, not `mreg show`

        extra = dict(self._extra.get(ref, {}))
        if ref.startswith("signatures/"):
            version = ref.partition("/")[2]
            extra["target"] = self.table.versions.get(version) or self.table.removed.get(version)
        return entry_fields(self._entry._replace(ref=ref, old=old, new=new), **extra)


def _refuse_linked_directories(models: Path, name: str) -> None:
    """Refuse a model whose directory, or a directory above it in ``models/``, is a link."""
    path = models
    for part in name.split("/"):
        path = path / part
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise UnsafeFileError(f"{path} is a symbolic link: refusing to write through it (someone planted it in the store)")
        except FileNotFoundError:
            return


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

        Every read of them goes through here, so a reader that must also bound what it
        reads (the web server) overrides this one method. A link is refused.
        """
        try:
            return read_no_follow(Path(self.model_file(name, file)))
        except (NotADirectoryError, IsADirectoryError):
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
        _refuse_linked_directories(self.models_dir, validate_name(name))
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
        """Log the changes, then replace ``_notes`` (the caller holds the model's lock).

        Each line names the manifest its note annotates (``target``), found by comparing
        the notes before and after: what a replay of the log checks ``_notes`` against.
        """
        from mreg.records.chain import entry_fields  # start-up: only writers chain lines, not `mreg show`
        from mreg.storage.chained_log import commit

        directory = self.model_dir(name)
        before = self.read_notes(name)
        lines = []
        for entry in entries:
            targets = [t for t in sorted(set(before) | set(table)) if (before.get(t), table.get(t)) == (entry.old, entry.new)]
            lines.append(entry_fields(entry, target=targets[0] if targets else None))
        commit(directory, lines, None, {NOTES_FILE: encode_table(table)}, time=entries[0].time if entries else "", author=entries[0].author if entries else "")

    def read_signatures(self, name: str) -> frozenset[tuple[Digest, Digest]]:
        """A model's signatures: (manifest, signature object) pairs, as its ref table files them."""
        return self.read(name).signatures

    def log(self, name: str) -> tuple[list[LogEntry], list[str]]:
        """The model's log, oldest first, and a description of each unreadable line."""
        data = self.read_file(name, LOG_FILE)
        if data is None:
            return [], []
        return parse_log(data.decode("utf-8", errors="replace"), f"log of '{name}'")

    def recent_log(self, name: str, limit: int | None = None) -> list[LogEntry]:
        """The model's newest log entries first, at most ``limit`` of them (unreadable lines skipped).

        Only the lines shown are decoded and parsed, walking back from the end, so
        ``log -n 20`` stays fast with 10,000 versions.
        """
        data = self.read_file(name, LOG_FILE)
        if data is None:
            return []
        entries: list[LogEntry] = []
        end = len(data)
        while end > 0 and (limit is None or len(entries) < limit):
            start = data.rfind(b"\n", 0, end - 1) + 1  # the line ending at ``end`` (with its line feed)
            entry = parse_log_line(data[start:end].decode("utf-8", errors="replace").rstrip("\r\n"))
            if entry is not None and not entry.ref.startswith(BOOKKEEPING):
                entries.append(entry)
            end = start
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
