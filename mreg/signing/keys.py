"""Signing keys: key files read the way ssh reads them, and used in this process when possible.

An unencrypted private key (OpenSSH or PEM, ed25519, ECDSA or RSA) signs here,
through ``cryptography``. A key protected by a passphrase, or a public key whose
private half is held by ssh-agent, is left to ``ssh-keygen`` (:mod:`.keygen`),
which asks for the passphrase or talks to the agent, as git does. A private key
file that its group or others may read is refused, as ssh refuses it.

Private key bytes stay in one ``bytearray`` that is overwritten once the key is
loaded; they are never printed, logged, copied to another file or put in an error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from mreg.errors import SigningKeyError
from mreg.signing.algorithms import crypto, sign_raw
from mreg.signing.files import read_small_file
from mreg.signing.wire import CERTIFICATE_SUFFIX, SUPPORTED_KEY_TYPES, UNSUPPORTED_KEY_TYPES, PublicKey, public_key_from_text
from mreg.text import printable

MAX_KEY_FILE = 64 << 10  # an RSA-16384 private key in PEM is about 13 KiB
OPENSSH_PRIVATE = b"-----BEGIN OPENSSH PRIVATE KEY-----"
PEM_BEGIN = b"-----BEGIN "


def sign_with_file(path: Path, data: bytes) -> tuple[PublicKey, bytes] | None:
    """Sign ``data`` with the private key in ``path``, or say that ssh-keygen must.

    Args:
        path: a private key file, or a public key file whose key ssh-agent holds.
        data: the bytes to sign.

    Returns:
        The public key and the SSH signature blob; None when the key is protected by
        a passphrase or is a public key (ssh-keygen signs then).

    Raises:
        SigningKeyError: the file is missing, a directory, readable by others, or not
            a key of a type mreg signs with.
    """
    shown = printable(str(path), 200)
    raw, mode = read_small_file(path, MAX_KEY_FILE, "signing key", SigningKeyError)
    try:
        if _is_public_key(raw):
            return None  # ssh-keygen -Y sign -f KEY.pub asks ssh-agent for the private half
        if not raw.lstrip().startswith(PEM_BEGIN):
            raise SigningKeyError(
                f"signing key {shown} is neither a private key (OpenSSH or PEM) nor the public key of a key in ssh-agent"
            )
        if mode & 0o077:
            raise SigningKeyError(
                f"permissions {mode:04o} on signing key {shown} are too open: a private key must be readable "
                f"by its owner only; run: chmod 600 {shown}"
            )
        private = _load(raw, shown)
        if private is None:
            return None  # protected by a passphrase: ssh-keygen asks for it
        return sign_raw(private, data, f"signing key {shown}")
    finally:
        raw[:] = bytes(len(raw))  # wipe the key's bytes (same length: no reallocation)


def _load(raw: bytearray, shown: str) -> object | None:
    """The private key object, or None when it is encrypted."""
    serialization = crypto().serialization
    from cryptography.exceptions import UnsupportedAlgorithm  # start-up: cryptography, only when a key is read

    try:
        with warnings.catch_warnings():  # a DSA key is refused below; cryptography's deprecation notice adds nothing
            warnings.simplefilter("ignore")
            if raw.lstrip().startswith(OPENSSH_PRIVATE):
                return serialization.load_ssh_private_key(raw, password=None)
            return serialization.load_pem_private_key(raw, password=None)
    except TypeError:  # "password was not given but private key is encrypted"
        return None
    except (ValueError, UnsupportedAlgorithm):
        # The library's message is not shown: it is not needed, and must never echo key bytes.
        raise SigningKeyError(
            f"signing key {shown} is not a private key mreg can read (OpenSSH or PEM: ed25519, ecdsa, rsa)"
        ) from None


def _is_public_key(raw: bytearray) -> bool:
    """Does the file hold an OpenSSH public key line (``TYPE BASE64 [comment]``)?"""
    first = bytes(raw[:200]).split(b" ", 1)[0].decode("ascii", errors="replace")
    known = (*SUPPORTED_KEY_TYPES, *UNSUPPORTED_KEY_TYPES)
    return first in known or first.endswith(CERTIFICATE_SUFFIX)


def public_key_of(path: Path) -> PublicKey | None:
    """The public half of a signing key, without asking for a passphrase: the ``.pub``
    file beside it (as ``ssh-keygen`` writes it), or the file itself when it is a public
    key (of a key in ssh-agent). None when there is neither.

    Raises:
        SigningKeyError: the file is missing, a directory, or readable by others.
    """
    for candidate in (Path(f"{path}.pub"), path):
        try:
            raw, _ = read_small_file(candidate, MAX_KEY_FILE, "signing key", SigningKeyError)
        except SigningKeyError:
            if candidate == path:
                raise
            continue
        try:
            if _is_public_key(raw):
                fields = bytes(raw).decode("ascii", errors="replace").split()
                return public_key_from_text(fields[0], fields[1], f"public key {printable(str(candidate), 200)}") if len(fields) >= 2 else None
        finally:
            raw[:] = bytes(len(raw))  # the key file itself may be a private key: wipe it
    return None


def check_key_file(path: Path) -> None:
    """Refuse, before anything is signed or written, a key file that is missing, not a
    regular file, or a private key its group or others may read (the check
    :func:`sign_with_file` makes again when it signs).

    Raises:
        SigningKeyError: naming the file and what is wrong.
    """
    shown = printable(str(path), 200)
    raw, mode = read_small_file(path, MAX_KEY_FILE, "signing key", SigningKeyError)
    try:
        private = raw.lstrip().startswith(PEM_BEGIN)
        if not private and not _is_public_key(raw):
            raise SigningKeyError(f"signing key {shown} is neither a private key (OpenSSH or PEM) nor the public key of a key in ssh-agent")
        if private and mode & 0o077:
            raise SigningKeyError(
                f"permissions {mode:04o} on signing key {shown} are too open: a private key must be readable "
                f"by its owner only; run: chmod 600 {shown}"
            )
        if private:
            _load(raw, shown)  # a key that does not parse fails now (one with a passphrase is left to ssh-keygen)
    finally:
        raw[:] = bytes(len(raw))
