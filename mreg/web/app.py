"""The Starlette application: pages and their JSON twins, store files, errors.

URLs are references, as on the command line: ``/m/NAME`` is a model,
``/m/NAME@VERSION`` (or ``@TAG``, or ``/m/sha256:...``) a version, and
``/compare?a=REF&b=REF`` a comparison; ``/api`` before a page's path gives its JSON.
Only GET and HEAD exist. Errors are pages too: an unknown model or version is a
404, a malformed reference a 400, and an unexpected failure a 500 whose page
says so in one line, without a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mreg.web.evidence_pages as evidence_pages
import mreg.web.pages as pages
from mreg._version import __version__
from mreg.errors import (
    ConflictError,
    InputFileError,
    InvalidInputError,
    LockTimeoutError,
    MregError,
    NotFoundError,
    RegistryNotFoundError,
)
from mreg.records.names import parse_ref
from mreg.text import human_size, short
from mreg.web.charts import metric_chart
from mreg.web.hosts import HostGuard, HostPolicy
from mreg.web.lineage import lineage_graph, render
from mreg.web.numbers import json_bytes, number, signed
from mreg.web.params import query
from mreg.web.reader import ReadOnlyRegistry
from mreg.web.store_files import store_routes

HERE = Path(__file__).parent
# The HTTP status of each kind of error (the first class it is an instance of); anything else is a 500.
STATUSES: tuple[tuple[type[MregError], int], ...] = (
    (InvalidInputError, 400),
    (NotFoundError, 404),
    (RegistryNotFoundError, 404),
    (InputFileError, 404),
    (ConflictError, 409),
    (LockTimeoutError, 503),
)
SECURITY_HEADERS = {
    # Every asset is served from here: no CDN, no inline script, no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",  # no page of another site may embed a response
}
PageData = dict[str, Any]
Extras = Callable[[], dict[str, Any]]  # what only the HTML page needs (charts, graphs), built on demand
log = logging.getLogger("mreg.web")


def status_of(error: MregError) -> int:
    """The HTTP status of an error."""
    return next((status for kind, status in STATUSES if isinstance(error, kind)), 500)


def ref_url(ref: str) -> str:
    """The page of a model or version: ``/m/NAME[@VERSION]``."""
    return "/m/" + quote(ref, safe="/@:+")


class Site:
    """The pages of one registry: data builders, and the templates that draw them."""

    def __init__(self, registry: ReadOnlyRegistry) -> None:
        self.registry = registry
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
        )
        self.templates.globals.update(ref_url=ref_url, short=short, human_size=human_size, version=__version__)
        self.templates.filters["number"] = number  # a dash for anything but a finite number
        self.templates.filters["signed"] = signed
        self.templates.filters["breakable"] = breakable
        self.templates.filters["compact"] = lambda value: value if isinstance(value, str) else json.dumps(value)

    def models(self, request: Request) -> tuple[PageData, Extras]:
        params = query(request.query_params, {"q": "", "family": "", "page": "1"})
        found = pages.models_page(self.registry, query=params["q"], family=params["family"], page=params["page"])
        return found, dict

    def reference(self, request: Request) -> tuple[PageData, Extras]:
        ref = request.path_params["ref"]
        parsed = parse_ref(ref)  # malformed: InvalidRefError, a 400
        if parsed.digest_prefix is None and "@" not in ref:
            return self._model(request, parsed.name)
        children = pages.children_index(self.registry)
        data = pages.version_page(self.registry, ref, base_url=str(request.base_url).rstrip("/"), children=children)
        data["evidence"] = evidence_pages.version_evidence(self.registry, data["ref"])  # badges and approval trail
        return data, lambda: {
            "template": "version.html",
            "lineage_svg": render(lineage_graph(self.registry, data["digest"], children), ref_url),
        }

    def _model(self, request: Request, name: str) -> tuple[PageData, Extras]:
        params = query(request.query_params, {"sort": "version", "order": "desc", "page": "1"})
        data = pages.model_page(self.registry, name, sort=params["sort"], order=params["order"], page=params["page"])
        return data, lambda: {"template": "model.html", "charts": self._charts(name, data)}

    @staticmethod
    def _charts(name: str, data: PageData) -> dict[str, Any]:
        """An SVG chart per metric; a metric only one version records gets a number instead (None)."""
        return {
            metric: metric_chart(metric, points, lambda version: ref_url(f"{name}@{version}")) if len(points) > 1 else None
            for metric, points in data["series"].items()
            if points
        }

    def audit(self, request: Request) -> tuple[PageData, Extras]:
        return evidence_pages.audit_page(self.registry, request.path_params["name"]), dict

    def compare(self, request: Request) -> tuple[PageData, Extras]:
        params = query(request.query_params, {"a": "", "b": ""})
        return pages.compare_page(self.registry, params["a"], params["b"]), dict

    def warm_up(self) -> None:
        """Compile the templates and read every registered manifest once, so that the first
        visitors do not wait for it (run in a background thread at start-up)."""
        try:
            for template in ("models.html", "model.html", "version.html", "compare.html", "error.html", "audit.html"):
                self.templates.get_template(template)
            self.registry.models()
            pages.children_index(self.registry)
        except Exception as exc:  # noqa: BLE001 - the pages will report the problem when asked
            log.warning("mreg serve: warm-up stopped: %s: %s", type(exc).__name__, exc)

    def html(self, template: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        api = "/api" + (request.url.path if request.url.path != "/" else "/models")
        query = f"?{request.url.query}" if request.url.query else ""
        body = self.templates.get_template(template).render(
            request=request, api_url=api + query, store=self.registry.root.parent.name, **context
        )
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-cache"})

    def error(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return self.html("error.html", request, status=status, status_code=status, message=message)


def breakable(text: str) -> Markup:
    """``text`` escaped, with a line-break opportunity after each ``_ . - /`` (long metric names)."""
    return Markup(re.sub(r"([_./-])", r"\1<wbr>", str(escape(text))))


def page(site: Site, build: Callable[[Request], tuple[PageData, Extras]], template: str, api: bool) -> Callable:
    """An endpoint: ``build``'s data as HTML (with its extras) or as JSON."""

    def endpoint(request: Request) -> Response:
        try:
            data, extras = build(request)
            if api:
                return FiniteJSONResponse(data, headers={"Cache-Control": "no-cache"})
            context = extras()
            return site.html(context.pop("template", template), request, page=data, **context)
        except MregError as exc:
            return site.error(request, status_of(exc), exc.message)
        except Exception as exc:  # noqa: BLE001 - a page never shows a traceback
            log.error("mreg serve: %s on %s: %s", type(exc).__name__, request.url.path, exc)
            return site.error(request, 500, f"internal error ({type(exc).__name__}); the server's log has the details")

    return endpoint


class FiniteJSONResponse(JSONResponse):
    """JSON in which a NaN or an infinity (which JSON cannot hold) is ``null``, never an error."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


class SecurityHeaders:
    """ASGI middleware: the same protective headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def create_app(root: str | Path, *, warm_up: bool = True, hosts: HostPolicy | None = None) -> ASGIApp:
    """The web application for the store at ``root`` (a ``.mreg`` directory).

    It answers only requests whose ``Host`` names the server as ``hosts`` says
    (default: a server at 127.0.0.1:8080). With ``warm_up``, a background thread
    reads every manifest once at start-up.
    """
    site = Site(ReadOnlyRegistry(Path(root)))
    if warm_up:
        threading.Thread(target=site.warm_up, name="mreg-warm-up", daemon=True).start()
    return application(site, hosts or HostPolicy("127.0.0.1", 8080))


def application(site: Site, hosts: HostPolicy | None = None) -> ASGIApp:
    """The ASGI application serving ``site``'s pages and its store's files.

    With ``hosts``, requests naming another host are refused before anything else
    (:func:`create_app` always passes one; the benchmarks call pages without).
    """
    routes: list[BaseRoute] = []
    for path, api_path, build, template in (
        ("/", "/api/models", site.models, "models.html"),
        ("/m/{ref:path}", "/api/m/{ref:path}", site.reference, "model.html"),
        ("/compare", "/api/compare", site.compare, "compare.html"),
        ("/audit/{name:path}", "/api/audit/{name:path}", site.audit, "audit.html"),
    ):
        routes.append(Route(path, page(site, build, template, api=False)))
        routes.append(Route(api_path, page(site, build, template, api=True)))
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    routes += store_routes(site.registry)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such page", 405: "this server is read-only: only GET and HEAD"}.get(exc.status_code, exc.detail)
        return site.error(request, exc.status_code, message)

    app: ASGIApp = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    if hosts is not None:
        app = HostGuard(app, hosts)
    return SecurityHeaders(app)
