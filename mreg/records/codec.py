"""The encoding of stored records (manifests, notes, chunk indexes): canonical msgpack.

A record is a msgpack map with a ``kind`` and sorted keys, so the same content always
has the same bytes and digest. :func:`canonical_encode` writes one; :func:`decode_record`
is the one way every record is read back, before its own fields are checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from mreg.records.hashing import sha256_hex
from mreg.records.names import (
    Digest,
    digest_from_hex,
)


def canonical_encode(value: Mapping[str, Any]) -> bytes:
    """Encode a JSON-like value as canonical msgpack (sorted map keys)."""
    return msgpack.packb(_sorted(value), use_bin_type=True)


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted(item) for item in value]
    return value


def sha256_digest(data: bytes | bytearray | memoryview) -> Digest:
    """The digest of some bytes."""
    return digest_from_hex(sha256_hex(data))


def decode_record(data: bytes, kind: str) -> dict[str, Any]:
    """The map a stored record's bytes encode, checked to be a msgpack map of ``kind``.

    Raises:
        ValueError: the bytes are not msgpack (msgpack's own errors are ValueErrors), not
            a map with string keys, or of another kind. The caller names the object.
    """
    raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    if not isinstance(raw, dict) or raw.get("kind") != kind:
        raise ValueError(f"it is not an {kind} record")
    return raw
