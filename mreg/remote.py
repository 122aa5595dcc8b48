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
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RemoteError
from .fileutil import write_atomically
from .names import validate_name
from .refs import TABLE_FILE, RefTable
from .segments import BLOCK_SIZE, read_blocks

if TYPE_CHECKING:
    from .config import Config
    from .registry import Registry

INFO_MODELS = "info/models"
URL_SCHEMES = ("http", "https", "s3", "gs", "az")
DEFAULT_HTTP_TIMEOUT = 30.0
Stream = tuple[Iterator[bytes], "int | None"]
"""A file's bytes in blocks, and its size when known."""


class Source(ABC):
    """A registry mreg reads from but never writes to."""

    location: str

    @abstractmethod
    def read(self, path: str) -> bytes | None:
        """A small file's bytes, or None when it does not exist."""

    @abstractmethod
    def stream(self, path: str) -> Stream | None:
        """A large file's bytes, streamed, or None when it does not exist."""

    @abstractmethod
    def model_names(self) -> list[str]:
        """Every model this registry has."""

    def table(self, name: str) -> RefTable | None:
        """A model's refs here, or None if it has no such model."""
        data = self.read(f"models/{validate_name(name)}/{TABLE_FILE}")
        if data is None:
            return None
        try:
            return RefTable.parse(data.decode("ascii"), where=f"ref table of '{name}' in {self.location}")
        except UnicodeDecodeError:
            raise RemoteError(f"{self.location}: the refs of '{name}' are not text") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


class DirectorySource(Source):
    """A registry on a file system: a project directory, or its ``.mreg``."""

    def __init__(self, root: Path, location: str | None = None) -> None:
        self.root = root
        self.location = location or str(root)

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise RemoteError(f"cannot read {path} in {self.location}: {exc.strerror or exc}") from None

    def stream(self, path: str) -> Stream | None:
        try:
            handle = open(self.root / path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise RemoteError(f"cannot read {path} in {self.location}: {exc.strerror or exc}") from None

        def blocks() -> Iterator[bytes]:
            with handle:
                yield from read_blocks(handle)

        return blocks(), os.fstat(handle.fileno()).st_size

    def model_names(self) -> list[str]:
        models = self.root / "models"
        names = sorted("/".join(p.parent.relative_to(models).parts) for p in models.rglob(TABLE_FILE))
        return [name for name in names if (table := self.table(name)) is not None and table.versions]


class HttpSource(Source):
    """A registry's ``.mreg`` directory served by any static web server."""

    def __init__(self, url: str, timeout: float = DEFAULT_HTTP_TIMEOUT) -> None:
        import urllib.request

        self.location = url.rstrip("/")
        self.timeout = timeout
        # An opener of our own, reading the proxy settings now: urlopen's shared one
        # keeps whatever the first caller in the process (torch.hub, say) saw.
        self._opener = urllib.request.build_opener()

    def _open(self, path: str):  # type: ignore[no-untyped-def]
        import urllib.error
        import urllib.request

        from . import __version__

        request = urllib.request.Request(f"{self.location}/{path}", headers={"User-Agent": f"mreg/{__version__}"})
        try:
            return self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise RemoteError(f"{self.location}/{path}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach {self.location}: {reason}") from None

    def read(self, path: str) -> bytes | None:
        response = self._open(path)
        if response is None:
            return None
        with response:
            return b"".join(_checked_blocks(response, self.location, path))

    def stream(self, path: str) -> Stream | None:
        response = self._open(path)
        if response is None:
            return None
        length = response.headers.get("Content-Length")

        def blocks() -> Iterator[bytes]:
            with response:
                yield from _checked_blocks(response, self.location, path)

        return blocks(), int(length) if length and length.isdigit() else None

    def model_names(self) -> list[str]:
        data = self.read(INFO_MODELS)
        if data is None:
            raise RemoteError(f"{self.location} has no {INFO_MODELS}: run 'mreg update-server-info' in that registry")
        return sorted(validate_name(line) for line in data.decode("utf-8").splitlines() if line)


def _checked_blocks(response, location: str, path: str) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    """A response's body; a connection that drops early is an error, not a short file."""
    import http.client

    expected = response.headers.get("Content-Length")
    received = 0
    try:
        while True:
            block = response.read(BLOCK_SIZE)
            if not block:
                break
            received += len(block)
            yield block
    except (http.client.HTTPException, OSError) as exc:
        raise RemoteError(f"{location}/{path}: transfer failed after {received} bytes ({exc!r})") from None
    if expected and expected.isdigit() and received != int(expected):
        raise RemoteError(f"{location}/{path}: body truncated at {received} of {expected} bytes")


def open_source(location: str, *, timeout: float = DEFAULT_HTTP_TIMEOUT, config: Config | None = None) -> Source:
    """A Source for a path, an ``http(s)://`` URL or a bucket (``s3://``, ``gs://``, ``az://``).

    ``config`` gives a bucket the endpoint and region of the remote that names it.

    Raises:
        RemoteError: a path that holds no registry, or a bucket that cannot be read.
    """
    if re.match(r"https?://", location):
        return HttpSource(location, timeout=timeout)
    if re.match(r"(s3|gs|az)://", location):
        from .buckets.source import open_bucket_source  # imports obstore: only when a bucket is used

        return open_bucket_source(location, config, timeout)
    path = Path(location).expanduser()
    for candidate in (path / ".mreg", path):
        if (candidate / "objects").is_dir() and (candidate / "models").is_dir():
            return DirectorySource(candidate.resolve(), location)
    raise RemoteError(f"no mreg registry at '{location}'")


def split_locations(text: str) -> list[str]:
    """Split an ``os.pathsep``-separated list of paths and URLs.

    On POSIX the separator is ``:``, which URLs also contain (``http://host:8000/x``,
    ``s3://bucket/prefix``), so a scheme, and a port right after a host, are joined
    back to their URL.
    """
    entries: list[str] = []
    for part in text.split(os.pathsep):
        previous = entries[-1] if entries else ""
        inside_url = previous in URL_SCHEMES or (
            re.fullmatch(r"https?://[^/]*", previous) is not None and re.match(r"\d+(/|$)", part) is not None
        )
        if inside_url:
            entries[-1] = previous + os.pathsep + part
        else:
            entries.append(part)
    return [entry for entry in entries if entry]


def write_server_info(registry: Registry) -> None:
    """Write ``info/models``, the list a static HTTP server cannot compute by itself."""
    names = [name for name in registry.refs.names() if registry.refs.read(name).versions]
    target = registry.root / INFO_MODELS
    target.parent.mkdir(exist_ok=True)
    write_atomically(target, "".join(f"{name}\n" for name in names).encode("utf-8"))
