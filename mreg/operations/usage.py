"""``mreg du``: what users registered (logical bytes) against what the store holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mreg.operations import pack_check
from mreg.operations.maintenance import file_objects
from mreg.operations.notes import reachable as reachable_notes
from mreg.records.names import Digest
from mreg.records.reports import ModelUsage, UsageReport

if TYPE_CHECKING:
    from mreg.store.store import Store








def _file_lists(store: Store, digests: list[Digest]) -> dict[Digest, tuple[int, int, list[Digest]]]:
    """For each manifest: its own size, its files' total size and their digests (from the
    metadata index's plain columns; manifests it lacks are read and added)."""
    cached = store.index.file_lists()
    found = {digest: cached[digest] for digest in digests if digest in cached}
    for digest, row in store.manifest_rows(d for d in digests if d not in found).items():
        found[digest] = (row.size, row.total_size, [Digest(file[1]) for file in row.files])
    return found


def disk_usage(store: Store) -> UsageReport:
    """Measure logical and stored bytes, per model and for the whole store.

    Sizes come in one query from the metadata index (no manifest is decoded), and each file's objects
    are looked up once however many versions share it.
    """
    from mreg.storage.index import (
        without_gc,  # start-up: sqlite3, only commands that read many versions
    )

    with without_gc():
        return _measure(store)


def _measure(store: Store) -> UsageReport:
    stored = store.objects
    tables = {name: store.refs.read(name).versions for name in store.refs.names()}
    tables = {name: versions for name, versions in tables.items() if versions}
    manifests = _file_lists(store, [d for versions in tables.values() for d in versions.values()])
    sizes = {digest: size for digest, (size, _, _) in manifests.items()}
    needs = {f: file_objects(store, f) for f in {f for _, _, files in manifests.values() for f in files}}
    for objects in needs.values():
        sizes.update((d, stored.stored_size(d)) for d in objects if d not in sizes)
    models, everything = [], set()
    for name, versions in tables.items():
        objects = set(versions.values())
        logical = 0
        for digest in versions.values():
            _, total, files = manifests[digest]
            logical += total
            for file in files:
                objects |= needs[file]
        noted = reachable_notes(store, name)  # notes and their history, which gc keeps
        sizes.update((d, stored.stored_size(d)) for d in noted if d not in sizes)
        objects |= noted
        everything |= objects
        models.append(ModelUsage(name, len(versions), logical, sum(sizes[d] for d in objects)))
    inventory = stored.inventory()
    packed = pack_check.packed_objects(store, inventory.packed)
    bases = pack_check.base_closure(packed, everything)  # unreachable, but gc keeps them
    unreachable = sum(stored.stored_size(d) for d in inventory.digests - everything - bases)
    cache = sum(path.stat().st_size for _, path in stored.cached_files())
    needed = [d for d in packed.sizes if d in everything]
    return UsageReport(
        models=tuple(models),
        logical=sum(m.logical for m in models),
        stored=sum(sizes[d] for d in everything),
        unreachable=unreachable,
        cache=cache,
        packed_raw=sum(packed.sizes[d] for d in needed),
        packed_stored=sum(_size(stored.pack_path(d)) for d in needed),
        bases=sum(stored.stored_size(d) for d in bases),
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
