"""The ``mreg`` command line: a thin layer over :class:`mreg.Registry`.

Commands live in ``porcelain``, ``plumbing``, ``analysis`` and ``remote``, and are
loaded on demand by the group in ``app`` (see ``app.COMMANDS``).
"""

from mreg.cli.app import cli, main

__all__ = ["cli", "main"]
