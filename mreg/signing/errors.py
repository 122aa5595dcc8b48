"""The errors of signing and verifying, all of them :class:`mreg.errors.MregError`."""

from __future__ import annotations

from ..errors import ExitCode, MregError


class SignatureError(MregError):
    """A signature that cannot be read, or that does not verify."""

    exit_code = ExitCode.FAILURE


class SigningKeyError(SignatureError):
    """A signing key that is missing, unsafe or unreadable, or ssh-keygen that failed."""

    exit_code = ExitCode.USAGE


class AllowedSignersError(SignatureError):
    """An allowed signers file that is missing or breaks its format (named with its line)."""

    exit_code = ExitCode.USAGE


class SignerNotAllowedError(SignatureError):
    """A valid signature by a key the allowed signers do not trust for this use."""


class StatementError(SignatureError, ValueError):
    """A statement field that the canonical format cannot carry, or statement text that does not parse."""

    exit_code = ExitCode.USAGE
