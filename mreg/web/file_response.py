"""A response that streams a file the server has already opened, with single ``Range`` requests.

Starlette's ``FileResponse`` opens its file by path when it sends it, which would
follow a link swapped in after the server checked the file. This one sends from
the descriptor that :func:`mreg.web.safe_files.open_regular` opened, so what is
sent is exactly the regular file that was checked.
"""

from __future__ import annotations

import os
import re

import anyio.to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

BLOCK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d{1,19})?-(\d{1,19})?")


class OpenFileResponse(Response):
    """The open file ``fd`` (a regular file of ``size`` bytes) as the body; the descriptor is closed when sent."""

    def __init__(self, fd: int, size: int, *, headers: dict[str, str], media_type: str = "application/octet-stream") -> None:
        super().__init__(status_code=200, headers={**headers, "Accept-Ranges": "bytes"}, media_type=media_type)
        self.fd, self.size = fd, size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start, end, status = self._span(Headers(scope=scope))
            headers = MutableHeaders(raw=list(self.raw_headers))
            headers["Content-Length"] = str(end - start)
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{self.size}"
            elif status == 416:
                headers["Content-Range"] = f"bytes */{self.size}"
            await send({"type": "http.response.start", "status": status, "headers": headers.raw})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            while start < end:
                block = await anyio.to_thread.run_sync(os.pread, self.fd, min(BLOCK, end - start), start)
                if not block:  # the file shrank: the body ends short, and the client sees it
                    break
                start += len(block)
                await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(self.fd)

    def _span(self, request_headers: Headers) -> tuple[int, int, int]:
        """The bytes to send, ``[start, end)``, and the status: 200, 206 for one satisfiable
        range, 416 for one beyond the end. Several ranges, a malformed one or an ``If-Range``
        for another version get the whole file, as HTTP allows."""
        wanted = request_headers.get("range")
        if_range = request_headers.get("if-range")
        if wanted is None or (if_range is not None and if_range != self.headers.get("etag")):
            return 0, self.size, 200
        match = _RANGE.fullmatch(wanted.strip())
        if match is None or match.group(1) is None and match.group(2) is None:
            return 0, self.size, 200
        first, last = match.group(1), match.group(2)
        if first is None:  # a suffix: the last N bytes
            length = min(int(last), self.size)
            return (self.size - length, self.size, 206) if length else (0, 0, 416)
        start = int(first)
        end = self.size if last is None else min(int(last) + 1, self.size)
        if last is not None and int(last) < start:
            return 0, self.size, 200  # malformed: ignored
        if start >= self.size:
            return 0, 0, 416
        return start, end, 206
