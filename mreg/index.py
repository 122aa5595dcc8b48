"""The metadata index: a cache of manifests in SQLite, for queries over many versions.

``.mreg/index.sqlite`` maps a manifest's digest to its bytes, its model's name and
its files' digests and sizes. Manifests are immutable, so an entry never goes stale;
entries are added whenever a manifest is read in a batch and missing, and an index
that is missing or corrupt is simply rebuilt (deleted, then refilled as queries
read manifests). It is never the source of truth: refs say which versions exist,
objects hold their bytes, and every body read from the index is checked against its
digest, so a damaged entry is a cache miss, never a wrong answer. ``fsck`` checks
the derived columns (name, files) against the bodies.

Concurrency: SQLite in WAL mode, with a busy timeout; a write that still fails is
skipped (the next query refills it). ``synchronous=NORMAL`` skips the fsync per
commit: after a power loss the index may lose its newest entries, never its
consistency. ``sqlite3`` is imported only here, by commands that read many
versions, so ``mreg show`` does not pay for it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

import msgpack

from .names import Digest
from .objects import Dataset, FileEntry, Framework, Lineage, Manifest

INDEX_FILE = "index.sqlite"
SCHEMA = 2
_BATCH = 900  # under SQLite's oldest limit of 999 parameters per statement
_TIMEOUT = 5.0  # seconds to wait for another writer; then skip the write

_TABLES = """
CREATE TABLE IF NOT EXISTS manifests (
    digest TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, files TEXT NOT NULL, body BLOB NOT NULL
) WITHOUT ROWID;
"""

FileSizes = tuple[tuple[Digest, int], ...]


class MetadataIndex:
    """The SQLite cache of manifests of one store (opened on first use)."""

    def __init__(self, root: Path) -> None:
        self.path = root / INDEX_FILE
        self._connection: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ reading

    def manifests(self, digests: Iterable[Digest]) -> dict[Digest, Manifest]:
        """The cached manifests among ``digests`` (the others are simply absent)."""
        found = {}
        for digest, body in self._select("SELECT digest, body FROM manifests WHERE digest IN ({})", digests):
            if hashlib.sha256(body).hexdigest() == digest[7:]:
                manifest = _trusted_manifest(body)
                if manifest is not None:
                    found[Digest(digest)] = manifest
        return found

    def files(self, digests: Iterable[Digest]) -> dict[Digest, tuple[int, FileSizes]]:
        """For each cached manifest among ``digests``: its own size, and its files' digests and sizes."""
        found = {}
        for digest, size, files in self._select("SELECT digest, size, files FROM manifests WHERE digest IN ({})", digests):
            try:
                found[Digest(digest)] = (int(size), _parse_files(files))
            except (ValueError, TypeError, AttributeError):
                continue  # a damaged entry is a miss; fsck reports it
        return found

    # ------------------------------------------------------------------ writing

    def record(self, entries: Iterable[tuple[Digest, Manifest, bytes]]) -> None:
        """Cache manifests that were read and validated: ``(digest, manifest, bytes)``."""
        rows = list(entries)
        if not rows:
            return
        try:
            connection = self._connect()
            with connection:
                connection.executemany(
                    "INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?, ?)",
                    [(d, m.name, len(body), _format_files(m), body) for d, m, body in rows],
                )
        except sqlite3.DatabaseError as exc:
            self._failed(exc)

    # ----------------------------------------------------------------- checking

    def problems(self) -> list[str]:
        """Entries whose derived columns disagree with their manifest (fsck)."""
        if not self.path.exists():
            return []
        found = []
        try:
            connection = self._connect()
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                return [f"metadata index {self.path} is corrupt ({check}); delete it to rebuild it"]
            for digest, name, size, files, body in connection.execute("SELECT * FROM manifests"):
                if _entry_problem(digest, (name, size, files), body):
                    found.append(f"metadata index entry {digest} disagrees with its manifest; delete {self.path} to rebuild it")
        except sqlite3.DatabaseError as exc:
            return [f"metadata index {self.path} is unreadable ({exc}); delete it to rebuild it"]
        return found

    def close(self) -> None:
        """Close the connection (it is reopened when needed)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ---------------------------------------------------------------- internals

    def _select(self, query: str, keys: Iterable[str]) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` for ``keys`` (its ``{}`` becomes the list of parameters)."""
        wanted = list(keys)
        if not wanted:
            return
        try:
            connection = self._connect()
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                yield from connection.execute(query.format(",".join("?" * len(batch))), batch).fetchall()
        except sqlite3.DatabaseError as exc:
            self._failed(exc)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, timeout=_TIMEOUT, isolation_level=None, check_same_thread=False)
            try:
                if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(  # a cache: an index of another schema is rebuilt
                        f"BEGIN IMMEDIATE; DROP TABLE IF EXISTS manifests; {_TABLES} PRAGMA user_version={SCHEMA}; COMMIT;"
                    )
                connection.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                connection.close()
                raise
            connection.isolation_level = "DEFERRED"  # `with connection` wraps writes in one transaction
            self._connection = connection
        return self._connection

    def _failed(self, exc: sqlite3.DatabaseError) -> None:
        """Give up on the index for now; delete it if SQLite says it is not a database.

        An OperationalError (busy, read-only, disk full) leaves it alone: the
        caller reads the manifests themselves, and a later query fills the gaps.
        """
        self.close()
        if not isinstance(exc, sqlite3.OperationalError):
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)


def _entry_problem(digest: str, columns: tuple[str, int, str], body: bytes) -> bool:
    if hashlib.sha256(body).hexdigest() != digest[7:]:
        return True
    try:
        manifest = Manifest.decode(body, digest)
    except Exception:  # noqa: BLE001 - any failure means the entry is wrong
        return True
    return columns != (manifest.name, len(body), _format_files(manifest))


def _format_files(manifest: Manifest) -> str:
    """The files column: ``digest size`` per file, one a line."""
    return "\n".join(f"{f.digest} {f.size}" for f in manifest.files)


def _parse_files(text: str) -> FileSizes:
    pairs = (line.split(" ") for line in text.split("\n") if line)
    return tuple((Digest(digest), int(size)) for digest, size in pairs)


def _trusted_manifest(body: bytes) -> Manifest | None:
    """Rebuild a manifest that was validated before it was cached (None if that fails).

    The bytes hash to a digest that ``record`` stored after a full
    :meth:`Manifest.decode`, so only the shape is rebuilt: the frozen dataclasses
    are filled without running their validating ``__init__`` (half the cost, and
    queries rebuild thousands). tests/test_index.py checks this equals ``decode``.
    """
    try:
        raw = msgpack.unpackb(body, raw=False)
        del raw["kind"], raw["schema"]
        lineage = raw.pop("lineage")
        lineage["datasets"] = tuple(Dataset(d["name"], d["digest"], d["uri"]) for d in lineage["datasets"])
        lineage["parents"] = tuple(lineage["parents"])
        raw["lineage"] = _filled(Lineage, lineage)
        raw["files"] = tuple(FileEntry(f["path"], f["digest"], f["size"]) for f in raw["files"])
        if raw["framework"] is not None:
            raw["framework"] = Framework(raw["framework"]["name"], raw["framework"]["version"])
        if raw["input_shape"] is not None:
            raw["input_shape"] = tuple(raw["input_shape"])
        return _filled(Manifest, raw)
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
        return None


def _filled(cls: type, fields: dict[str, Any]) -> Any:
    if fields.keys() != cls.__dataclass_fields__.keys():  # type: ignore[attr-defined]
        raise KeyError("fields")
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance
