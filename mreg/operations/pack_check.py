"""Packed objects in fsck, gc and du: the bases they need, and what packing saved.

A packed object that a version needs keeps alive its base, and the base's base: gc
keeps that *base closure* with the reachable objects (an ``mreg rm`` of a newest
version leaves its chunks as bases until the next ``mreg pack`` re-encodes the
records that use them), and deletes packed objects before their bases, so that a
``kill -9`` mid-gc never leaves a record without its base. fsck decodes every packed
object against its name like any other (:meth:`ObjectStore.verify`); here it also
notes chains deeper than ``pack.depth`` and blobs left in both forms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import InvalidInputError, MregError
from mreg.records.names import Digest
from mreg.storage.pack_layout import BASE_HEADER, read_header
from mreg.storage.packed import MAX_CHAIN

if TYPE_CHECKING:
    from mreg.records.reports import FsckReport
    from mreg.store.store import Store


DEFAULT_DEPTH = 10


def depth_limit(store: Store) -> int:
    """``pack.depth``: how many records a read may decode for one chunk (1 to :data:`MAX_CHAIN`)."""
    value = store.config.get("pack.depth")
    try:
        depth = DEFAULT_DEPTH if value is None else int(value)
    except ValueError:
        depth = 0
    if not 1 <= depth <= MAX_CHAIN:
        raise InvalidInputError(f"pack.depth in the config must be a whole number from 1 to {MAX_CHAIN}, not '{value}'")
    return depth


class Packed(NamedTuple):
    """The packed objects of a store: each one's base (None: standalone) and raw size."""

    bases: dict[Digest, Digest | None]
    sizes: dict[Digest, int]


def packed_objects(store: Store, listed: Iterable[Digest] | None = None) -> Packed:
    """Every packed object's base and raw size, from its header (an unreadable one is left
    out: fsck reports it when it decodes it). ``listed``: the packed objects, when the
    caller has just scanned the store (:meth:`~mreg.storage.layout.ObjectLayout.inventory`)."""
    found = Packed({}, {})
    for digest in store.objects.iter_packed() if listed is None else listed:
        try:
            with open(store.objects.pack_path(digest), "rb") as stream:
                header = read_header(stream.read(BASE_HEADER), digest=digest)
        except (OSError, MregError):
            continue
        found.bases[digest] = Digest(header.base) if header.base is not None else None
        found.sizes[digest] = header.size
    return found


def base_closure(packed: Packed, keep: Iterable[Digest]) -> set[Digest]:
    """The objects that kept packed objects need as bases, directly or through another
    base, and that are not in ``keep`` themselves."""
    kept = set(keep)
    found: set[Digest] = set()
    todo = [digest for digest in kept if packed.bases.get(digest) is not None]
    while todo:
        base = packed.bases.get(todo.pop())
        if base is not None and base not in kept and base not in found:
            found.add(base)
            todo.append(base)
    return found


def deletion_order(packed: Packed, doomed: Iterable[Digest]) -> list[Digest]:
    """``doomed`` ordered so that a record goes before the records and blobs it is a delta
    against (the deepest first; objects stored raw only, depth 0, last)."""
    return sorted(doomed, key=lambda digest: (-_depth(packed, digest), digest))


def check(store: Store, reachable: set[Digest], report: FsckReport) -> set[Digest]:
    """fsck's look at packs: notes on chains deeper than ``pack.depth`` and on blobs stored
    in both forms; returns the objects kept only as bases (not dangling: gc keeps them)."""
    packed = packed_objects(store)
    if not packed.bases:
        return set()
    try:
        limit = depth_limit(store)
    except MregError as exc:
        report.problems.append(str(exc))
        limit = MAX_CHAIN
    deep = [digest for digest in packed.bases if _depth(packed, digest) > limit]
    if deep:
        report.notes.append(f"{len(deep)} packed object(s) decode in more than pack.depth ({limit}) steps; 'mreg pack' re-encodes them")
    both = [digest for digest in packed.bases if store.objects.object_path(digest).is_file()]
    if both:
        report.notes.append(f"{len(both)} object(s) stored both raw and packed (an interrupted pack); 'mreg pack' keeps one form")
    bases = base_closure(packed, reachable)
    if bases:
        report.notes.append(f"{len(bases)} unreachable object(s) kept as bases of packed ones; 'mreg pack' re-encodes what uses them")
    return bases


def _depth(packed: Packed, digest: Digest) -> int:
    """Records a read of ``digest`` decodes (a loop counts past :data:`MAX_CHAIN`)."""
    steps, current = 0, digest
    while current in packed.bases and steps <= MAX_CHAIN:
        steps += 1
        base = packed.bases[current]
        if base is None:
            break
        current = base
    return steps
