"""Fetching objects from another store, verified and bounded, several at once.

The one way mreg copies objects in: a transfer's files and a fallback's single file
alike are fetched by a bounded pool of threads. Every read stops at the size a
manifest or a chunk index declares (a manifest: at most ``MAX_MANIFEST_SIZE``), and
a chunk index is checked before any chunk is asked for. A file stored as chunks is
stored in one ordered pass, as ``add`` stores a file, all its new chunks made
durable as one batch. The pool fetches the chunks that come next, several at once,
into memory (at most ``PREFETCH_BYTES`` ahead): the thread that fetched a chunk
checks it against its own digest and writes it to a temporary file, so chunks are
hashed and written on both cores while the ordered pass hashes the whole file from
the same bytes in memory; no byte is read twice. A chunk larger than the budget is
streamed, checked and written by the ordered pass when its turn comes. Chunks
already stored here are not fetched: their local bytes only feed the file's digest.
Only when every chunk is in and the whole matches is the chunk index written: a
file is never visible before all its bytes are, and verified.

A chunk the source stores packed (``.pack``, no raw blob) is fetched as it is and kept
packed, once it decodes to its name, its base fetched first (:mod:`mreg.sharing.packs`);
its decoded bytes feed the whole file's digest like a stored chunk's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mreg.errors import CorruptObjectError, MregError, RemoteError
from mreg.records.hashing import sha256
from mreg.records.limits import MAX_CHUNK_INDEX_SIZE, MAX_MANIFEST_SIZE
from mreg.sharing.sources import Source, bounded
from mreg.storage.blobs import Segment, segment_blocks, stage_blob
from mreg.storage.chunk_index import decode_chunk_index
from mreg.storage.layout import object_key
from mreg.storage.objects import ObjectStore, Piece
from mreg.storage.threads import Progress, in_parallel

if TYPE_CHECKING:
    from concurrent.futures import Future

    from mreg.records.names import Digest
    from mreg.sharing.packs import PackFetcher

WORKERS = max(2, min(4, os.cpu_count() or 2))
"""Objects fetched at once from a source that does not say (``Source.concurrency``);
each also has a writer thread. Buckets ask for more: their requests wait on the network."""
PREFETCH_BYTES = 64 << 20
"""Bytes of chunks fetched ahead, into memory, of the ordered pass that stores a chunked file."""


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
    is asked for as a blob first, then as a chunk index; the chunked files are then
    stored one after another, their chunks fetched ahead by the pool.

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
        if found is not None:
            indexes[digest] = found
            return
        from mreg.sharing.packs import PackFetcher  # start-up: only a store that packs has records to fetch

        fetcher = PackFetcher(source, store)
        record = fetcher.record(digest, size) if size is not None else None  # a packed blob (manifests never are)
        if record is None:
            counter.lacks(digest)
            return
        fetcher.fetch_packed(digest, size or 0, record)
        counter.add(fetcher.take_received())

    in_parallel(blob_or_index, files, workers)
    if indexes:
        _fetch_chunked(source, store, indexes, workers, advance, counter)
    return counter


def fetch_blob(
    source: Source, digest: Digest, store: ObjectStore, advance: Progress | None = None, *, limit: int, size: int | None = None
) -> int | None:
    """Copy one blob from ``source``, verified, reading at most ``limit`` bytes (exactly
    ``size`` when given); None when ``source`` does not have it as a blob.

    Raises:
        RemoteError: the source failed, or sent too many bytes or bytes that do not match.
    """
    blocks = open_blob(source, digest, limit)
    if blocks is None:
        return None
    copied = _store_blob(source, digest, blocks, store, advance)
    if size is not None and copied != size:
        raise RemoteError(f"{source.location}/{object_key(digest)} has {copied} bytes, but {size} are expected; refused")
    return copied


def open_blob(source: Source, digest: Digest, limit: int) -> Iterator[bytes] | None:
    """A blob's bytes from ``source``, cut off with RemoteError past ``limit``; None when it has no such blob."""
    streamed = source.stream(object_key(digest))
    if streamed is None:
        return None
    where = f"{source.location}/{object_key(digest)}"
    blocks, announced = streamed
    if announced is not None and announced > limit:
        getattr(blocks, "close", lambda: None)()
        raise RemoteError(f"{where} has {announced} bytes, but {limit} are expected; refused")
    return bounded(blocks, limit, where)


def fetch_index(source: Source, digest: Digest, limit: int) -> tuple[bytes, list[tuple[Digest, int]]] | None:
    """A chunked file's index from ``source``: its bytes and its checked chunks (None: no index there)."""
    index = source.read_limited(object_key(digest) + ".chunks", MAX_CHUNK_INDEX_SIZE)
    if index is None:
        return None
    return index, _checked_index(source, digest, index, limit)


def check_local_chunk(source: Source, digest: Digest, chunk: Digest, size: int, store: ObjectStore) -> bool:
    """True when ``chunk`` is already stored here (raw or packed), with the size the index of ``digest`` gives it."""
    path = store.object_path(chunk)
    if path.is_file():
        found = path.stat().st_size
    elif store.pack_path(chunk).is_file():
        from mreg.storage.pack_layout import packed_size  # start-up: only a store that packs reads records

        try:
            found = packed_size(store.pack_path(chunk), chunk)
        except (MregError, OSError):
            return False  # unreadable here: fetched again (fsck reports the damage)
    else:
        return False
    if found != size:
        raise RemoteError(f"{source.location}: the chunk index of {digest} gives chunk {chunk} {size} bytes; it has {found}")
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


def _store_blob(source: Source, digest: Digest, blocks: Iterable[bytes], store: ObjectStore, advance: Progress | None) -> int:
    try:
        return store.add_blob(blocks, expected=digest, progress=advance).size
    except CorruptObjectError as exc:
        raise RemoteError(f"{source.location}: object {digest} does not match its digest there ({exc.message}); not cached") from None


def _fetch_chunked(
    source: Source,
    store: ObjectStore,
    indexes: Mapping[Digest, tuple[bytes, list[tuple[Digest, int]]]],
    workers: int,
    advance: Progress | None,
    counter: Counter,
) -> None:
    """Store chunked files one after another, each in one ordered pass, while ``workers``
    threads fetch the chunks that come next."""
    files = {digest: chunks for digest, (_, chunks) in indexes.items()}
    with _Ahead(source, store, files, workers) as ahead:
        for digest, (index, chunks) in indexes.items():
            try:
                store.add_fetched_chunks(digest, chunks, ahead.pieces(digest, chunks, counter), advance)
                counter.add(ahead.packs.take_received(), objects=0)
            except CorruptObjectError as exc:
                if exc.digest == digest:
                    raise RemoteError(f"{source.location}: the chunks of {digest} do not add up to it; not cached") from None
                raise RemoteError(f"{source.location}: object {exc.digest} does not match its digest there ({exc.message}); not cached") from None
            counter.add(len(index))


class _Ahead:
    """The chunks of some chunked files, fetched ahead of the ordered pass that stores them.

    Each chunk missing here is asked for once, in the order the files list them, by a
    pool of ``workers`` threads, into memory: at most ``PREFETCH_BYTES`` fetched and not
    yet stored at any time, so memory stays a small multiple of one chunk. A chunk
    larger than that is streamed when its turn comes.
    """

    def __init__(self, source: Source, store: ObjectStore, files: Mapping[Digest, list[tuple[Digest, int]]], workers: int) -> None:
        self.source = source
        self.store = store
        from mreg.sharing.packs import PackFetcher  # start-up: a transfer that moves no chunk never needs it

        self.packs = PackFetcher(source, store)  # chunks stored packed there, and their bases
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        from concurrent.futures import (
            ThreadPoolExecutor,  # here: a transfer that moves nothing never imports it
        )

        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mreg-fetch")
        self._fetched: dict[Digest, Future[tuple[list[Any], Path | None]]] = {}
        self._held = 0  # bytes asked for and not yet stored
        self._queue: list[tuple[Digest, int]] = []
        self._counted: set[Digest] = set()  # chunks whose bytes the counter has
        seen: set[Digest] = set()
        for digest, chunks in files.items():
            for chunk, size in chunks:
                if chunk not in seen and not check_local_chunk(source, digest, chunk, size, store):
                    self._queue.append((chunk, size))
                seen.add(chunk)
        self._queue.reverse()  # popped from the end, in order

    def __enter__(self) -> _Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for future in self._fetched.values():  # fetched, never stored (after a failure)
            if future.done() and not future.cancelled() and future.exception() is None:
                staged = future.result()[1]
                if staged is not None:
                    staged.unlink(missing_ok=True)

    def pieces(self, digest: Digest, chunks: list[tuple[Digest, int]], counter: Counter) -> Iterator[Piece]:
        """Each chunk of one file, in order: its bytes, and whether it is stored here already.

        A chunk that comes again later in the same file (equal tensors) is not stored
        until the file's batch is, so its fetched bytes are kept for that place (up to
        ``PREFETCH_BYTES`` of them; beyond, it is fetched again).
        """
        to_come: dict[Digest, int] = {}
        for chunk, _ in chunks:
            to_come[chunk] = to_come.get(chunk, 0) + 1
        kept: dict[Digest, list[bytes]] = {}
        kept_bytes = 0
        for chunk, size in chunks:
            self._ask()
            to_come[chunk] -= 1
            if chunk in kept:
                yield Piece(kept[chunk] if to_come[chunk] else kept.pop(chunk), stored=True)
                continue
            future = self._fetched.pop(chunk, None)
            if future is not None:
                blocks, staged = future.result()
                self._held -= size
                if to_come[chunk] and kept_bytes + size <= PREFETCH_BYTES:
                    kept[chunk], kept_bytes = blocks, kept_bytes + size
                if staged is None:  # stored packed (its bytes on the wire are the fetcher's count)
                    self._counted.add(chunk)
                    yield Piece(blocks, stored=True)
                else:
                    yield Piece(blocks, staged=staged)
            elif check_local_chunk(self.source, digest, chunk, size, self.store):
                local = Segment(str(self.store.object_path(chunk)), 0, size, chunk)
                yield Piece(segment_blocks([local]), stored=True)  # stored before, or earlier in this fetch
                continue
            else:
                opened = open_blob(self.source, chunk, size)
                if opened is None:  # stored packed there: fetched as it is, then only hashed here
                    self._counted.add(chunk)
                    yield Piece([memoryview(self.packs.fetch_packed(chunk, size))], stored=True)
                else:
                    yield Piece(_counted(self.source, chunk, size, opened))
            if chunk not in self._counted:
                self._counted.add(chunk)
                counter.add(size, objects=0)

    def _ask(self) -> None:
        """Ask for the next chunks while they fit in the budget (a chunk too large for it is left to stream)."""
        while self._queue:
            chunk, size = self._queue[-1]
            if size <= PREFETCH_BYTES:
                if self._held + size > PREFETCH_BYTES:
                    return
                self._fetched[chunk] = self._pool.submit(_fetch_chunk, self.source, self.store, chunk, size, self.packs)
                self._held += size
            self._queue.pop()


def _fetch_chunk(source: Source, store: ObjectStore, chunk: Digest, size: int, packs: PackFetcher) -> tuple[list[Any], Path | None]:
    """A chunk's bytes, checked against its digest and written to a temporary file here, on
    a pool thread (so chunks are hashed and written in parallel); the bytes are kept in memory
    for the ordered pass, which hashes the whole file from them. A chunk stored packed there
    is stored packed here (no temporary file: None), once it decodes to its digest."""
    local = packs.local(chunk, size)  # fetched meanwhile, as the base of a packed chunk
    if local is not None:
        return [memoryview(local)], None
    opened = open_blob(source, chunk, size)
    if opened is None:
        return [memoryview(packs.fetch_packed(chunk, size))], None
    blocks = list(_counted(source, chunk, size, opened))
    hasher = sha256(size)
    for block in blocks:
        hasher.update(block)
    if "sha256:" + hasher.hexdigest() != chunk:
        raise RemoteError(f"{source.location}: object {chunk} does not match its digest there; not cached")
    return blocks, stage_blob(store.tmp_dir, blocks)


def _counted(source: Source, chunk: Digest, size: int, blocks: Iterator[bytes]) -> Iterator[bytes]:
    """A chunk's bytes from ``source`` (:func:`open_blob`), then RemoteError if they were fewer
    than ``size`` (more is cut off by the bound)."""
    received = 0
    for block in blocks:
        received += len(block)
        yield block
    if received != size:
        raise RemoteError(f"{source.location}/{object_key(chunk)} has {received} bytes, but {size} are expected; refused")
