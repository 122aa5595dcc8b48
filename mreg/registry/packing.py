"""Packing: stored chunks re-encoded as packed records, and back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.storage.threads import ProgressReport
from mreg.store.store import Store

if TYPE_CHECKING:
    from mreg.records.packing import PackReport


class Packing:
    """:class:`~mreg.registry.Registry` methods. Packed objects (see :mod:`mreg.operations.packing`)."""

    store: Store

    def pack(self, *, all: bool = False, dry_run: bool = False, progress: ProgressReport | None = None) -> PackReport:
        """Re-encode the cold chunks of every model as packed records (lossless: deltas
        against the same tensor of the next version, or alone), keeping each chunk's
        name; the newest version of each model and tagged ones stay raw unless ``all``.
        ``dry_run`` changes nothing and estimates the saving from samples."""
        from mreg.operations.packing import (
            pack,  # start-up: only `mreg pack` plans packs
        )

        return pack(self.store, include_hot=all, dry_run=dry_run, progress=progress)
