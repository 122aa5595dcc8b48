"""Checking a signed statement end to end: the signature, then the signer's right to sign it.

A statement (:mod:`.statement`) names its signer's principal and its time; the
signature (:mod:`.sshsig`) says which key signed; the allowed signers file
(:mod:`.allowed_signers`) says whether that key may sign as that principal, in the
``mreg`` namespace, at that time. This is what ``ssh-keygen -Y verify -I PRINCIPAL
-n mreg -Overify-time=TIME`` checks, on the same three inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mreg.signing.sshsig import DEFAULT_NAMESPACE, verify
from mreg.signing.statement import Statement

if TYPE_CHECKING:
    from mreg.signing.allowed_signers import AllowedSigners, SignerEntry
    from mreg.signing.wire import PublicKey


@dataclass(frozen=True)
class Attestation:
    """A statement whose signature verified, by a key the allowed signers trust for it."""

    statement: Statement
    key: PublicKey
    entry: SignerEntry  # the allowed signers line that admits the key


def verify_statement(
    message: bytes, armored: str | bytes, signers: AllowedSigners, namespace: str = DEFAULT_NAMESPACE
) -> Attestation:
    """Parse a statement, verify its signature, and check its signer against the allowed signers.

    Args:
        message: the statement's bytes, exactly as signed.
        armored: the armored SSH signature.
        signers: the allowed signers (:func:`mreg.signing.allowed_signers.load`).
        namespace: the namespace the signature must be made for.

    Returns:
        The :class:`Attestation`.

    Raises:
        StatementError: the message is not a canonical statement.
        SignatureError: the signature is malformed or does not match.
        SignerNotAllowedError: the key may not sign as the statement's principal, in
            this namespace, at the statement's time.
    """
    statement = Statement.parse(message)
    key = verify(message, armored, namespace)
    entry = signers.require(key, statement.principal, namespace, statement.timestamp)
    return Attestation(statement, key, entry)
