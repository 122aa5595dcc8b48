"""The ``mreg`` command line: a thin layer over :class:`mreg.Registry`.

Commands live in ``porcelain``, ``plumbing``, ``analysis`` and ``remote``, and are
loaded on demand by the group in ``app`` (see ``app.COMMANDS``). Each parses its
arguments, makes one call of the facade and prints; errors become one line and an
exit code (:mod:`.errors`).

May import: :mod:`mreg.registry`, :mod:`mreg.records` and the base modules; the web
UI and the PyTorch adapter only lazily, in the commands that need them. Never an
operation, the store or storage directly (an import-linter contract).
"""

from mreg.cli.app import cli, main

__all__ = ["cli", "main"]
