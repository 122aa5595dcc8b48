"""Raw SSH signatures made and checked with ``cryptography``, the only module that imports it.

An SSH signature blob is ``string algorithm, string signature`` (RFC 4253 6.6):
ed25519 signs the data itself (RFC 8709), ECDSA signs its hash with SHA-256, SHA-384
or SHA-512 by curve and encodes ``mpint r, mpint s`` (RFC 5656), RSA uses PKCS#1
v1.5 with SHA-512 (``rsa-sha2-512``, RFC 8332; ``rsa-sha2-256`` is accepted, SHA-1
``ssh-rsa`` never). ``cryptography`` is imported inside the functions, so importing
this module costs nothing.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from mreg.errors import SignatureError, SigningKeyError
from mreg.signing.wire import ECDSA_CURVES, ED25519, RSA, PublicKey, Reader, mpint, public_key_from_text, string

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.hashes import HashAlgorithm

RSA_SIGNATURE = "rsa-sha2-512"
RSA_ACCEPTED = ("rsa-sha2-512", "rsa-sha2-256")
ECDSA_HASHES = {"nistp256": "SHA256", "nistp384": "SHA384", "nistp521": "SHA512"}
CURVE_NAMES = {"secp256r1": "nistp256", "secp384r1": "nistp384", "secp521r1": "nistp521"}
"""cryptography's curve names -> the SSH curve identifiers."""


def crypto() -> ModuleType:
    """``cryptography.hazmat.primitives``, or a clear error when it is not installed."""
    try:
        from cryptography.hazmat import primitives  # start-up: cryptography, only when something is signed or checked
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: F401  (loads the submodules)
        from cryptography.hazmat.primitives.asymmetric import (  # noqa: F401
            ec,
            ed25519,
            padding,
            rsa,
            utils,
        )
    except ImportError:
        raise SignatureError("signing and verifying need the 'cryptography' package: pip install 'mreg[sign]'") from None
    return primitives


def _hash(name: str) -> HashAlgorithm:
    hashes = crypto().hashes
    algorithm: HashAlgorithm = getattr(hashes, name)()
    return algorithm


def verify_raw(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Check that ``signature`` (an SSH signature blob) is ``key``'s signature of ``data``.

    Args:
        key: the validated public key.
        signature: ``string algorithm, string signature``.
        data: the exact bytes that were signed.

    Raises:
        SignatureError: the blob is malformed, of another algorithm, or does not verify.
    """
    primitives = crypto()
    from cryptography.exceptions import InvalidSignature  # start-up: cryptography, only when a signature is checked

    asymmetric = primitives.asymmetric
    reader = Reader(signature, "the signature")
    algorithm = reader.name()
    try:
        if key.key_type == ED25519:
            _expect_algorithm(algorithm, ED25519)
            raw = reader.string(64)
            reader.end()
            if len(raw) != 64:
                raise reader.fail("an ed25519 signature is not 64 bytes")
            (point,) = cast("tuple[bytes]", key.parameters)
            asymmetric.ed25519.Ed25519PublicKey.from_public_bytes(point).verify(raw, data)
        elif key.key_type in ECDSA_CURVES:
            _expect_algorithm(algorithm, key.key_type)
            curve, size = ECDSA_CURVES[key.key_type]
            numbers = Reader(reader.string(256), "the signature's ECDSA numbers")
            r, s = numbers.mpint(size * 8), numbers.mpint(size * 8)
            numbers.end()
            reader.end()
            _, encoded = cast("tuple[str, bytes]", key.parameters)
            public = asymmetric.ec.EllipticCurvePublicKey.from_encoded_point(_curve(curve), encoded)
            der = asymmetric.utils.encode_dss_signature(r, s)
            public.verify(der, data, asymmetric.ec.ECDSA(_hash(ECDSA_HASHES[curve])))
        elif key.key_type == RSA:
            if algorithm not in RSA_ACCEPTED:
                raise SignatureError(f"the signature uses {algorithm}, not one of {', '.join(RSA_ACCEPTED)} (SHA-1 RSA is refused)")
            exponent, modulus = cast("tuple[int, int]", key.parameters)
            width = (modulus.bit_length() + 7) // 8
            raw = reader.string(width)
            reader.end()
            public = asymmetric.rsa.RSAPublicNumbers(exponent, modulus).public_key()
            padded = raw.rjust(width, b"\0")  # OpenSSH accepts a signature shorter than the modulus
            public.verify(padded, data, asymmetric.padding.PKCS1v15(), _hash("SHA512" if algorithm == RSA_SIGNATURE else "SHA256"))
        else:  # decode_public_key admits no other type
            raise SignatureError(f"cannot verify {key.key_type} signatures")
    except InvalidSignature:
        raise SignatureError(
            f"the signature does not match: the message was changed, or {key} did not sign it"
        ) from None
    except ValueError:  # a point not on its curve, an RSA key cryptography refuses
        raise SignatureError(f"the signature's {key.key_type} key is not a valid key") from None


def _expect_algorithm(algorithm: str, expected: str) -> None:
    if algorithm != expected:
        raise SignatureError(f"the signature uses {algorithm} but its key is {expected}")


def _curve(name: str) -> Any:
    ec = crypto().asymmetric.ec
    return {"nistp256": ec.SECP256R1, "nistp384": ec.SECP384R1, "nistp521": ec.SECP521R1}[name]()


def sign_raw(private_key: Any, data: bytes, what: str) -> tuple[PublicKey, bytes]:
    """Sign ``data`` with a private key loaded by ``cryptography``.

    Args:
        private_key: an ed25519, ECDSA (P-256, P-384, P-521) or RSA private key object.
        data: the bytes to sign.
        what: the key file, for error messages.

    Returns:
        The public key and the SSH signature blob.

    Raises:
        SigningKeyError: the key is of a type or size mreg does not sign with.
    """
    asymmetric = crypto().asymmetric
    if isinstance(private_key, asymmetric.ed25519.Ed25519PrivateKey):
        signature = string(ED25519.encode()) + string(private_key.sign(data))
    elif isinstance(private_key, asymmetric.ec.EllipticCurvePrivateKey):
        curve = CURVE_NAMES.get(private_key.curve.name)
        if curve is None:
            raise SigningKeyError(f"{what} is an ECDSA key on curve {private_key.curve.name}; mreg signs with nistp256, nistp384 and nistp521")
        der = private_key.sign(data, asymmetric.ec.ECDSA(_hash(ECDSA_HASHES[curve])))
        r, s = asymmetric.utils.decode_dss_signature(der)
        signature = string(f"ecdsa-sha2-{curve}".encode()) + string(mpint(r) + mpint(s))
    elif isinstance(private_key, asymmetric.rsa.RSAPrivateKey):
        if private_key.key_size < 1024:
            raise SigningKeyError(f"{what} is an RSA key of {private_key.key_size} bits; at least 1024 are required")
        raw = private_key.sign(data, asymmetric.padding.PKCS1v15(), _hash("SHA512"))
        signature = string(RSA_SIGNATURE.encode()) + string(raw)
    else:
        raise SigningKeyError(f"{what} is a {type(private_key).__name__.removeprefix('_')}; mreg signs with ed25519, ecdsa and rsa keys")
    return public_of(private_key, what), signature


def public_of(private_key: Any, what: str) -> PublicKey:
    """The public half of a private key, as an SSH public key."""
    serialization = crypto().serialization
    line = private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    key_type, _, encoded = line.decode("ascii").partition(" ")
    return public_key_from_text(key_type, encoded, f"the public key of {what}")
