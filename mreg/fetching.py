"""Fetching objects from another store, verified and bounded, several at once.

The one way mreg copies objects in: a transfer's files and a fallback's single file
alike are fetched by a bounded pool of threads. Every read stops at the size a
manifest or a chunk index declares (a manifest: at most ``MAX_MANIFEST_SIZE``), and
a chunk index is checked before any chunk is asked for. A file stored as chunks
is not fetched chunk after chunk: its chunks join the pool like any other object,
each verified against its own digest as it is stored, and the file's digest is
checked as its chunks land, in order, on whichever thread stored the next one
(reading them back from the page cache), so no thread ever waits for it. Only when
every chunk is in and the whole matches is the chunk index written: a file is never
visible before all its bytes are, and verified.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from .errors import CorruptObjectError, RemoteError
from .fileutil import Progress
from .names import Digest
from .object_store import ObjectStore
from .objects import MAX_MANIFEST_SIZE
from .remote import Source, bounded, object_path
from .segments import BLOCK_SIZE, decode_chunk_index
from .validation import MAX_CHUNK_INDEX_SIZE

T = TypeVar("T")
WORKERS = max(2, min(4, os.cpu_count() or 2))
"""Objects fetched at once from a source that does not say (``Source.concurrency``);
each also has a writer thread. Buckets ask for more: their requests wait on the network."""


def in_parallel(work: Callable[[T], object], items: Iterable[T], workers: int) -> None:
    """Run ``work`` on every item, ``workers`` at a time; the first error stops the rest and is raised.

    Plain threads, not concurrent.futures: importing that (and the logging it pulls in)
    costs a command that moves nothing a tenth of its time.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    positions = iter(range(len(items)))
    lock = threading.Lock()
    failures: list[tuple[int, BaseException]] = []

    def run() -> None:
        while True:
            with lock:
                position = None if failures else next(positions, None)
            if position is None:
                return
            try:
                work(items[position])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with lock:
                    failures.append((position, exc))

    threads = [threading.Thread(target=run, name="mreg-transfer", daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException as exc:  # Ctrl-C: start nothing more, let the running items end
        with lock:
            failures.append((-1, exc))
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]


def thread_safe(advance: Progress | None) -> Progress | None:
    """A progress callback that several threads may call."""
    if advance is None:
        return None
    lock = threading.Lock()

    def locked(count: int) -> None:
        with lock:
            advance(count)

    return locked


class Counter:
    """Objects and bytes copied, counted by several threads."""

    def __init__(self) -> None:
        self.objects = self.bytes = 0
        self.missing: list[Digest] = []  # files the source does not have
        self._lock = threading.Lock()

    def lacks(self, digest: Digest) -> None:
        with self._lock:
            self.missing.append(digest)

    def add(self, size: int, objects: int = 1) -> None:
        with self._lock:
            self.objects += objects
            self.bytes += size


def fetch_all(
    source: Source, store: ObjectStore, files: Mapping[Digest, int | None], workers: int, advance: Progress | None = None
) -> Counter:
    """Fetch stored files (blobs or chunked files) from ``source``, verified, ``workers`` at a time.

    ``files`` maps each digest to its declared size (None for a manifest, which must
    be small): no more is read, as :func:`mreg.fallback.fetch_object` reads. Each file
    is asked for as a blob first, then as a chunk index; the chunks of every chunked
    file are then fetched together.

    The returned counter lists the files ``source`` does not have in ``missing``.

    Raises:
        RemoteError: the source fails, lacks a chunk an index names, or sends bytes
            that do not match.
    """
    counter = Counter()
    indexes: dict[Digest, tuple[bytes, list[tuple[Digest, int]]]] = {}

    def blob_or_index(digest: Digest) -> None:
        size = files[digest]
        limit = MAX_MANIFEST_SIZE if size is None else size
        copied = fetch_blob(source, digest, store, advance, limit=limit, size=size)
        if copied is not None:
            counter.add(copied)
            return
        found = fetch_index(source, digest, limit)
        if found is None:
            counter.lacks(digest)
            return
        indexes[digest] = found

    in_parallel(blob_or_index, files, workers)
    checks: dict[Digest, list[_WholeCheck]] = {}  # chunk -> the files waiting for it
    sizes: dict[Digest, int] = {}
    for digest, (index, chunks) in indexes.items():
        check = _WholeCheck(source.location, digest, chunks, store, len(index))
        for chunk, size in check.chunks:
            checks.setdefault(chunk, []).append(check)
            sizes[chunk] = size
    missing = []
    for chunk, waiting in checks.items():
        if check_local_chunk(source, waiting[0].digest, chunk, sizes[chunk], store):
            for check in waiting:
                check.landed(chunk, counter)
        else:
            missing.append(chunk)

    def fetch_chunk(chunk: Digest) -> None:
        copied = fetch_blob(source, chunk, store, advance, limit=sizes[chunk], size=sizes[chunk])
        if copied is None:
            raise RemoteError(f"{source.location}: chunk {chunk} is missing there")
        counter.add(copied, objects=0)
        for check in checks[chunk]:
            check.landed(chunk, counter)

    in_parallel(fetch_chunk, missing, workers)
    return counter


def fetch_blob(
    source: Source,
    digest: Digest,
    store: ObjectStore,
    advance: Progress | None = None,
    *,
    limit: int,
    size: int | None = None,
    also: Any = None,
) -> int | None:
    """Copy one blob from ``source``, verified, reading at most ``limit`` bytes (exactly
    ``size`` when given); None when ``source`` does not have it as a blob.

    Raises:
        RemoteError: the source failed, or sent too many bytes or bytes that do not match.
    """
    streamed = source.stream(object_path(digest))
    if streamed is None:
        return None
    where = f"{source.location}/{object_path(digest)}"
    blocks, announced = streamed
    if announced is not None and announced > limit:
        getattr(blocks, "close", lambda: None)()
        raise RemoteError(f"{where} has {announced} bytes, but {limit} are expected; refused")
    copied = _store_blob(source, digest, bounded(blocks, limit, where), store, advance, also=also)
    if size is not None and copied != size:
        raise RemoteError(f"{where} has {copied} bytes, but {size} are expected; refused")
    return copied


def fetch_index(source: Source, digest: Digest, limit: int) -> tuple[bytes, list[tuple[Digest, int]]] | None:
    """A chunked file's index from ``source``: its bytes and its checked chunks (None: no index there)."""
    index = source.read_limited(object_path(digest) + ".chunks", MAX_CHUNK_INDEX_SIZE)
    if index is None:
        return None
    return index, _checked_index(source, digest, index, limit)


def check_local_chunk(source: Source, digest: Digest, chunk: Digest, size: int, store: ObjectStore) -> bool:
    """True when ``chunk`` is already stored here, with the size the index of ``digest`` gives it."""
    path = store.object_path(chunk)
    if not path.is_file():
        return False
    if path.stat().st_size != size:
        raise RemoteError(f"{source.location}: the chunk index of {digest} gives chunk {chunk} {size} bytes; it has {path.stat().st_size}")
    return True


def _checked_index(source: Source, digest: Digest, index: bytes, limit: int) -> list[tuple[Digest, int]]:
    """A fetched chunk index's chunks: well formed, not empty, adding up to at most ``limit``."""
    try:
        chunks = decode_chunk_index(index, digest)
    except CorruptObjectError as exc:
        raise RemoteError(f"{source.location}: {exc.message}") from None
    total = sum(n for _, n in chunks)
    if not chunks or total > limit:
        raise RemoteError(f"{source.location}: the chunk index of {digest} lists {len(chunks)} chunks of {total} bytes, not the {limit} expected; refused")
    return chunks


def _store_blob(
    source: Source, digest: Digest, blocks: Iterable[bytes], store: ObjectStore, advance: Progress | None, also: Any = None
) -> int:
    try:
        return store.add_blob(blocks, expected=digest, progress=advance, also=also).size
    except CorruptObjectError as exc:
        raise RemoteError(f"{source.location}: object {digest} does not match its digest there ({exc.message}); not cached") from None


class _WholeCheck:
    """A chunked file being fetched: hashes its chunks in order as they land, then
    writes its chunk index if the whole matches its digest."""

    def __init__(self, location: str, digest: Digest, chunks: list[tuple[Digest, int]], store: ObjectStore, index_size: int) -> None:
        self.location = location
        self.digest = digest
        self.chunks = chunks
        self.store = store
        self.index_size = index_size
        self.arrived: set[Digest] = set()
        self.next = 0  # the first chunk not hashed yet
        self.hasher = hashlib.sha256()
        self._hashing = False  # a thread is hashing: the others only note their chunk
        self._finished = False
        self._lock = threading.Lock()

    def landed(self, chunk: Digest, counter: Counter) -> None:
        """Note that a chunk is stored; unless another thread is at it, hash every
        chunk that is now next in line (a thread never waits for another's hashing)."""
        with self._lock:
            self.arrived.add(chunk)
            if self._hashing:
                return
            self._hashing = True
        try:
            while (following := self._next_arrived()) is not None:
                with open(self.store.object_path(following), "rb") as stream:
                    while block := stream.read(BLOCK_SIZE):
                        self.hasher.update(block)
                with self._lock:
                    self.next += 1
        except BaseException:
            with self._lock:
                self._hashing = False
            raise
        with self._lock:  # _next_arrived stopped the hashing; finish exactly once
            finish = self.next == len(self.chunks) and not self._finished
            self._finished = self._finished or finish
        if finish:
            self._finish(counter)

    def _next_arrived(self) -> Digest | None:
        """The next chunk to hash if it has landed; else None, and hashing stops (under the lock,
        so a chunk landing now is hashed by the thread that brought it)."""
        with self._lock:
            if self.next < len(self.chunks) and self.chunks[self.next][0] in self.arrived:
                return self.chunks[self.next][0]
            self._hashing = False
            return None

    def _finish(self, counter: Counter) -> None:
        if "sha256:" + self.hasher.hexdigest() != self.digest:
            raise RemoteError(f"{self.location}: the chunks of {self.digest} do not add up to it; not cached")
        self.store.add_chunk_index(self.digest, self.chunks)
        counter.add(self.index_size)
