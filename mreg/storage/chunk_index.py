"""The chunk index of a file stored as chunks (``objects/ab/cdef....chunks``)."""

from __future__ import annotations

import msgpack

from mreg.errors import CorruptObjectError
from mreg.records.codec import canonical_encode, decode_record
from mreg.records.names import Digest, is_digest

CHUNKS_KIND = "mreg.chunks"


def encode_chunk_index(size: int, chunks: list[tuple[Digest, int]]) -> bytes:
    """The bytes of a ``.chunks`` file."""
    return canonical_encode({"kind": CHUNKS_KIND, "size": size, "chunks": [[d, n] for d, n in chunks]})


def decode_chunk_index(data: bytes, digest: str) -> list[tuple[Digest, int]]:
    """The ``(chunk digest, size)`` list of a ``.chunks`` file, validated."""
    try:
        raw = decode_record(data, CHUNKS_KIND)
        chunks = [(Digest(d), int(n)) for d, n in raw["chunks"]]
        valid = all(is_digest(d) and n > 0 for d, n in chunks)
        valid = valid and sum(n for _, n in chunks) == raw["size"]
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        valid = False
    if not valid:
        raise CorruptObjectError(digest, "its chunk index cannot be read")
    return chunks
