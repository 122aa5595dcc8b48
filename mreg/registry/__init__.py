"""The registry: the Python API that the CLI mirrors, one call per command.

:class:`Registry` is a thin facade over a :class:`~mreg.store.store.Store`: each
method checks nothing itself and calls one operation of :mod:`mreg.operations`
(or the store) *down*; nothing below imports it. Its methods are grouped by topic
in the modules of this package (:mod:`.finding`, :mod:`.changing`, :mod:`.sharing`,
:mod:`.evidence`, :mod:`.plumbing`). It returns values and raises :class:`~mreg.errors.MregError`
subclasses; it never prints and never exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.store.store import Store

if TYPE_CHECKING:
    from mreg.records.transfer_report import TransferReport
    from mreg.storage.objects import ObjectStore
    from mreg.storage.refs import RefStore
    from mreg.storage.threads import ProgressReport

from mreg.registry.changing import Changing
from mreg.registry.evidence import Evidence
from mreg.registry.finding import Finding
from mreg.registry.plumbing import Plumbing
from mreg.registry.sharing import Sharing, fsck_bucket, gc_bucket

__all__ = ["Registry", "fsck_bucket", "gc_bucket"]


class Registry(Finding, Changing, Sharing, Evidence, Plumbing):
    """A model registry stored in a ``.mreg`` directory.

    Open one with :meth:`open` (finds the store like git finds ``.git``) or create
    one with :meth:`init`. ``registry.store`` is the open store the operations share.
    """

    def __init__(self, root: Path | Store) -> None:
        self.store = root if isinstance(root, Store) else Store(root)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Registry:
        """Create an empty registry in ``path/.mreg`` (harmless if it exists)."""
        return cls(Store.init(path))

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Registry:
        """Open the registry at ``path`` (a project directory or its ``.mreg``).

        Without ``path``: ``MREG_DIR`` if set, else the nearest ``.mreg`` found
        walking up from the current directory.

        Raises:
            RegistryNotFoundError: there is no registry there.
        """
        return cls(Store.open(path))

    @property
    def root(self) -> Path:
        """The ``.mreg`` directory."""
        return self.store.root

    @property
    def objects(self) -> ObjectStore:
        """The object store (plumbing: digests and bytes)."""
        return self.store.objects

    @property
    def refs(self) -> RefStore:
        """Every model's refs and logs (plumbing)."""
        return self.store.refs

    @classmethod
    def clone(cls, source: str, directory: str | os.PathLike[str] = ".", *, progress: ProgressReport | None = None) -> tuple[Registry, TransferReport]:
        """Create a registry in ``directory`` with every model of ``source``, as remote ``origin``."""
        from mreg.operations.remotes import (
            clone,  # start-up: only transfers load the sources
        )

        store, report = clone(source, str(directory), progress=progress)
        return cls(store), report
