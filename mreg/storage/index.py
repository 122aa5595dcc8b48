"""The metadata index: a cache of manifests in SQLite, for queries over many versions.

``.mreg/index.sqlite`` maps a manifest's digest to a *row*: every field of the
manifest and its own size, as one positional msgpack array that is cheap to decode
(queries filter and sort on rows, and rebuild a :class:`Manifest` only for what
they return). Manifests are immutable, so a row never goes stale; rows are added
whenever a manifest is read in a batch and missing, and an index that is missing,
corrupt or of another schema is simply rebuilt.

It is never the source of truth: refs say which versions exist, objects hold their
bytes. A row is written only from a manifest that was read from its object and
fully validated, and it carries a *seal*: SHA-256 of its digest and the row.
Every read checks the seal (about 1 µs), so a damaged row, or one moved to another
digest, is a cache miss that is read from the object again and rewritten, never a
wrong answer. ``fsck`` re-derives every row from its manifest object and reports
any that differ.

Concurrency: SQLite in WAL mode, with a busy timeout; a write that still fails is
skipped (the next query refills it). ``synchronous=NORMAL`` skips the fsync per
commit: after a power loss the index may lose its newest rows, never its
consistency. ``sqlite3`` is imported only here, by commands that read many
versions, so ``mreg show`` does not pay for it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from mreg.errors import MregError
from mreg.records.manifest import Dataset, FileEntry, Framework, Lineage, Manifest
from mreg.records.names import Digest

INDEX_FILE = "index.sqlite"
SCHEMA = 3
_BATCH = 900  # under SQLite's oldest limit of 999 parameters per statement
_TIMEOUT = 5.0  # seconds to wait for another writer; then skip the write

_TABLES = """
CREATE TABLE manifests (
    digest TEXT NOT NULL UNIQUE, name TEXT NOT NULL, family TEXT, metrics TEXT NOT NULL,
    size INTEGER NOT NULL, total INTEGER NOT NULL, files TEXT NOT NULL, row BLOB NOT NULL, seal BLOB NOT NULL
);
CREATE INDEX manifests_by_name ON manifests (name);
"""
_DROP = "DROP TABLE IF EXISTS manifests;"
_SQL_OPERATORS = {">=": ">=", "<=": "<=", ">": ">", "<": "<", "==": "=", "!=": "!="}
_ROW = "digest, row, seal"
_ABSENT = object()

Condition = tuple[str, str, float]


class ManifestRow(NamedTuple):
    """A manifest as the index stores it: plain fields, cheap to decode and to filter on.

    Sequences are lists (``framework`` is ``[name, version]``, each file
    ``[path, digest, size]``, each dataset ``[name, digest, uri]``); :meth:`manifest`
    rebuilds the :class:`Manifest`.
    """

    size: int  # of the manifest object itself
    name: str
    version: str
    family: str | None
    framework: Any
    architecture: str | None
    input_shape: Any
    metrics: dict[str, float]
    properties: dict[str, Any]
    files: Any
    datasets: Any
    parents: Any
    created: str
    author: str
    message: str

    @classmethod
    def of(cls, manifest: Manifest, size: int) -> ManifestRow:
        """The row of a validated manifest whose object is ``size`` bytes."""
        lineage = manifest.lineage
        return cls(
            size, manifest.name, manifest.version, manifest.family, manifest.framework, manifest.architecture,
            manifest.input_shape, dict(manifest.metrics), dict(manifest.properties), manifest.files,
            lineage.datasets, lineage.parents, lineage.created, lineage.author, lineage.message,
        )  # fmt: skip

    @property
    def total_size(self) -> int:
        """The bytes of the version's files."""
        return sum(file[2] for file in self.files)

    def manifest(self) -> Manifest:
        """The manifest this row was made from.

        The row was made from a validated manifest and its seal checked, so only
        the shape is rebuilt: the frozen dataclasses are filled without running
        their validating ``__init__`` (queries rebuild thousands).
        tests/test_index.py checks this equals :meth:`Manifest.decode`.
        """
        framework, shape, datasets, parents = self.framework, self.input_shape, self.datasets, self.parents
        lineage = object.__new__(Lineage)
        lineage.__dict__.update(
            datasets=tuple(Dataset(*d) for d in datasets) if datasets else (), parents=tuple(parents) if parents else (),
            created=self.created, author=self.author, message=self.message,
        )  # fmt: skip
        manifest = object.__new__(Manifest)
        manifest.__dict__.update(
            name=self.name, version=self.version, files=tuple([FileEntry(*f) for f in self.files]),
            family=self.family, framework=Framework(*framework) if framework is not None else None,
            architecture=self.architecture, input_shape=tuple(shape) if shape is not None else None,
            metrics=self.metrics, properties=self.properties, lineage=lineage,
        )  # fmt: skip
        return manifest


class MetadataIndex:
    """The SQLite cache of manifests of one store (opened on first use)."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.path = root / INDEX_FILE
        self.read_only = read_only  # read what is there, never write (the web UI's store stays untouched)
        self._connection: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ reading

    def rows(self, digests: Iterable[Digest]) -> dict[Digest, ManifestRow]:
        """The cached rows among ``digests`` whose seal holds (the others are simply absent)."""
        return self._sealed(self._select(f"SELECT {_ROW} FROM manifests WHERE digest IN ({{}})", digests))

    def named(self, name: str) -> set[Digest]:
        """The digests of the rows filed under model ``name``."""
        return self._digests("SELECT group_concat(digest, ' ') FROM manifests WHERE name = ?", (name,))

    def rows_where(self, name: str, family: str | None, conditions: list[Condition]) -> dict[Digest, ManifestRow | None] | None:
        """``name``'s rows whose family and registered metrics pass every condition
        (None for a row whose seal fails); None when the index cannot be read.

        SQL chooses them by the plain columns, which are not sealed: the caller matches
        the (sealed) rows again, and ``fsck`` checks that the columns agree with the rows.
        """
        where, parameters = _where(name, family, conditions)
        found = self._query(f"SELECT {_ROW} FROM manifests WHERE {where}", parameters)
        return self._sealed(found, damaged=None) if found is not None else None

    def values_where(self, name: str, family: str | None, conditions: list[Condition], key: str) -> dict[Digest, float | None] | None:
        """For ``name``'s rows that pass every condition (as :meth:`rows_where` chooses them):
        the registered value of metric ``key`` (None: the row has no such metric); None
        when the index cannot be read."""
        where, parameters = _where(name, family, conditions)
        found = self._query(f"SELECT digest, json_extract(metrics, ?) FROM manifests WHERE {where}", [_path(key), *parameters])
        return {Digest(d): value for d, value in found} if found is not None else None

    def file_lists(self) -> dict[Digest, tuple[int, int, list[Digest]]]:
        """Every row's manifest size, its files' total size and their digests (plain columns, for ``du``)."""
        try:
            found = self._connect().execute("SELECT digest, size, total, files FROM manifests").fetchall()
        except sqlite3.DatabaseError as exc:
            self._failed(exc)
            return {}
        return {digest: (size, total, files.split()) for digest, size, total, files in found}

    # ------------------------------------------------------------------ writing

    def record(self, rows: Iterable[tuple[Digest, ManifestRow]]) -> None:
        """Cache the rows of manifests that were read and validated (replacing damaged ones)."""
        rows = list(rows)
        if not rows or self.read_only:
            return
        try:
            connection = self._connect()
            with connection:
                connection.executemany("INSERT OR REPLACE INTO manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [_columns(d, r) for d, r in rows])
        except sqlite3.DatabaseError as exc:
            self._failed(exc)

    # ----------------------------------------------------------------- checking

    def problems(self, read_object: Callable[[Digest], bytes]) -> list[str]:
        """Rows whose seal fails or that disagree with their manifest (fsck).

        ``read_object(digest)`` gives a manifest object's verified bytes, or raises
        MregError when it is no longer stored (its row is then never asked for, unless
        the same manifest comes back) or damaged (the object check reports that).
        """
        if not self.path.exists():
            return []
        found = []
        try:
            connection = self._connect()
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                return [f"metadata index {self.path} is corrupt ({check}); delete it to rebuild it"]
            for digest, *plain, row, seal in connection.execute("SELECT * FROM manifests").fetchall():
                if _row_problem(digest, row, seal, read_object) or not _columns_agree(tuple(plain), row):
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

    def _sealed(self, found: Iterable[tuple[str, bytes, bytes]], damaged: Any = _ABSENT) -> dict[Digest, Any]:
        """The rows among ``(digest, row, seal)`` whose seal holds, decoded; the others are
        left out, or given the value ``damaged``."""
        rows = {}
        with without_gc():
            for digest, row, seal in found:
                try:
                    if seal == _seal(digest, row):
                        rows[Digest(digest)] = ManifestRow._make(msgpack.unpackb(row))
                        continue
                except (ValueError, TypeError, msgpack.UnpackException):
                    pass  # cannot happen to a sealed row; damaged all the same
                if damaged is not _ABSENT:
                    rows[Digest(digest)] = damaged
        return rows

    def _digests(self, query: str, parameters: Iterable[Any]) -> set[Digest]:
        """The digests a ``group_concat(digest, ' ')`` query gives (one string: 10,000
        rows of one column cost more as tuples)."""
        found = self._query(query, parameters)
        return set(found[0][0].split(" ")) if found and found[0][0] else set()

    def _query(self, query: str, parameters: Iterable[Any]) -> list[tuple[Any, ...]] | None:
        """The rows of one statement; None when the index cannot be read."""
        try:
            return self._connect().execute(query, tuple(parameters)).fetchall()
        except sqlite3.DatabaseError as exc:
            self._failed(exc)
            return None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None and self.read_only:
            self._connection = _open_read_only(self.path)
        if self._connection is None:
            connection = sqlite3.connect(self.path, timeout=_TIMEOUT, isolation_level=None, check_same_thread=False)
            try:
                if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(  # a cache: an index of another schema is rebuilt
                        f"BEGIN IMMEDIATE; {_DROP} {_TABLES} PRAGMA user_version={SCHEMA}; COMMIT;"
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
        if not isinstance(exc, sqlite3.OperationalError) and not self.read_only:
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)


def _open_read_only(path: Path) -> sqlite3.Connection:
    """Open an index without writing anything: no schema, no ``-shm`` file.

    ``immutable`` skips locking and the write-ahead log, so rows another process is
    adding may be missed or read torn: a miss, or a row whose seal fails (a miss too).
    """
    if not path.is_file():
        raise sqlite3.OperationalError("no metadata index")
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
        connection.close()
        raise sqlite3.OperationalError("the metadata index has another schema")
    return connection


@contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cycle collector while thousands of rows or manifests are built.

    Each container allocated counts towards the next collection, and each full
    collection walks every object alive: building 10,000 rows would trigger dozens,
    for nothing (rows and manifests hold no cycles). Nested uses are harmless.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _seal(digest: str, row: bytes) -> bytes:
    """SHA-256 of a manifest's digest and its row (16 bytes): a row damaged or filed
    under another digest fails it."""
    return hashlib.sha256(digest.encode() + row).digest()[:16]


def _columns(digest: Digest, row: ManifestRow) -> tuple[Any, ...]:
    """A ``manifests`` row: the digest, the plain columns queries filter on and ``du``
    sums, the sealed row."""
    packed = _pack(row)
    return (digest, *_plain(row), packed, _seal(digest, packed))


def _plain(row: ManifestRow) -> tuple[str, str | None, str, int, int, str]:
    """The plain columns: name, family, metrics (JSON), the manifest's size, its files'
    total size and their digests."""
    metrics = json.dumps(row.metrics, allow_nan=False)
    return row.name, row.family, metrics, row.size, row.total_size, " ".join(file[1] for file in row.files)


def _path(key: str) -> str:
    """The JSON path of a metric (keys are letters, digits and ``_.@/-``: nothing to escape)."""
    return f'$."{key}"'


def _where(name: str, family: str | None, conditions: list[Condition]) -> tuple[str, list[Any]]:
    """The WHERE clause choosing ``name``'s rows by family and registered metrics."""
    sql: list[str] = ["name = ?"]
    parameters: list[object] = [name]
    if family is not None:
        sql.append("family = ?")
        parameters.append(family)
    for key, op, threshold in conditions:
        sql.append(f"json_extract(metrics, ?) {_SQL_OPERATORS[op]} ?")
        parameters += [_path(key), threshold]
    return " AND ".join(sql), parameters


def _pack(row: ManifestRow) -> bytes:
    return msgpack.packb(list(row), use_bin_type=True)


def _row_problem(digest: str, row: bytes, seal: bytes, read_object: Callable[[Digest], bytes]) -> bool:
    """True when a row's seal fails or it is not the row of its (stored) manifest."""
    if seal != _seal(digest, row):
        return True
    try:
        data = read_object(Digest(digest))
        manifest = Manifest.decode(data, digest)
    except MregError:
        return False  # gone, or damaged: the object check reports that
    return msgpack.unpackb(row) != msgpack.unpackb(_pack(ManifestRow.of(manifest, len(data))))


def _columns_agree(columns: tuple[Any, ...], row: bytes) -> bool:
    """True when the plain columns say what the sealed row says (metrics compared as values)."""
    try:
        decoded = ManifestRow._make(msgpack.unpackb(row))
        name, family, metrics, *rest = columns
        return (name, family, json.loads(metrics), *rest) == (decoded.name, decoded.family, decoded.metrics, *_plain(decoded)[3:])
    except (ValueError, TypeError, msgpack.UnpackException):
        return False
