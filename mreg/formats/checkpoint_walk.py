"""Walks of a checkpoint's object tree that visit each shared container once.

A pickle can reference one container from many places: forty tuples, each holding
the previous one twice, are 40 objects but 2**40 paths. :func:`survey` measures
a tree by visiting each container once (memoized by identity): how deep it nests,
whether a container holds itself, and how many paths and characters listing it
would produce. :func:`leaves` lists paths only once the survey says they are few
enough, and skips subtrees that hold nothing wanted, so the work of every walk is
bounded whatever the file.

The same walks serve descriptions (:mod:`mreg.checkpoints`) and the objects torch
builds from them (:mod:`mreg.pytorch`), which share containers the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from mreg.formats.containers import FormatError
from mreg.formats.pickle_globals import MAX_DEPTH, AttributedDict, Size

MAX_EDGES = 1 << 24  # container entries a survey may visit (each shared container counted once)
MAX_VISITS = 1 << 22  # containers entered plus values yielded by one listing
MAX_PATH_TEXT = 1 << 26  # characters of all the paths one listing yields
CONTAINERS = (dict, list, tuple)

class Extent(NamedTuple):
    """What a container holds, counted along every path (exact integers: a shared tree's may be huge)."""

    height: int  # containers nested in the deepest path, itself included
    paths: int  # wanted values reachable, one per path
    visits: int  # containers entered and values yielded when listing those paths
    text: int  # characters of those paths below this container


def is_container(value: Any, atomic: tuple[type, ...] = (Size,)) -> bool:
    """Dicts, lists and tuples are walked into; tuples of an ``atomic`` type (sizes) are values."""
    return isinstance(value, CONTAINERS) and not isinstance(value, atomic)


def entries(value: Any, attributes: bool = False) -> Iterable[tuple[Any, Any]]:
    """``(key, item)`` of a container; ``attributes``: an AttributedDict's attributes too."""
    if isinstance(value, dict):
        if attributes and isinstance(value, AttributedDict) and value.attributes:
            return [*value.items(), *value.attributes.items()]
        return value.items()
    return enumerate(value)


def survey(
    root: Any, atomic: tuple[type, ...] = (Size,), wanted: tuple[type, ...] | None = None, attributes: bool = False
) -> dict[int, Extent]:
    """The :class:`Extent` of every container under ``root``, by ``id``, each visited once.

    Args:
        wanted: the types of the values to count (None: every value that is not a container).

    Raises:
        FormatError: a container holds itself, containers nest more than MAX_DEPTH
            deep, or the tree has more than MAX_EDGES entries in its distinct containers.
    """
    extents: dict[int, Extent] = {}
    if not is_container(root, atomic):
        return extents
    open_ids = {id(root)}
    # A frame: a container, the key it has in its parent, its entries not yet seen,
    # and the sums (height, paths, visits, text) of those seen.
    stack: list[tuple[Any, Any, Iterator[tuple[Any, Any]], list[int]]] = [(root, None, iter(entries(root, attributes)), [0, 0, 1, 0])]
    edges = 0
    while stack:
        node, node_key, pending, sums = stack[-1]
        for key, item in pending:
            edges += 1
            if not isinstance(item, CONTAINERS) or isinstance(item, atomic):
                if wanted is None or isinstance(item, wanted):  # a value listed under this key
                    sums[1] += 1
                    sums[2] += 1
                    sums[3] += len(key if type(key) is str else str(key)) + 1
                continue
            if edges > MAX_EDGES:
                raise FormatError(f"checkpoint has more than {MAX_EDGES} entries in its containers")
            known = extents.get(id(item))
            if known is not None:  # shared: measured once, counted along this path too
                if len(stack) + known.height > MAX_DEPTH:
                    raise FormatError(f"checkpoint nests containers more than {MAX_DEPTH} deep")
                _add(sums, known, key)
                continue
            if id(item) in open_ids or len(stack) >= MAX_DEPTH:
                raise FormatError(f"checkpoint nests containers more than {MAX_DEPTH} deep (or a container holds itself)")
            open_ids.add(id(item))
            stack.append((item, key, iter(entries(item, attributes)), [0, 0, 1, 0]))
            break
        else:  # every entry seen: the container is measured
            if edges > MAX_EDGES:
                raise FormatError(f"checkpoint has more than {MAX_EDGES} entries in its containers")
            stack.pop()
            open_ids.discard(id(node))
            extent = extents[id(node)] = Extent(sums[0] + 1, *sums[1:])
            if stack:
                _add(stack[-1][3], extent, node_key)
    return extents


def _add(sums: list[int], extent: Extent, key: Any) -> None:
    """Add what one container entry (under ``key``) holds to its parent's sums."""
    sums[0] = max(sums[0], extent.height)
    if extent.paths:
        sums[1] += extent.paths
        sums[2] += extent.visits
        sums[3] += extent.text + extent.paths * (len(_key_text(key)) + 1)


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def leaves(
    value: Any, prefix: str = "", atomic: tuple[type, ...] = (Size,), wanted: tuple[type, ...] | None = None
) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every wanted value of a tree of dicts, lists and tuples; keys are joined with dots.

    A container reached along two paths is listed under both, as the tree reads;
    subtrees without a wanted value are skipped.

    Args:
        wanted: the types of the values to list (None: every value that is not a container).

    Raises:
        FormatError: the tree is malformed (see :func:`survey`), or listing it would
            yield more than MAX_VISITS values or MAX_PATH_TEXT characters of paths.
    """
    if not is_container(value, atomic):
        if wanted is None or isinstance(value, wanted):
            yield prefix, value
        return
    extents = survey(value, atomic, wanted)
    total = extents[id(value)]
    if total.visits > MAX_VISITS or total.text > MAX_PATH_TEXT:
        raise FormatError(
            f"checkpoint's shared containers expand to more than {MAX_VISITS} entries or {MAX_PATH_TEXT} characters of names"
        )
    if total.paths:
        yield from _listing(value, prefix, extents, atomic, wanted)


def _listing(
    root: Any, prefix: str, extents: dict[int, Extent], atomic: tuple[type, ...], wanted: tuple[type, ...] | None
) -> Iterator[tuple[str, Any]]:
    """The paths :func:`leaves` yields, walked with a stack of its own (no recursion)."""
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [(prefix, iter(entries(root)))]
    while stack:
        prefix, pending = stack[-1]
        for key, inner in pending:
            if isinstance(inner, CONTAINERS) and not isinstance(inner, atomic):
                if extents[id(inner)].paths:
                    stack.append((f"{prefix}.{_key_text(key)}" if prefix else _key_text(key), iter(entries(inner))))
                    break
            elif wanted is None or isinstance(inner, wanted):
                yield f"{prefix}.{_key_text(key)}" if prefix else _key_text(key), inner
        else:
            stack.pop()


def check_structure(root: Any) -> None:
    """Refuse a tree that holds itself, nests too deep or is too large (attributes included).

    Raises:
        FormatError: see :func:`survey`.
    """
    survey(root, wanted=(), attributes=True)
