"""SSHSIG: OpenSSH's signature format, as ``ssh-keygen -Y sign`` writes it (PROTOCOL.sshsig).

A signature is armored text::

    -----BEGIN SSH SIGNATURE-----
    U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg...   (base64, 70 characters a line)
    -----END SSH SIGNATURE-----

around a blob in the SSH wire encoding::

    byte[6]  "SSHSIG"
    uint32   version (1)
    string   public key
    string   namespace   ("mreg": a signature made for git or for file signing never counts here)
    string   reserved    (empty)
    string   hash algorithm ("sha512"; "sha256" is accepted)
    string   signature   (string algorithm, string bytes)

What the key signs is not the message but ``"SSHSIG" || string namespace || string
reserved || string hash_algorithm || string H(message)``. mreg signs with SHA-512,
wraps its base64 at 70 characters and ends with a newline, as ssh-keygen does, so
for ed25519 and RSA keys (whose signatures are deterministic) mreg's signature and
ssh-keygen's are the same bytes.

Reading is strict and bounded: the armor at most :data:`MAX_ARMOR` bytes, version
exactly 1, an empty reserved field (mreg never leaves a field it does not check
open to changes), no trailing bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from mreg.errors import SignatureError
from mreg.signing.algorithms import verify_raw
from mreg.signing.keygen import DEFAULT_TIMEOUT, sign_with_ssh_keygen
from mreg.signing.keys import sign_with_file
from mreg.signing.wire import PublicKey, Reader, public_key, string
from mreg.text import printable

MAGIC = b"SSHSIG"
VERSION = 1
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
LINE_WIDTH = 70  # ssh-keygen's
MAX_ARMOR = 16 << 10  # an RSA-16384 signature is about 6 KiB of armor
MAX_NAMESPACE = 64
HASHES = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
DEFAULT_HASH = "sha512"
DEFAULT_NAMESPACE = "mreg"
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/=]*")


@dataclass(frozen=True)
class Signature:
    """A decoded SSHSIG blob (not yet verified against any message)."""

    public_key: PublicKey
    namespace: str
    hash_algorithm: str
    signature: bytes  # the SSH signature blob: string algorithm, string bytes

    def encode(self) -> bytes:
        """The binary blob."""
        return (
            MAGIC
            + struct.pack(">I", VERSION)
            + string(self.public_key.blob)
            + string(self.namespace.encode("utf-8"))
            + string(b"")
            + string(self.hash_algorithm.encode("ascii"))
            + string(self.signature)
        )

    def armor(self) -> str:
        """The armored text, as ssh-keygen writes it (ending with a newline)."""
        encoded = base64.b64encode(self.encode()).decode("ascii")
        lines = [encoded[i : i + LINE_WIDTH] for i in range(0, len(encoded), LINE_WIDTH)]
        return "\n".join([BEGIN, *lines, END]) + "\n"


def check_namespace(namespace: str) -> str:
    """``namespace`` if mreg may sign in it: letters, digits and ``._@+-``, at most 64 characters.

    Raises:
        SignatureError: it is empty, too long, or has other characters.
    """
    if not isinstance(namespace, str) or len(namespace) > MAX_NAMESPACE or not _NAMESPACE.fullmatch(namespace):
        raise SignatureError(
            f"invalid signature namespace '{printable(namespace)}': use letters, digits and ._@+- "
            f"(at most {MAX_NAMESPACE} characters), e.g. 'mreg'"
        )
    return namespace


def signed_data(namespace: str, hash_algorithm: str, message: bytes) -> bytes:
    """The bytes a key signs for ``message`` (PROTOCOL.sshsig section 3)."""
    digest = HASHES[hash_algorithm](message).digest()
    return MAGIC + string(namespace.encode("utf-8")) + string(b"") + string(hash_algorithm.encode("ascii")) + string(digest)


def dearmor(armored: str | bytes) -> bytes:
    """The blob inside an armored signature.

    Raises:
        SignatureError: the text is too long, not ASCII, lacks its header or footer,
            has anything but base64 between them, or text after the footer.
    """
    if len(armored) > MAX_ARMOR:
        raise SignatureError(f"the signature has {len(armored)} bytes, more than the {MAX_ARMOR} allowed")
    if isinstance(armored, bytes):
        try:
            armored = armored.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError("the signature is malformed: it is not ASCII text") from None
    text = armored.replace("\r\n", "\n")
    if not text.startswith(BEGIN + "\n"):
        raise SignatureError(f"the signature is malformed: it does not start with '{BEGIN}'")
    body, found, rest = text[len(BEGIN) + 1 :].partition("\n" + END)
    if not found:
        raise SignatureError(f"the signature is malformed: it has no '{END}' line")
    if rest.strip():
        raise SignatureError("the signature is malformed: text follows its last line")
    lines = body.split("\n")
    if not all(_BASE64_LINE.fullmatch(line) for line in lines):
        raise SignatureError("the signature is malformed: a line between its header and footer is not base64")
    encoded = "".join(lines)
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signature is malformed: its base64 is invalid") from None
    if base64.b64encode(blob).decode("ascii") != encoded:  # padding inside, stray bits: one blob, one text
        raise SignatureError("the signature is malformed: its base64 is not in canonical form")
    if not blob:
        raise SignatureError("the signature is malformed: it is empty")
    return blob


def decode(blob: bytes) -> Signature:
    """Parse an SSHSIG blob, checking every field.

    Raises:
        SignatureError: a field is missing, too long or invalid, the version is not 1,
            the key type is unsupported, or bytes follow the last field.
    """
    reader = Reader(blob, "the signature")
    if reader.take(len(MAGIC)) != MAGIC:
        raise reader.fail("it does not start with SSHSIG")
    version = reader.u32()
    if version != VERSION:
        raise SignatureError(f"the signature has version {version}; mreg reads version {VERSION}")
    key = public_key(reader.string(), "the signature's public key")
    try:
        namespace = reader.string(MAX_NAMESPACE * 4).decode("utf-8")
    except UnicodeDecodeError:
        raise reader.fail("its namespace is not UTF-8") from None
    if not namespace:
        raise reader.fail("its namespace is empty")
    if reader.string(256):
        raise reader.fail("its reserved field is not empty")
    hash_algorithm = reader.name(16)
    if hash_algorithm not in HASHES:
        raise SignatureError(f"the signature uses hash {printable(hash_algorithm)}; mreg accepts {', '.join(HASHES)}")
    signature = reader.string()
    reader.end()
    return Signature(key, namespace, hash_algorithm, signature)


def read(armored: str | bytes) -> Signature:
    """Parse an armored signature without verifying it (:func:`dearmor`, then :func:`decode`)."""
    return decode(dearmor(armored))


def verify(message: bytes, armored: str | bytes, namespace: str = DEFAULT_NAMESPACE) -> PublicKey:
    """Check that ``armored`` is a valid signature of ``message`` in ``namespace``.

    This says which key signed, not whether that key is trusted: check the key
    against the allowed signers (:mod:`.allowed_signers`).

    Args:
        message: the exact bytes that were signed.
        armored: the armored signature (text or bytes).
        namespace: the namespace the signature must have been made for.

    Returns:
        The signer's public key (``.openssh``, ``.fingerprint`` as ssh-keygen prints it).

    Raises:
        SignatureError: the signature is malformed, made for another namespace or with
            an unsupported key, or does not match the message.
    """
    check_namespace(namespace)
    found = read(armored)
    if found.namespace != namespace:
        raise SignatureError(f"the signature was made for namespace '{printable(found.namespace)}', not '{namespace}'")

    verify_raw(found.public_key, found.signature, signed_data(namespace, found.hash_algorithm, message))
    return found.public_key


def sign(
    message: bytes, key_path: str | PathLike[str], namespace: str = DEFAULT_NAMESPACE, *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Sign ``message`` with an SSH key, as ``ssh-keygen -Y sign -n NAMESPACE -f KEY`` does.

    An unencrypted private key signs in this process; a key protected by a passphrase,
    or a public key file whose private key is in ssh-agent, signs through ssh-keygen.
    Either way the signature is verified before it is returned.

    Args:
        message: the bytes to sign.
        key_path: the private key file (or the public key of a key in ssh-agent).
        namespace: the signature's namespace.
        timeout: seconds ssh-keygen may take, when it is needed.

    Returns:
        The armored signature, ending with a newline.

    Raises:
        SigningKeyError: the key file is missing, a directory, readable by its group or
            others, not a supported key, or ssh-keygen failed.
        SignatureError: the namespace is invalid.
    """
    check_namespace(namespace)
    if not isinstance(message, (bytes, bytearray)):
        raise SignatureError(f"only bytes can be signed, not {type(message).__name__}")
    message = bytes(message)
    path = Path(key_path).expanduser()

    made = sign_with_file(path, signed_data(namespace, DEFAULT_HASH, message))
    if made is None:
        armored = sign_with_ssh_keygen(message, path, namespace, timeout)
    else:
        armored = Signature(made[0], namespace, DEFAULT_HASH, made[1]).armor()
    verify(message, armored, namespace)  # a signature that does not verify is never handed out
    return armored
