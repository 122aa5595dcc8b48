"""Signatures as records: the signed statement object, and a model's index of them.

A signature (of a registration, a tag move, an approval or a revocation) is an
immutable object, canonical msgpack as notes are::

    {"kind": "mreg.signature", "schema": 1,
     "statement": <the mreg-statement v1 bytes, exactly as signed>,
     "signature": <the armored SSHSIG text, as ssh-keygen writes it>}

so both files a third party needs (``ssh-keygen -Y verify ... -s SIG < STATEMENT``)
come out of it byte for byte. What the statement says is read by
:mod:`mreg.signing.statement`; this module only stores and bounds it.

A model's ref table files its signatures (``signature MANIFEST OBJECT`` lines of
``_refs``, :class:`mreg.records.refs.RefTable`), so a signature lands in the same rename
or compare-and-swap as the version or tag it signs. Signatures are only ever added: a
withdrawn approval stays, and a revocation (itself signed) is added beside it.
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack

from mreg.errors import CorruptObjectError
from mreg.records.codec import canonical_encode, sha256_digest
from mreg.records.names import Digest
from mreg.text import printable

SIGNATURE_KIND = "mreg.signature"
SIGNATURE_SCHEMA = 1
MAX_STATEMENT_BYTES = 8 << 10  # mreg.signing.statement.MAX_STATEMENT
MAX_ARMOR_BYTES = 16 << 10  # mreg.signing.sshsig.MAX_ARMOR
MAX_SIGNATURE_OBJECT = MAX_STATEMENT_BYTES + MAX_ARMOR_BYTES + 256

class SignedStatement(NamedTuple):
    """A statement and the SSH signature over it, as stored (neither checked here)."""

    statement: bytes
    signature: str

    def encode(self) -> bytes:
        """The canonical bytes of the object."""
        return canonical_encode({"kind": SIGNATURE_KIND, "schema": SIGNATURE_SCHEMA, "statement": self.statement, "signature": self.signature})

    @property
    def digest(self) -> Digest:
        """The object's digest (its name in the object store)."""
        return sha256_digest(self.encode())

    @classmethod
    def decode(cls, data: bytes, digest: str = "signature") -> SignedStatement:
        """Parse a signature object (from this store or another: hostile), bounded and exact.

        Raises:
            CorruptObjectError: it is too large, not a signature object, or not in canonical form.
        """
        if len(data) > MAX_SIGNATURE_OBJECT:
            raise CorruptObjectError(Digest(digest), f"a signature object has at most {MAX_SIGNATURE_OBJECT} bytes")
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_STATEMENT_BYTES, max_str_len=MAX_ARMOR_BYTES)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise CorruptObjectError(Digest(digest), f"not a signature object: {printable(str(exc), 80)}") from None
        if not isinstance(raw, dict) or raw.get("kind") != SIGNATURE_KIND or set(raw) != {"kind", "schema", "statement", "signature"}:
            raise CorruptObjectError(Digest(digest), "it is not an mreg signature object")
        if raw["schema"] != SIGNATURE_SCHEMA:
            raise CorruptObjectError(Digest(digest), f"unknown signature schema {printable(repr(raw['schema']))}")
        if not isinstance(raw["statement"], bytes) or not isinstance(raw["signature"], str):
            raise CorruptObjectError(Digest(digest), "its statement or signature has the wrong type")
        found = cls(raw["statement"], raw["signature"])
        if found.encode() != data:
            raise CorruptObjectError(Digest(digest), "the signature object is not in canonical form")
        return found


def looks_like_signature(data: bytes) -> bool:
    """True for the bytes of a signature object (``cat-file`` and gc tell objects apart with it)."""
    return data[:1] in (b"\x84",) and SIGNATURE_KIND.encode() in data[:64]
