"""Reading packed objects: a blob stored as a record, decoded through its chain of bases.

A packed blob lives at ``objects/ab/cdef....pack`` in place of ``objects/ab/cdef...``
and keeps its name, the SHA-256 of its raw bytes (see :mod:`mreg.storage.pack_codec`
for the record). A delta names its base, another blob of the same size, stored raw
or packed in turn: reading a blob follows that chain down to a raw blob or a
standalone record, then decodes back up. Every step is bounded before anything is
read whole: a record is at most its raw size plus its header, a chain at most
:data:`MAX_CHAIN` records long, and never loops. Memory: the caller's buffer, one
more of the same size when the chain is longer than one record, and the records
and raw base mapped from the page cache.

The raw form is always tried first: an ``mreg pack`` in another process removes a
raw blob only once its record is durable, and an unpack removes a record only once
the raw blob is, so a reader that finds neither form has met a missing object. Reads
trust the store, as mapped loads of raw blobs do; copies out of it (materialized
files, transfers, fsck) hash the decoded bytes against the name.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

from mreg.errors import ObjectNotFoundError
from mreg.records.codec import sha256_digest
from mreg.records.names import Digest, is_digest
from mreg.storage.layout import PACK_SUFFIX
from mreg.storage.pack_layout import DELTA, HEADER_MAX, CorruptPackError, PackHeader, read_header

MAX_CHAIN = 50
"""Records a read decodes at most for one blob. ``pack.depth`` (default 10) bounds the
chains mreg writes; this bounds what any store, another's included, can make a read do."""
BLOCK_SIZE = 4 << 20


class Chain(NamedTuple):
    """The records a blob's bytes are decoded from, the blob's own first, each mapped as it
    was when the chain was followed (a record replaced meanwhile cannot mix in), and the
    base of the last one: a raw blob mapped, or None when the last record is standalone."""

    records: list[tuple[Digest, Any, PackHeader]]  # (digest, its record mapped, its header)
    base: Any

    def close(self) -> None:
        """Unmap everything (what a failed decode still views is left to the garbage collector)."""
        for _, record, _ in self.records:
            _close(record)
        _close(self.base)


def objects_dir_of(path: str) -> str:
    """The ``objects`` directory holding a blob's path (``objects/ab/cdef...[.pack]``)."""
    return os.path.dirname(os.path.dirname(path))


def blob_path(objects_dir: str, digest: str) -> str:
    """Where the raw blob of ``digest`` lives (its record: the same with ``.pack``)."""
    if not is_digest(digest):
        raise ObjectNotFoundError(digest, "not a sha256 digest")
    return f"{objects_dir}{os.sep}{digest[7:9]}{os.sep}{digest[9:]}"


def find_chain(objects_dir: str, digest: Digest, size: int) -> Chain:
    """The chain of records a blob of ``size`` bytes decodes from (its raw form is not there).

    Raises:
        ObjectNotFoundError: the blob is stored in neither form.
        CorruptPackError: a record is malformed or of another size, a base is missing,
            or the chain loops or is longer than :data:`MAX_CHAIN`.
    """
    chain = Chain([], None)
    current = digest
    try:
        while True:
            path = blob_path(objects_dir, current)
            if chain.records:
                raw = _mapped(path, current, size, missing_ok=True)
                if raw is not None:
                    return chain._replace(base=raw)
            record = _mapped(path + PACK_SUFFIX, current, size + HEADER_MAX, missing_ok=True)
            if record is None:
                if not chain.records:
                    raise ObjectNotFoundError(digest)
                raise CorruptPackError(digest, f"needs its base {current}, which is missing")
            header = read_header(record, digest=current)
            chain.records.append((current, record, header))
            if header.size != size:
                raise CorruptPackError(current, f"declares {header.size} bytes, but {size} are expected")
            if header.method != DELTA:
                return chain
            assert header.base is not None  # a delta's header names its base
            if any(header.base == seen for seen, _, _ in chain.records):
                raise CorruptPackError(digest, f"is in a chain of deltas that loops back to {header.base}")
            if len(chain.records) >= MAX_CHAIN:
                raise CorruptPackError(digest, f"is at the end of a chain of more than {MAX_CHAIN} deltas")
            current = Digest(header.base)
    except BaseException:
        chain.close()
        raise


def chain_depth(objects_dir: str, digest: Digest, size: int) -> int:
    """How many records a read of the blob decodes: 0 when it is stored raw."""
    if os.path.isfile(blob_path(objects_dir, digest)):
        return 0
    chain = find_chain(objects_dir, digest, size)
    chain.close()
    return len(chain.records)


def decode_into(objects_dir: str, digest: Digest, out: Any) -> None:
    """Decode the packed blob ``digest`` into ``out``, a writable buffer of its size.

    Raises:
        ObjectNotFoundError, CorruptPackError: as :func:`find_chain`.
    """
    from mreg.storage import pack_codec  # start-up: imports numpy and zstandard on first use

    target = memoryview(out).cast("B")
    chain = find_chain(objects_dir, digest, target.nbytes)
    try:
        steps = len(chain.records)
        spare = pack_codec.scratch(target.nbytes) if steps > 1 else None
        base, base_digest = chain.base, chain.records[-1][2].base
        # The deepest record first; the buffers alternate so that the blob's own lands in ``out``.
        for step in range(steps - 1, -1, -1):
            current, record, _ = chain.records[step]
            destination = target if step % 2 == 0 else spare
            pack_codec.decode_into(record, destination, base=base, base_digest=base_digest, digest=current)
            base, base_digest = destination, current
    finally:
        chain.close()


def blob_bytes(objects_dir: str, digest: Digest, size: int) -> Any:
    """A blob's ``size`` bytes, read-only: its raw form mapped (refused if larger), else its
    record decoded into new memory.

    Raises:
        ObjectNotFoundError, CorruptPackError: as :func:`find_chain`.
    """
    raw = _mapped(blob_path(objects_dir, digest), digest, size, missing_ok=True)
    if raw is not None:
        return raw
    from mreg.storage import pack_codec  # start-up: imports numpy and zstandard on first use

    out = pack_codec.scratch(size)
    decode_into(objects_dir, digest, out)
    return out


def decoded(segment: Any) -> Any:
    """A packed segment's bytes, decoded into a new buffer (a numpy array of bytes)."""
    from mreg.storage import pack_codec  # start-up: imports numpy and zstandard on first use

    try:
        out = pack_codec.scratch(segment.size)
    except MemoryError:
        raise CorruptPackError(segment.digest, f"declares {segment.size} bytes, more than memory holds") from None
    decode_into(objects_dir_of(segment.path), segment.digest, out)
    return out


def decoded_blocks(segment: Any, *, verify: bool = False) -> Iterator[bytes]:
    """A packed segment's bytes in blocks (new objects: a writer may keep them); with
    ``verify``, hashed against its name first."""
    data = memoryview(decoded(segment)).cast("B")
    if verify and sha256_digest(data) != segment.digest:
        raise CorruptPackError(segment.digest, "decodes to bytes that do not match its digest")
    for start in range(0, len(data), BLOCK_SIZE):
        yield bytes(data[start : start + BLOCK_SIZE])


def _mapped(path: str, digest: str, limit: int, *, missing_ok: bool = False) -> Any:
    """A file's bytes mapped read-only (read, when empty), refused past ``limit`` bytes;
    None when it is missing and ``missing_ok``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ObjectNotFoundError(digest) from None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise CorruptPackError(digest, f"has {size} bytes, more than the {limit} its size allows")
        if size == 0:
            return b""
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def _close(data: Any) -> None:
    """Unmap now rather than at garbage collection (a view still held after an error keeps it)."""
    if isinstance(data, mmap.mmap):
        try:
            data.close()
        except BufferError:
            pass
