"""Where other registries are: paths and URLs, opened as sources.

``open_source`` is the one place that turns a location (a path, an ``http(s)://``
URL, a bucket URL) into a :class:`~mreg.sharing.sources.Source`; a bucket's source
(and obstore with it) is imported only when a bucket is named.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.errors import RemoteError
from mreg.sharing.sources import (
    DEFAULT_HTTP_TIMEOUT,
    DirectorySource,
    HttpSource,
    Source,
)

if TYPE_CHECKING:
    from mreg.storage.config import Config

URL_SCHEMES = ("http", "https", "s3", "gs", "az")


def open_source(location: str, *, timeout: float = DEFAULT_HTTP_TIMEOUT, config: Config | None = None, check: bool = True) -> Source:
    """A Source for a path, an ``http(s)://`` URL or a bucket (``s3://``, ``gs://``, ``az://``).

    ``config`` gives a bucket the endpoint and region of the remote that names it. A
    bucket is checked with one request (missing, credentials refused) unless ``check``
    is False: then its first read fails the same way.

    Raises:
        RemoteError: a path that holds no registry, or a bucket that cannot be read.
    """
    if re.match(r"https?://", location):
        return HttpSource(location, timeout=timeout)
    if re.match(r"(s3|gs|az)://", location):
        from mreg.sharing.buckets.source import (
            open_bucket_source,  # start-up: obstore, only when a bucket is used
        )

        return open_bucket_source(location, config, timeout, check=check)
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
