"""``mreg fsck --repair``: damaged and missing objects restored from the stores this registry knows.

fsck finds an object whose bytes no longer hash to its name (a flipped bit, a
truncated file) or one the refs need that is gone. Another copy of the registry
usually has it: a fallback (``fallback.url``, ``MREG_FALLBACK``) or a remote
(``remote.NAME.url``, as ``clone`` sets ``origin``). For every object the refs need
(manifests, files, their chunks, notes) that is damaged or missing here, each of
those stores is asked in turn, and the first good copy is restored:

- it is fetched into a temporary file of the store, bounded by the size the manifest
  or chunk index declares, and checked against its digest (and that size) before
  anything else happens;
- it then replaces the damaged file in one ``rename``: at every instant the object's
  name holds the damaged bytes or the good ones, never nothing, and a copy that fails
  its check is dropped, leaving the damaged one where it was;
- a file another store keeps as chunks is restored as its chunk index once each chunk
  is here and good, and the whole hashes to the file's digest; the damaged form of the
  other shape is removed only after the good one is in place.

Restoring a manifest can reveal files the refs need that are missing too: the walk
repeats until nothing more comes back. Objects nothing refers to are left for ``gc``.
Repair runs under the store's shared lock, as any writer does, so ``gc`` waits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mreg.errors import MregError, RemoteError
from mreg.records.limits import MAX_MANIFEST_SIZE, MAX_NOTE_SIZE
from mreg.records.manifest import Manifest
from mreg.records.names import Digest
from mreg.sharing.fetching import fetch_index, open_blob
from mreg.sharing.locations import open_source
from mreg.storage.blobs import write_hashing
from mreg.storage.files import unique_temp_path

if TYPE_CHECKING:
    from mreg.sharing.sources import Source
    from mreg.store.store import Store

MAX_ROUNDS = 8  # a restored manifest reveals its files, a restored index its chunks: a few rounds at most


@dataclass
class Restoration:
    """What a repair restored and what it could not: notes for fsck's report."""

    restored: list[str] = field(default_factory=list)  # "sha256:... from LOCATION"
    failed: dict[Digest, str] = field(default_factory=dict)  # digest -> why

    @property
    def notes(self) -> list[str]:
        lines = [f"restored object {line}" for line in self.restored]
        lines += [f"could not restore object {digest}: {why}" for digest, why in sorted(self.failed.items())]
        return lines


def restore(store: Store, damaged: Iterable[Digest]) -> Restoration:
    """Restore every damaged or missing object the refs need from the fallbacks and remotes
    (see the module docstring); ``damaged`` are the objects fsck found corrupt."""
    outcome = Restoration()
    bad = set(damaged)
    sources, failures = _sources(store)
    with store.writing():
        for _ in range(MAX_ROUNDS):
            wanted = {d: size for d, size in needed(store, bad).items() if d in bad or not store.objects.contains(d)}
            wanted = {d: size for d, size in wanted.items() if d not in outcome.failed}
            if not wanted:
                break
            for digest, size in sorted(wanted.items()):
                if digest in bad and store.objects.contains(digest) and store.objects.verify(digest) is None:
                    bad.discard(digest)  # made whole meanwhile (a chunk restored with its file)
                    continue
                source = _restore_one(store, digest, size, sources, outcome, failures)
                if source is not None:
                    bad.discard(digest)
                    outcome.restored.append(f"{digest} from {source}")
    return outcome


def _restore_one(
    store: Store, digest: Digest, size: int | None, sources: list[Source], outcome: Restoration, failures: list[str]
) -> str | None:
    """The location the object was restored from, or None (the reason is in ``outcome.failed``)."""
    reasons = list(failures)
    for source in sources:
        try:
            if restore_from(store, source, digest, size):
                return source.location
        except MregError as exc:
            reasons.append(exc.message)
        except OSError as exc:
            reasons.append(f"{source.location}: {exc.strerror or exc}")
    where = ", ".join(source.location for source in sources)
    outcome.failed[digest] = "; ".join(reasons) if reasons else (f"not in {where}" if where else "no fallback or remote is configured")
    return None


def needed(store: Store, damaged: set[Digest]) -> dict[Digest, int | None]:
    """Every object the refs need that can be named from what is readable here, with the
    size its manifest or chunk index declares (None: a manifest or a note, bounded by
    their limits)."""
    wanted: dict[Digest, int | None] = {}
    for name in store.refs.names():
        try:
            versions = store.refs.read(name).versions.values()
            notes = store.refs.read_notes(name).values()
        except MregError:
            continue  # damaged refs: fsck reports them; nothing here can restore them
        wanted.update({Digest(note): None for note in notes})
        for digest in versions:
            wanted[Digest(digest)] = None
            manifest = _readable_manifest(store, Digest(digest), damaged)
            for entry in manifest.files if manifest is not None else ():
                wanted[entry.digest] = entry.size
                if entry.digest not in damaged and store.objects.is_chunked(entry.digest):
                    try:
                        wanted.update(store.objects.chunks(entry.digest))
                    except MregError:
                        pass  # an unreadable index: its file is damaged, and restored whole
    return wanted


def _readable_manifest(store: Store, digest: Digest, damaged: set[Digest]) -> Manifest | None:
    if digest in damaged or not store.objects.contains(digest):
        return None
    try:
        return Manifest.decode(store.objects.read_bytes(digest), digest)
    except (MregError, OSError):
        return None


def restore_from(store: Store, source: Source, digest: Digest, size: int | None) -> bool:
    """Restore one object from ``source``, as a blob or as a chunk index (see the module
    docstring); False when ``source`` has neither.

    Raises:
        RemoteError: the source failed, or sent bytes that do not check.
    """
    if _chunks_restored(store, source, digest):
        return True
    limit = size if size is not None else max(MAX_MANIFEST_SIZE, MAX_NOTE_SIZE)
    blocks = open_blob(source, digest, limit)
    if blocks is not None:
        _install(store, blocks, digest, size, store.objects.object_path(digest))
        store.objects.index_path(digest).unlink(missing_ok=True)  # a damaged other shape, now shadowed
        return True
    found = fetch_index(source, digest, limit)
    if found is None:
        return False
    index, chunks = found
    if not _restore_chunks(store, source, chunks):
        return False
    if _whole_digest(store, [chunk for chunk, _ in chunks]) != digest:
        return False  # the source's index does not describe this file: not installed
    _install(store, [index], None, len(index), store.objects.index_path(digest))
    store.objects.object_path(digest).unlink(missing_ok=True)  # the damaged blob would shadow the index
    return True


def _chunks_restored(store: Store, source: Source, digest: Digest) -> bool:
    """True when ``digest`` is a file stored here as chunks whose index still reads, and
    restoring its damaged or missing chunks from ``source`` made it whole again (the usual
    case: one bad chunk, restored alone)."""
    if not store.objects.is_chunked(digest):
        return False
    try:
        chunks = store.objects.chunks(digest)
    except MregError:
        return False  # the index itself is damaged
    return bool(chunks) and _restore_chunks(store, source, chunks) and store.objects.verify(digest) is None


def _restore_chunks(store: Store, source: Source, chunks: list[tuple[Digest, int]]) -> bool:
    """Restore each damaged or missing chunk from ``source``; False if it lacks one."""
    for chunk, chunk_size in chunks:
        problem = store.objects.verify(chunk) if store.objects.object_path(chunk).is_file() else "missing"
        if problem is not None and not _blob_restored(store, source, chunk, chunk_size):
            return False
    return True


def _blob_restored(store: Store, source: Source, digest: Digest, size: int) -> bool:
    """Restore one blob (a chunk) from ``source``; False when it does not have it."""
    blocks = open_blob(source, digest, size)
    if blocks is None:
        return False
    _install(store, blocks, digest, size, store.objects.object_path(digest))
    return True


def _whole_digest(store: Store, chunks: list[Digest]) -> Digest:
    hasher = hashlib.sha256()
    for chunk in chunks:
        with open(store.objects.object_path(chunk), "rb") as stream:
            while block := stream.read(1 << 20):
                hasher.update(block)
    return Digest("sha256:" + hasher.hexdigest())


def _install(store: Store, blocks: Iterable[bytes], digest: Digest | None, size: int | None, target: Path) -> None:
    """Write ``blocks`` to a temporary file, check their digest (unless None) and size,
    sync them, and rename them over ``target`` in one step.

    Raises:
        RemoteError: the bytes do not check; ``target`` is left as it was.
    """
    store.objects.tmp_dir.mkdir(parents=True, exist_ok=True)
    temp = unique_temp_path(store.objects.tmp_dir, "repair")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            hexdigest = write_hashing(fd, blocks)
            os.fsync(fd)
        finally:
            os.close(fd)
        written = temp.stat().st_size
        if digest is not None and "sha256:" + hexdigest != digest:
            raise RemoteError(f"the copy of {digest} does not match its digest; not restored")
        if size is not None and written != size:
            raise RemoteError(f"the copy of {digest or target.name} has {written} bytes, not the {size} expected; not restored")
        store.objects.install(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _sources(store: Store) -> tuple[list[Source], list[str]]:
    """The fallbacks, then the remotes, each location once, opened; and why any could not be."""
    sources = list(store.fallbacks.sources())
    failures = list(store.fallbacks.warnings)
    seen = {source.location for source in sources}
    for name in store.config.subsections("remote"):
        url = store.config.get(f"remote.{name}.url")
        if not url or url in seen:
            continue
        seen.add(url)
        try:
            sources.append(open_source(url, timeout=store.fallbacks.timeout, config=store.config))
        except MregError as exc:
            failures.append(f"remote {name}: {exc.message}")
    return sources, failures
