"""The SSH wire encoding (RFC 4251 section 5) of public keys, read with bounds.

Everything here parses bytes that may come from another store or another person's
file, so every length is checked against what is left and against a fixed bound
before anything is sliced, integers must be positive and minimally encoded, and
trailing bytes are refused. Only the key types mreg verifies are decoded:
``ssh-ed25519``, ``ecdsa-sha2-nistp256/384/521`` and ``ssh-rsa``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from mreg.errors import SignatureError
from mreg.text import printable

MAX_STRING = 8 << 10
"""The longest string any field may hold (an RSA-16384 modulus is 2 KiB)."""
MAX_RSA_BITS = 16384  # OpenSSH's bound (SSHBUF_MAX_BIGNUM)
MIN_RSA_BITS = 1024  # OpenSSH's SSH_RSA_MINIMUM_MODULUS_SIZE

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 32),
    "ecdsa-sha2-nistp384": ("nistp384", 48),
    "ecdsa-sha2-nistp521": ("nistp521", 66),
}
"""ECDSA key type -> (curve identifier in the blob, bytes per coordinate)."""
SUPPORTED_KEY_TYPES = (ED25519, *ECDSA_CURVES, RSA)
UNSUPPORTED_KEY_TYPES = ("ssh-dss", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
"""Key types OpenSSH knows that mreg refuses: DSA (SHA-1) and security-key types."""
CERTIFICATE_SUFFIX = "-cert-v01@openssh.com"

KeyParameters = tuple[bytes] | tuple[str, bytes] | tuple[int, int]
"""ed25519: (public key,); ecdsa: (curve identifier, point); rsa: (e, n)."""


class Reader:
    """Reads SSH wire fields from ``data``, refusing any length that does not fit."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = memoryview(data)
        self.offset = 0
        self.what = what

    def fail(self, problem: str) -> SignatureError:
        """The error for a malformed input: what it is, and what is wrong."""
        return SignatureError(f"{self.what} is malformed: {problem}")

    def take(self, count: int) -> bytes:
        """The next ``count`` bytes."""
        if count > len(self.data) - self.offset:
            raise self.fail("it ends before a field does")
        chunk = bytes(self.data[self.offset : self.offset + count])
        self.offset += count
        return chunk

    def u32(self) -> int:
        """A big-endian 32-bit unsigned integer."""
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self, limit: int = MAX_STRING) -> bytes:
        """A length-prefixed byte string of at most ``limit`` bytes."""
        length = self.u32()
        if length > limit:
            raise self.fail(f"a field claims {length} bytes, more than the {limit} allowed")
        return self.take(length)

    def name(self, limit: int = 64) -> str:
        """A short printable ASCII string (an algorithm or key type name)."""
        raw = self.string(limit)
        if not raw or not all(0x21 <= byte < 0x7F for byte in raw):
            raise self.fail("a name field is empty or not printable ASCII")
        return raw.decode("ascii")

    def mpint(self, max_bits: int = MAX_RSA_BITS) -> int:
        """A positive multiple-precision integer in its one minimal encoding."""
        raw = self.string(max_bits // 8 + 1)
        if not raw or raw[0] & 0x80:
            raise self.fail("an integer is zero or negative")
        if raw[0] == 0 and (len(raw) == 1 or not raw[1] & 0x80):
            raise self.fail("an integer has a needless leading zero")
        value = int.from_bytes(raw, "big")
        if value.bit_length() > max_bits:
            raise self.fail(f"an integer has more than {max_bits} bits")
        return value

    def end(self) -> None:
        """Refuse anything left over."""
        if self.offset != len(self.data):
            raise self.fail(f"{len(self.data) - self.offset} bytes follow its last field")


def string(data: bytes) -> bytes:
    """``data`` as a length-prefixed SSH string."""
    return struct.pack(">I", len(data)) + data


def mpint(value: int) -> bytes:
    """A positive integer as an SSH mpint (minimal, with a zero byte if the top bit is set)."""
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return string(raw[1:] if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80 else raw)


@dataclass(frozen=True)
class PublicKey:
    """A decoded, validated SSH public key: its type and its canonical wire blob."""

    key_type: str
    blob: bytes

    @property
    def base64(self) -> str:
        """The blob in base64, as the second field of an OpenSSH public key line."""
        return base64.b64encode(self.blob).decode("ascii")

    @property
    def openssh(self) -> str:
        """``TYPE BASE64``: the key as ``.pub`` files and allowed signers files write it."""
        return f"{self.key_type} {self.base64}"

    @property
    def fingerprint(self) -> str:
        """``SHA256:...``, the fingerprint ``ssh-keygen -l`` and ``-Y verify`` print."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    @property
    def parameters(self) -> KeyParameters:
        """The key's numbers: see :data:`KeyParameters`."""
        return decode_public_key(self.blob, "public key")[1]

    def __str__(self) -> str:
        return f"{self.key_type} key {self.fingerprint}"


def decode_public_key(blob: bytes, what: str) -> tuple[str, KeyParameters]:
    """The type and numbers of a public key blob, checked field by field.

    Args:
        blob: the key in the SSH wire encoding.
        what: what the blob is, for error messages ("the signature's public key").

    Returns:
        The key type and its :data:`KeyParameters`.

    Raises:
        SignatureError: the blob is malformed or of a type mreg does not verify.
    """
    reader = Reader(blob, what)
    key_type = reader.name()
    parameters: KeyParameters
    if key_type == ED25519:
        public = reader.string(64)
        if len(public) != 32:
            raise reader.fail("an ed25519 key is not 32 bytes")
        parameters = (public,)
    elif key_type in ECDSA_CURVES:
        curve, size = ECDSA_CURVES[key_type]
        if reader.name() != curve:
            raise reader.fail(f"a {key_type} key names another curve")
        point = reader.string(256)
        if len(point) != 1 + 2 * size or point[0] != 4:
            raise reader.fail(f"a {key_type} key's point is not an uncompressed {curve} point")
        parameters = (curve, point)
    elif key_type == RSA:
        exponent, modulus = reader.mpint(64), reader.mpint(MAX_RSA_BITS)
        if modulus.bit_length() < MIN_RSA_BITS:
            raise SignatureError(f"{what} is an RSA key of {modulus.bit_length()} bits; at least {MIN_RSA_BITS} are required")
        parameters = (exponent, modulus)
    else:
        raise unsupported_key_type(key_type, what)
    reader.end()
    return key_type, parameters


def unsupported_key_type(key_type: str, what: str) -> SignatureError:
    """The error for a key type mreg does not verify, saying which it does."""
    if key_type.endswith(CERTIFICATE_SUFFIX):
        detail = "SSH certificates are not supported"
    else:
        detail = "unsupported key type"
    return SignatureError(f"{what} is a {printable(key_type, 50)} key: {detail} (mreg verifies {', '.join(SUPPORTED_KEY_TYPES)})")


def public_key(blob: bytes, what: str) -> PublicKey:
    """A :class:`PublicKey` from its wire blob, validated (see :func:`decode_public_key`)."""
    key_type, _ = decode_public_key(blob, what)
    return PublicKey(key_type, bytes(blob))


def public_key_from_text(key_type: str, encoded: str, what: str) -> PublicKey:
    """A :class:`PublicKey` from the ``TYPE BASE64`` fields of a ``.pub`` or allowed signers line.

    Raises:
        SignatureError: the base64 is invalid, the key is malformed, or its blob is of another type.
    """
    if len(encoded) > 4 * MAX_STRING:
        raise SignatureError(f"{what} is longer than any key mreg verifies")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None
    if base64.b64encode(blob).decode("ascii") != encoded:
        raise SignatureError(f"{what} is not canonical base64")
    key = public_key(blob, what)
    if key.key_type != key_type:
        raise SignatureError(f"{what} says {key_type} but its key is {key.key_type}")
    return key
