"""The canonical encoding of stored records (manifests, notes, chunk indexes)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgpack

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


def sha256_digest(data: bytes) -> Digest:
    """The digest of some bytes."""
    return digest_from_hex(hashlib.sha256(data).hexdigest())
