"""Resolving references: ref tables, the log, digests."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mreg.errors import (
    AmbiguousRefError,
    ObjectNotFoundError,
    RemoteError,
    UnknownRefError,
)
from mreg.records.limits import MAX_MANIFEST_SIZE
from mreg.records.manifest import looks_like_manifest
from mreg.records.names import LATEST, Digest, Ref, is_log_time, parse_digest_prefix

if TYPE_CHECKING:
    from mreg.records.refs import LogEntry, RefTable
    from mreg.storage.objects import ObjectStore


def resolve_in_table(ref: Ref, table: RefTable) -> tuple[str, Digest]:
    """The version a named reference names in one model's refs, and its digest.

    Raises:
        UnknownRefError: the model, version or tag is not there.
    """
    if not table.versions:
        raise UnknownRefError(str(ref), f"no model named '{ref.name}'")
    if ref.is_latest:
        assert table.latest is not None  # a table with versions always has latest
        return table.latest, table.versions[table.latest]
    if ref.tag is not None:
        version = table.tags.get(ref.tag)
        if version is None:
            meant = _meant(ref.name, ref.tag, [*table.tags, LATEST])
            raise UnknownRefError(str(ref), f"'{ref.name}' has no tag '{ref.tag}'", meant)
        return version, table.versions[version]
    digest = table.versions.get(ref.version or "")
    if digest is None:
        meant = _meant(ref.name, str(ref.version), table.versions)
        raise UnknownRefError(str(ref), f"'{ref.name}' has no version {ref.version} (latest is {table.latest})", meant)
    return str(ref.version), digest


def _meant(name: str, selector: str, candidates: Iterable[str]) -> list[str]:
    """``NAME@TAG`` or ``NAME@VERSION`` references close to the one not found."""
    from mreg.records.suggestions import similar  # start-up: only a name not found needs it

    return [f"{name}@{candidate}" for candidate in similar(selector, candidates)]


def resolve_at(ref: Ref, log: list[LogEntry]) -> tuple[str, Digest]:
    """The version a tag or ``latest`` named at the time ``ref.at``, and its digest, replaying the
    model's log (oldest first) as git replays a reflog for ``ref@{date}``.

    Raises:
        UnknownRefError: the tag (or the model) did not exist then.
    """
    assert ref.at is not None
    what = LATEST if ref.is_latest else f"tags/{ref.tag}"
    label = "latest version" if ref.is_latest else f"tag '{ref.tag}'"
    version, first = _value_at(log, what, ref.at)
    if version is None:
        since = f" (it was first set at {first})" if first else ""
        raise UnknownRefError(str(ref), f"'{ref.name}' had no {label} at {ref.at}{since}")
    digest, _ = _value_at(log, f"versions/{version}", ref.at)
    if digest is None:
        raise UnknownRefError(str(ref), f"the log of '{ref.name}' does not say what {version} was at {ref.at}")
    return version, Digest(digest)


def _value_at(log: list[LogEntry], ref: str, at: str) -> tuple[str | None, str | None]:
    """What ``ref`` pointed at, at time ``at`` (None: nothing), and when it was first set."""
    value, first = None, None
    for entry in log:
        # Times in the log's fixed width order as text; any other (a log from elsewhere)
        # cannot be placed in time, so it never decides what a ref was.
        if entry.ref != ref or not is_log_time(entry.time):
            continue
        first = first or entry.time
        if entry.time <= at:
            value = entry.new
    return value, first


def is_manifest(store: ObjectStore, digest: Digest) -> bool:
    """True when a stored object is a manifest (manifests are small msgpack maps)."""
    try:  # non-blocking, then fstat: a FIFO planted among the objects must not hang the lookup
        fd = os.open(store.object_path(digest), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with open(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        data = stream.read(MAX_MANIFEST_SIZE + 1)
    return len(data) <= MAX_MANIFEST_SIZE and looks_like_manifest(data)


def resolve_digest(store: ObjectStore, ref: Ref, fetch: Callable[[Digest], None]) -> Digest:
    """The manifest a ``sha256:`` reference names: a full digest (here, or brought here by
    ``fetch`` from elsewhere) or a unique prefix of one stored here."""
    prefix = ref.digest_prefix or ""
    if len(prefix) == 64:
        digest = Digest("sha256:" + prefix)
        fetch(digest)
        if is_manifest(store, digest):
            return digest
        detail = "it is a file, not a manifest" if store.contains(digest) else "no such manifest"
        raise UnknownRefError(str(ref), detail)
    candidates = [d for d in store.find_prefix(prefix) if is_manifest(store, d)]
    if not candidates:
        raise UnknownRefError(str(ref), "no manifest has that digest prefix")
    if len(candidates) > 1:
        raise AmbiguousRefError(f"digest prefix '{ref}' is ambiguous: it matches {len(candidates)} manifests; give more digits")
    return candidates[0]


def find_object(store: ObjectStore, text: str) -> Digest:
    """The object a full digest or a unique prefix (8+ hex digits) names, of any type."""
    candidates = store.find_prefix(parse_digest_prefix(text))
    if not candidates:
        raise ObjectNotFoundError(text)
    if len(candidates) > 1:
        raise AmbiguousRefError(f"digest prefix '{text}' is ambiguous: it matches {len(candidates)} objects")
    return candidates[0]


def refuse_reuse(local: RefTable, name: str, version: str, digest: Digest, location: str) -> None:
    """Refuse a fallback's answer that makes a version removed (or held) here name other bytes.

    Raises:
        RemoteError: naming the fallback, the version and both digests.
    """
    reused = local.reuse(version, digest)
    if reused:
        raise RemoteError(f"{location} has {name}@{version} as {digest[:15]}, but here {reused}; refused")
