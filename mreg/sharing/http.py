"""HTTP GETs with an overall deadline, for reading other registries.

urllib's ``timeout`` bounds each socket operation, so a server that sends one byte
a second never times out. Here every request gets a watchdog: when its deadline
passes, the request's sockets are shut down, which ends any read in progress, and
the request fails naming its URL. The deadline is ``timeout`` seconds for the
connection and headers, extended by one second per MiB of announced body
(``MIN_RATE``), so big objects on a working link finish and a stalled one fails.
Redirects are followed only to http(s) URLs.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from mreg._version import __version__
from mreg.errors import RemoteError
from mreg.text import printable

MIN_RATE = 1 << 20  # bytes per second a body must average, on top of the base timeout
BLOCK_SIZE = 4 << 20
MAX_REDIRECTS = 5


def checked_url(url: str) -> str:
    """``url`` if it is a well-formed http(s) URL with a host, else RemoteError."""
    problem = None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "only http and https are supported"
        elif not parts.hostname:
            problem = "it has no host"
        elif any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
            problem = "it contains spaces or control characters"
    if problem:
        raise RemoteError(f"invalid URL '{printable(url, 200)}': {problem}")
    return url


class Deadline:
    """Shut down a request's sockets when its time is up (a thread-safe watchdog)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._at = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._arm(seconds)

    def _arm(self, seconds: float) -> None:
        self._timer = threading.Timer(max(seconds, 0.0), self._check)
        self._timer.daemon = True
        self._timer.start()

    def extend(self, seconds: float) -> None:
        """Allow ``seconds`` more (for a body whose size is now known)."""
        with self._lock:
            self._at += seconds
            self.seconds += seconds

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed)."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _check(self) -> None:
        with self._lock:
            left = self._at - time.monotonic()
            if left > 0:
                self._arm(left)
                return
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def cancel(self) -> None:
        """The request is over: stop the watchdog."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watched:
    """Connections whose socket a :class:`Deadline` watches from the moment it exists,
    so a stalled TLS handshake is cut off too."""

    _create_connection: Callable[..., socket.socket]  # set by http.client.HTTPConnection

    def _watch(self, deadline: Deadline) -> None:
        create = self._create_connection

        def created(*args: Any, **kwargs: Any) -> socket.socket:
            sock = create(*args, **kwargs)
            deadline.watch(sock)
            return sock

        self._create_connection = created


class _HTTPConnection(_Watched, http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch(deadline)


class _HTTPSConnection(_Watched, http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch(deadline)


class _Request(urllib.request.Request):
    """A request that carries its deadline to the connection that serves it."""

    def __init__(self, url: str, deadline: Deadline, headers: dict[str, str]) -> None:
        super().__init__(url, headers=headers)
        self.deadline = deadline


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(functools.partial(_HTTPConnection, deadline=req.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self) -> None:
        super().__init__()
        self._tls: ssl.SSLContext | None = None  # made at the first https request: loading the CAs takes 50 ms

    def https_open(self, req: Any) -> Any:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self.do_open(functools.partial(_HTTPSConnection, deadline=req.deadline), req, context=self._tls)


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise RemoteError(f"{req.full_url}: redirected to '{printable(newurl, 200)}', which is not http(s); refused")
        new: Any = super().redirect_request(req, fp, code, msg, headers, newurl)  # a plain Request: it takes the deadline along
        if new is not None:
            new.deadline = req.deadline
        return new


def opener() -> urllib.request.OpenerDirector:
    """An opener whose requests honour a :class:`Deadline` and safe redirects."""
    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler, _Redirects)


def get(director: urllib.request.OpenerDirector, url: str, timeout: float) -> tuple[Iterator[bytes], int | None] | None:
    """GET ``url``: its body in blocks and its announced size, or None on 404.

    Raises:
        RemoteError: naming ``url``: unreachable, an HTTP error, no answer in time.
    """
    deadline = Deadline(timeout)
    request = _Request(url, deadline, {"User-Agent": f"mreg/{__version__}"})
    try:
        response = director.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        deadline.cancel()
        exc.close()
        if exc.code == 404:
            return None
        raise RemoteError(f"{url}: HTTP {exc.code} {printable(str(exc.reason), 100)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        deadline.cancel()
        if deadline.expired:
            raise RemoteError(f"{url}: timed out: no complete answer within {deadline.seconds:g}s") from None
        reason = getattr(exc, "reason", exc)
        raise RemoteError(f"cannot reach {url}: {printable(str(reason), 200)}") from None
    except BaseException:
        deadline.cancel()
        raise
    length = response.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() and len(length) < 19 else None
    deadline.extend((size or 0) / MIN_RATE)
    return _body(response, url, size, deadline), size


def _body(response: Any, url: str, expected: int | None, deadline: Deadline) -> Iterator[bytes]:
    """A response's body; a connection that drops early or runs late is an error."""
    received = 0
    try:
        with response:
            while True:
                block = response.read(BLOCK_SIZE)
                if not block:
                    break
                received += len(block)
                yield block
    except (http.client.HTTPException, OSError, ValueError) as exc:
        if deadline.expired:
            raise RemoteError(f"{url}: timed out: no complete answer within {deadline.seconds:g}s") from None
        raise RemoteError(f"{url}: transfer failed after {received} bytes ({exc!r})") from None
    finally:
        deadline.cancel()
    if deadline.expired:
        raise RemoteError(f"{url}: timed out: no complete answer within {deadline.seconds:g}s") from None
    if expected is not None and received != expected:
        raise RemoteError(f"{url}: body truncated at {received} of {expected} bytes")
