"""Which ``Host`` and ``Origin`` headers the server answers: the defence against DNS rebinding.

A web page the user visits can make its own host name resolve to 127.0.0.1, and
then read anything a local server answers: the browser sends the attacker's name
in ``Host``. So the server answers only requests that name the address it serves
(127.0.0.1, localhost or [::1] with its port; the host it was bound to) or a name
the user allowed with ``mreg serve --allow-host NAME``. Anything else is refused,
for every path, before routing. A request that carries an ``Origin`` (a script of
another site asking) must come from one of those names too: the server is
read-only and sends no CORS headers, so this only closes what a browser bug might open.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mreg.errors import InvalidInputError
from mreg.text import printable

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "[::]", "")  # listening everywhere names no host of its own
_HOST = re.compile(r"(\[[0-9a-f:.]{2,45}\]|[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::([0-9]{1,5}))?")


def host_name(text: str) -> str:
    """A host as it appears in a ``Host`` header: lower case, IPv6 addresses in brackets.

    Raises:
        InvalidInputError: ``text`` is not a host name or an IP address.
    """
    name = text.strip().lower()
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    match = _HOST.fullmatch(name)
    if match is None or match.group(2) is not None:
        raise InvalidInputError(f"'{printable(text)}' is not a host name or IP address (no port, no scheme)")
    return name


class HostPolicy:
    """The ``Host`` names a server bound to ``host``:``port`` answers.

    The loopback names and the bound host must come with the server's port (a
    browser always sends the port it connected to, unless it is 80); the names
    given in ``allowed`` are accepted with any port, since a proxy in front may
    pass on its own.
    """

    def __init__(self, host: str, port: int, allowed: Iterable[str] = ()) -> None:
        bound = host_name(host) if host.strip() else ""
        self.port = port
        self.with_port = {*LOOPBACK, *([bound] if bound not in WILDCARDS else [])}
        self.any_port = {host_name(name) for name in allowed}

    def accepts(self, header: str) -> bool:
        """True when a ``Host`` header (``name`` or ``name:port``) names this server."""
        match = _HOST.fullmatch(header.lower())
        if match is None:
            return False
        name, port = match.group(1), match.group(2)
        if name in self.any_port:
            return True
        return name in self.with_port and (int(port) == self.port if port is not None else self.port == 80)

    def accepts_origin(self, origin: str) -> bool:
        """True when an ``Origin`` header is a page of this server (http or https, through a proxy)."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and not parts.path and self.accepts(parts.netloc)

    def names(self) -> list[str]:
        """The accepted names, as a person would type them in a URL."""
        return [f"{name}:{self.port}" for name in sorted(self.with_port)] + sorted(self.any_port)


class HostGuard:
    """ASGI middleware: a request naming another host is refused (421, or 400 without a
    readable ``Host``), one from a page of another origin is forbidden (403), and one
    whose query string is not UTF-8 is a 400, before any route sees it."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._problem(headers.getlist("host"), headers.getlist("origin")) or _unreadable(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message = problem
        response = PlainTextResponse(message + "\n", status_code=status, headers={"Cache-Control": "no-store"})
        await response(scope, receive, send)

    def _problem(self, hosts: list[str], origins: list[str]) -> tuple[int, str] | None:
        """Why a request is refused (status, one line), or None when it is answered."""
        if len(hosts) != 1 or not _HOST.fullmatch(hosts[0].lower()):
            return 400, "a request needs one Host header naming this server"
        if not self.policy.accepts(hosts[0]):
            return 421, (
                f"this server does not answer for host '{printable(hosts[0])}': it answers for "
                f"{', '.join(self.policy.names())} (start it with --allow-host NAME to add a name)"
            )
        if len(origins) > 1 or origins and not self.policy.accepts_origin(origins[0]):
            return 403, f"requests from pages of '{printable(origins[0] if origins else '')}' are refused"
        return None


def _unreadable(scope: Scope) -> tuple[int, str] | None:
    """A 400 for a query string that is not UTF-8 (Starlette cannot even build the URL of it)."""
    try:
        scope.get("query_string", b"").decode("utf-8")
    except UnicodeDecodeError:
        return 400, "the query string is not UTF-8 text"
    return None
