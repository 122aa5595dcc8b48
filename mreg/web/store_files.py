"""The store's files over HTTP, at the paths :class:`mreg.remote.HttpSource` reads.

``objects/ab/cdef...`` (and ``.chunks``, ``.pack``) never change: they are served with
``Cache-Control: immutable``, an ETag made of the digest, and Range requests.
``models/NAME/_refs``, ``_log``, ``_notes`` and ``info/models`` change: they are
read whole in one go (``_refs`` is replaced by rename, so the read is a consistent
snapshot), served with ``no-cache`` and an ETag of their content. Every path is
checked against the store's grammar before any file name is built from it, so no
request reaches outside ``objects/`` and ``models/``, and every file is opened
without following links and sent only if it is a regular file (a link, FIFO or
device planted in the store is a 404).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mreg.errors import InvalidNameError
from mreg.storage.refs import LOG_FILE, NOTES_FILE, TABLE_FILE
from mreg.web.file_response import OpenFileResponse
from mreg.web.safe_files import UnsafeFileError, open_regular

if TYPE_CHECKING:
    from mreg.web.reader import ReadOnlyRegistry

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
_FANOUT = re.compile(r"[0-9a-f]{2}")
_OBJECT = re.compile(r"[0-9a-f]{62}(?:\.chunks|\.pack)?")  # a blob, a chunk index, a packed blob
MODEL_FILES = (TABLE_FILE, LOG_FILE, NOTES_FILE)


def store_routes(registry: ReadOnlyRegistry) -> list[Route]:
    """Routes serving the store read-only (GET and HEAD)."""

    def object_file(request: Request) -> Response:
        fanout, name = request.path_params["fanout"], request.path_params["name"]
        if not (_FANOUT.fullmatch(fanout) and _OBJECT.fullmatch(name)):
            return _not_found()
        try:
            fd = open_regular(registry.root, f"objects/{fanout}/{name}")
        except (UnsafeFileError, OSError):
            fd = None
        if fd is None:
            return _not_found()
        etag = f'"{fanout}{name}"'
        headers = {"Cache-Control": IMMUTABLE, "ETag": etag}
        if _matches(request, etag):
            os.close(fd)
            return Response(status_code=304, headers=headers)
        return OpenFileResponse(fd, os.fstat(fd).st_size, headers=headers)

    def model_file(request: Request) -> Response:
        name, _, file = request.path_params["rest"].rpartition("/")
        if file not in MODEL_FILES:
            return _not_found()
        try:
            data = registry.refs.read_file(name, file)  # bounded, regular files only, no link followed
        except (InvalidNameError, UnsafeFileError, OSError):
            data = None
        return _not_found() if data is None else _changing(request, data)

    def info_models(request: Request) -> Response:
        names = [name for name in registry.refs.names() if registry.refs.read(name).versions]
        return _changing(request, "".join(f"{name}\n" for name in names).encode("utf-8"))

    return [
        Route("/objects/{fanout}/{name}", object_file),
        Route("/models/{rest:path}", model_file),
        Route("/info/models", info_models),
    ]


def _changing(request: Request, data: bytes) -> Response:
    """A small file that may change: revalidated on every use."""
    etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
    headers = {"Cache-Control": NO_CACHE, "ETag": etag}
    if _matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="text/plain; charset=utf-8", headers=headers)


def _matches(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return wanted.strip() == "*" or etag in (tag.strip().removeprefix("W/") for tag in wanted.split(","))


def _not_found() -> Response:
    return Response("not found\n", status_code=404, media_type="text/plain; charset=utf-8", headers={"Cache-Control": NO_CACHE})
