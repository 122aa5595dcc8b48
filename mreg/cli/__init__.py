"""The ``mreg`` command line: a thin layer over :class:`mreg.Registry`."""

from . import analysis, plumbing, porcelain, remote  # noqa: F401  (importing registers the commands)
from .app import cli, main

__all__ = ["cli", "main"]
