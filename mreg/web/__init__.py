"""The read-only web UI of a registry, and its store served to mreg clients (``mreg serve``).

Nothing else in mreg imports this package: it needs the ``serve`` extra (Starlette,
uvicorn, Jinja2), which only ``mreg serve`` loads. Every page is server-rendered
HTML (charts and lineage graphs as inline SVG) with a JSON twin under ``/api``;
the store's files are served at the paths :class:`mreg.sharing.sources.HttpSource` reads.

May import: the PyTorch adapter (lazily, for a tensor diff), :mod:`mreg.registry` and
everything below it (:mod:`.reader` builds a read-only store).
"""

from __future__ import annotations

from mreg.web.app import create_app

__all__ = ["create_app"]
