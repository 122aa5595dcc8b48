"""The one exception hierarchy of mreg.

Every error a user can cause derives from :class:`MregError` and carries the exit
code the CLI uses for it. Where it fits, an error also inherits the matching
built-in (``KeyError``, ``FileNotFoundError``, ``ValueError``) so that callers of the
Python API can catch what they already know.
"""

from __future__ import annotations


class ExitCode:
    """Process exit codes of the ``mreg`` command (documented in the README)."""

    OK = 0
    FAILURE = 1  # a generic failure, or fsck found problems
    USAGE = 2  # bad arguments or invalid input (names, versions, metadata)
    NOT_FOUND = 3  # no registry, unknown reference, missing object or file
    CONFLICT = 4  # immutable version differs, compare-and-swap lost, ambiguity
    CORRUPT = 5  # an object does not match its digest or cannot be decoded
    LOCKED = 6  # a lock could not be taken in time
    REMOTE = 7  # a fallback store or remote failed


class MregError(Exception):
    """Root of every error mreg raises on purpose."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInputError(MregError, ValueError):
    """User input that breaks a rule of the grammar or the metadata schema."""

    exit_code = ExitCode.USAGE


class InvalidTypeError(InvalidInputError, TypeError):
    """A Python API argument of the wrong type (a str where a list of names belongs)."""


class InvalidNameError(InvalidInputError):
    """A model name, tag, file path or key that is not allowed."""


class InvalidVersionError(InvalidInputError):
    """A string that is not a Semantic Version 2.0.0."""


class InvalidRefError(InvalidInputError):
    """A reference that does not parse (see the README's reference grammar)."""


class RegistryNotFoundError(MregError, FileNotFoundError):
    """No ``.mreg`` directory where one was looked for."""

    exit_code = ExitCode.NOT_FOUND


class NotFoundError(MregError, KeyError):
    """Something the user named does not exist."""

    exit_code = ExitCode.NOT_FOUND

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownModelError(NotFoundError):
    """No model of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no model named '{name}'")
        self.name = name


class UnknownRefError(NotFoundError):
    """A reference that names no version."""

    def __init__(self, ref: str, detail: str = "") -> None:
        super().__init__(f"unknown reference '{ref}'" + (f": {detail}" if detail else ""))
        self.ref = ref


class ObjectNotFoundError(NotFoundError):
    """An object that is not in the store (nor in any fallback)."""

    def __init__(self, digest: str, detail: str = "") -> None:
        super().__init__(f"object {digest} not found" + (f" ({detail})" if detail else ""))
        self.digest = digest


class InputFileError(MregError, FileNotFoundError):
    """A file given on the command line that is missing or unreadable."""

    exit_code = ExitCode.NOT_FOUND


class ConflictError(MregError):
    """An update that would overwrite something immutable or lost a race."""

    exit_code = ExitCode.CONFLICT


class VersionConflictError(ConflictError):
    """A version that already exists with other content."""

    def __init__(self, name: str, version: str, existing: str, detail: str) -> None:
        super().__init__(
            f"{name}@{version} already exists as {existing} with {detail}; "
            "versions are immutable: register a new version instead"
        )
        self.name = name
        self.version = version
        self.existing = existing


class RefChangedError(ConflictError):
    """A compare-and-swap on a ref found another value than expected."""


class AmbiguousRefError(ConflictError):
    """A digest prefix that matches more than one manifest."""


class CorruptObjectError(MregError):
    """Stored bytes that do not match their digest, or an undecodable object."""

    exit_code = ExitCode.CORRUPT

    def __init__(self, digest: str, detail: str) -> None:
        super().__init__(f"object {digest} is corrupt: {detail}")
        self.digest = digest


class CorruptRefsError(MregError):
    """A model's ref table or log that cannot be parsed."""

    exit_code = ExitCode.CORRUPT


class LockTimeoutError(MregError, TimeoutError):
    """Another process held a lock for longer than the bounded wait."""

    exit_code = ExitCode.LOCKED


class RemoteError(MregError):
    """A fallback store or remote that failed: unreachable, missing or bad data."""

    exit_code = ExitCode.REMOTE
