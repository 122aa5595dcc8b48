"""The rules of a transfer: what may be copied over what, and the table it gives.

A version both sides have must name the same manifest, and so must a tombstone (a
version removed on one side was released with those bytes: a version number is never
reused). A tag that points elsewhere on the destination moves only when forced, or
when the move is a fast-forward (:func:`mreg.sharing.history.fast_forward`: only the
source moved it since the two last agreed). Messages say which side is which from
the point of view of the registry running the command: *here* is this registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import ConflictError

if TYPE_CHECKING:
    from mreg.records.refs import RefTable


class Sides(NamedTuple):
    """How messages name the destination and the source: ``here`` and ``there`` (a pull),
    or ``there`` and ``here`` (a push)."""

    destination: str
    source: str


PULL = Sides("here", "there")
PUSH = Sides("there", "here")


def conflicts(name: str, theirs: RefTable, ours: RefTable, force: bool, movable: Mapping[str, str] | None = None, sides: Sides = PULL) -> list[str]:
    """Why copying ``theirs`` over ``ours`` would overwrite something (empty: it would not).

    ``movable`` maps each tag that may move without force (a fast-forward) to the value
    it was judged against: it moves only if it still points there.
    """
    found = []
    here, there = sides
    for version, digest in theirs.versions.items():
        mine, gone = ours.versions.get(version), ours.removed.get(version)
        if mine is not None and mine != digest:
            found.append(f"{name}@{version} is {mine[:15]} {here} but {digest[:15]} {there}")
        elif gone is not None and gone != digest:
            found.append(f"{name}@{version} was removed {here} while it was {gone[:15]}, but is {digest[:15]} {there}: a version number is never reused")
        elif mine is None and gone is None and ours.same_precedence(version):
            found.append(f"{name}@{version} has the precedence of {name}@{ours.same_precedence(version)} {here}")
    for version, digest in theirs.removed.items():
        mine, gone = ours.versions.get(version), ours.removed.get(version)
        if mine is not None and mine != digest:
            found.append(f"{name}@{version} is {mine[:15]} {here} but was removed {there} while it was {digest[:15]}")
        elif gone is not None and gone != digest:
            found.append(f"{name}@{version} was removed {here} while it was {gone[:15]} but {there} while it was {digest[:15]}")
    for tag, version in theirs.tags.items():
        current = ours.tags.get(tag)
        if current is not None and current != version and not force and (movable or {}).get(tag) != current:
            found.append(f"tag {name}@{tag} points at {current} {here} but {version} {there} (use {{force}} to move it)")
    return found


def merged(name: str, theirs: RefTable, force: bool, movable: Mapping[str, str], sides: Sides, ours: RefTable) -> RefTable:
    """``ours`` with the versions, tombstones, tags and signatures of ``theirs`` added.

    Raises:
        ConflictError: they conflict (the destination changed since it was checked).
    """
    problems = conflicts(name, theirs, ours, force, movable, sides)
    if problems:
        raise ConflictError("; ".join(problems), options={"force": "force=True"})
    table = ours
    for version, digest in theirs.versions.items():
        if version not in table.versions:
            table = table.with_version(version, digest)
    for version, digest in theirs.removed.items():
        if version not in table.removed:
            table = table.with_tombstone(version, digest)
    for tag, version in theirs.tags.items():
        if table.tags.get(tag) != version:
            table = table.with_tag(tag, version)
    return table.with_signatures(theirs.signatures) if not theirs.signatures <= table.signatures else table


def diverging_tags(theirs: RefTable, ours: RefTable) -> dict[str, str]:
    """The tags both sides have, pointing at different versions: tag -> ours."""
    return {tag: ours.tags[tag] for tag, version in theirs.tags.items() if ours.tags.get(tag) not in (None, version)}
