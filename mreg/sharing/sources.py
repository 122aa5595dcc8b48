"""Other registries, read as files: a directory, or a static HTTP server.

A registry's layout is all another mreg needs, as git's "dumb" HTTP transport
needs only a repository's files: ``models/<name>/_refs`` for refs, ``_log`` for
history, ``objects/ab/...`` (and ``.chunks``) for objects, and ``info/models`` for
the list of models, which :func:`write_server_info` keeps. A :class:`Source` offers
two verbs over those paths, reading a small file and streaming a large one; the
rest (resolving refs, fetching and verifying objects) is built on them, once.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Container, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

from mreg.errors import CorruptRefsError, InvalidNameError, RemoteError
from mreg.records.chain import Head, table_head
from mreg.records.limits import (
    MAX_LOG_SIZE,
    MAX_MODEL_LIST_SIZE,
    MAX_NOTES_TABLE_SIZE,
    MAX_REF_TABLE_SIZE,
    MAX_SMALL_FILE,
)
from mreg.records.names import validate_name
from mreg.records.refs import LogEntry, RefTable, checked_table, parse_log
from mreg.storage.blobs import read_blocks
from mreg.storage.refs import LOG_FILE, NOTES_FILE, TABLE_FILE
from mreg.storage.server_info import INFO_MODELS
from mreg.storage.threads import in_parallel
from mreg.text import printable

DEFAULT_HTTP_TIMEOUT = 30.0
Stream = tuple[Iterator[bytes], "int | None"]
"""A file's bytes in blocks, and its size when known."""




class RemoteModel(NamedTuple):
    """A model as another registry has it: its refs, its notes table's bytes (unchecked),
    and the head of its log that its refs name."""

    table: RefTable | None
    notes: bytes | None
    head: Head | None = None


class Source(ABC):
    """A registry mreg reads from but never writes to.

    Subclasses provide ``stream`` and ``model_names``; everything built on them here
    (ref tables, logs, bounded reads) validates what the store sends, so every kind
    of store gets the same checks.
    """

    location: str

    def read(self, path: str) -> bytes | None:
        """A small file's bytes (at most ``MAX_SMALL_FILE``), or None when it does not exist."""
        return self.read_limited(path, MAX_SMALL_FILE)

    @abstractmethod
    def stream(self, path: str) -> Stream | None:
        """A large file's bytes, streamed, or None when it does not exist."""

    @abstractmethod
    def model_names(self) -> list[str]:
        """Every model this registry lists (names are checked by :meth:`table`)."""

    def read_limited(self, path: str, limit: int) -> bytes | None:
        """A file's bytes, or None when it does not exist; RemoteError past ``limit`` bytes."""
        streamed = self.stream(path)
        if streamed is None:
            return None
        blocks, size = streamed
        where = f"{self.location}/{path}"
        if size is not None and size > limit:
            _close(blocks)
            raise RemoteError(f"{where} has {size} bytes, more than the {limit} allowed; refused")
        return b"".join(bounded(blocks, limit, where))

    readers = 1
    """Small files :meth:`read_all` reads at once: more where each read waits on a network."""

    def read_all(self, limits: Mapping[str, int]) -> dict[str, bytes | None]:
        """Several files' bytes (None for each that does not exist), ``readers`` at a time,
        each bounded by its limit in ``limits`` as :meth:`read_limited` is."""
        found: dict[str, bytes | None] = {}

        def read(path: str) -> None:
            found[path] = self.read_limited(path, limits[path])

        in_parallel(read, limits, self.readers)
        return {path: found[path] for path in limits}

    def table(self, name: str) -> RefTable | None:
        """A model's refs here, validated as local input is, or None if it has no such model.

        Raises:
            RemoteError: the name, or the table, is invalid (the message names the model).
        """
        return self.models([name], noted=())[name].table

    def models(self, names: Sequence[str], noted: Container[str] | None = None) -> dict[str, RemoteModel]:
        """Several models' refs (see :meth:`table`), with the notes tables of those in
        ``noted`` (default: all), every file read at once."""
        for name in names:
            try:
                validate_name(name)
            except InvalidNameError:
                raise RemoteError(f"{self.location} lists an invalid model name '{printable(name)}'; skipped") from None
        limits = {f"models/{name}/{TABLE_FILE}": MAX_REF_TABLE_SIZE for name in names}
        limits.update({f"models/{name}/{NOTES_FILE}": MAX_NOTES_TABLE_SIZE for name in names if noted is None or name in noted})
        found = self.read_all(limits)
        return {
            name: RemoteModel(
                self._parsed_table(name, found[f"models/{name}/{TABLE_FILE}"]),
                found.get(f"models/{name}/{NOTES_FILE}"),
                _head(found[f"models/{name}/{TABLE_FILE}"]),
            )
            for name in names
        }

    def listed_models(self) -> dict[str, RemoteModel]:
        """Every model listed here that has versions, with its validated refs and its notes table."""
        return with_versions(self.models(self.model_names()))

    def _parsed_table(self, name: str, data: bytes | None) -> RefTable | None:
        if data is None:
            return None
        try:
            table = RefTable.parse(data.decode("ascii"), where=f"ref table of '{name}' in {self.location}")
        except UnicodeDecodeError:
            raise RemoteError(f"{self.location}: the refs of '{name}' are not text") from None
        except CorruptRefsError as exc:
            raise RemoteError(exc.message) from None
        return checked_table(table, name, self.location)

    def log(self, name: str) -> list[LogEntry]:
        """A model's history here (empty if it has none), every line checked.

        Raises:
            RemoteError: the log is too big, or a line is not a valid entry.
        """
        data = self.read_limited(f"models/{validate_name(name)}/{LOG_FILE}", MAX_LOG_SIZE)
        if data is None:
            return []
        entries, problems = parse_log(data.decode("utf-8", errors="replace"), f"log of '{name}' in {self.location}")
        if problems:
            raise RemoteError(f"{problems[0]}; refused")
        return entries

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


def _head(data: bytes | None) -> Head | None:
    """The head of the log a ref table names (None: none, or a table that is not text)."""
    return table_head(data.decode("ascii", errors="replace")) if data is not None else None


def with_versions(models: dict[str, RemoteModel]) -> dict[str, RemoteModel]:
    """The models that have versions (a listed name may be gone)."""
    return {name: model for name, model in models.items() if model.table is not None and model.table.versions}


def bounded(blocks: Iterator[bytes], limit: int, where: str) -> Iterator[bytes]:
    """``blocks``, or RemoteError as soon as they pass ``limit`` bytes (the source is closed)."""
    received = 0
    try:
        for block in blocks:
            received += len(block)
            if received > limit:
                raise RemoteError(f"{where} sent more than the {limit} bytes expected; refused")
            yield block
    finally:
        _close(blocks)


def _close(blocks: Iterator[bytes]) -> None:
    close = getattr(blocks, "close", None)
    if close is not None:
        close()


class DirectorySource(Source):
    """A registry on a file system: a project directory, or its ``.mreg``.

    Only regular files inside the store are read: a symbolic link that leads out of
    it, a FIFO or a device is refused (they could leak files or block forever).
    """

    def __init__(self, root: Path, location: str | None = None) -> None:
        self.root = root
        self.location = location or str(root)

    def _open(self, path: str) -> BinaryIO | None:
        root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(root, path))
        if not real.startswith(root + os.sep):
            raise RemoteError(f"{self.location}: {printable(path)} leads outside the store; refused")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise RemoteError(f"cannot read {path} in {self.location}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RemoteError(f"{self.location}: {printable(path)} is not a regular file; refused")
        return open(fd, "rb")

    def stream(self, path: str) -> Stream | None:
        handle = self._open(path)
        if handle is None:
            return None

        def blocks() -> Iterator[bytes]:
            with handle:
                yield from read_blocks(handle)

        return blocks(), os.fstat(handle.fileno()).st_size

    def model_names(self) -> list[str]:
        models = self.root / "models"
        return sorted("/".join(p.parent.relative_to(models).parts) for p in models.rglob(TABLE_FILE))


class HttpSource(Source):
    """A registry's ``.mreg`` directory served by any static web server.

    Every request has an overall deadline, not one per read: ``timeout`` seconds,
    plus one second per MiB the server announces for the body. Redirects must stay on
    http(s). Errors name the URL that failed.
    """

    readers = 8
    """Small files read at once (each request opens its own connection)."""

    def __init__(self, url: str, timeout: float = DEFAULT_HTTP_TIMEOUT) -> None:
        from mreg.sharing.http import (  # start-up: urllib costs 40-90 ms, only HTTP sources need it
            checked_url,
            opener,
        )

        self.location = checked_url(url.rstrip("/"))
        self.timeout = timeout
        # An opener of our own, reading the proxy settings now: urlopen's shared one
        # keeps whatever the first caller in the process (torch.hub, say) saw.
        self._opener = opener()

    def stream(self, path: str) -> Stream | None:
        from mreg.sharing.http import get  # start-up: see __init__

        return get(self._opener, f"{self.location}/{path}", self.timeout)

    def model_names(self) -> list[str]:
        data = self.read_limited(INFO_MODELS, MAX_MODEL_LIST_SIZE)
        if data is None:
            raise RemoteError(f"{self.location} has no {INFO_MODELS}: run 'mreg update-server-info' in that registry")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteError(f"{self.location}/{INFO_MODELS} is not UTF-8 text; refused") from None
        return sorted({line for line in text.splitlines() if line})




