"""How the command line reports an error: one line on stderr and an exit code per kind.

The library's errors carry data and speak Python (``bump=``); this module owns what
only the command line knows: its exit codes (documented in the README) and the
flags that spell the parameters an error names.
"""

from __future__ import annotations

from mreg.errors import (
    ConflictError,
    CorruptObjectError,
    CorruptRefsError,
    InputFileError,
    InvalidInputError,
    LockTimeoutError,
    MregError,
    NotFoundError,
    RegistryNotFoundError,
    RemoteError,
    UnsafeFileError,
)


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
    INTERNAL = 70  # EX_SOFTWARE: a bug; MREG_DEBUG=1 shows the traceback


# The first class an error is an instance of decides its code; anything else is FAILURE.
EXIT_CODES: tuple[tuple[type[MregError], int], ...] = (
    (InvalidInputError, ExitCode.USAGE),
    (RegistryNotFoundError, ExitCode.NOT_FOUND),
    (NotFoundError, ExitCode.NOT_FOUND),
    (InputFileError, ExitCode.NOT_FOUND),
    (ConflictError, ExitCode.CONFLICT),
    (CorruptObjectError, ExitCode.CORRUPT),
    (CorruptRefsError, ExitCode.CORRUPT),
    (UnsafeFileError, ExitCode.CORRUPT),
    (LockTimeoutError, ExitCode.LOCKED),
    (RemoteError, ExitCode.REMOTE),
)

# Parameters whose flag is not simply --NAME.
FLAGS = {"path": "--registry", "tags": "--tag"}


def exit_code(error: MregError) -> int:
    """The exit code of ``mreg`` for an error."""
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), ExitCode.FAILURE)


def flag(option: str) -> str:
    """The command-line flag of a Python parameter: ``bump`` -> ``--bump``."""
    return FLAGS.get(option, "--" + option.replace("_", "-"))


def message(error: MregError) -> str:
    """An error's message with the parameters it names spelt as flags, and what the user
    may have meant when a name was not found."""
    text = error.render(flag)
    suggestions = error.suggestions if isinstance(error, NotFoundError) else ()
    if suggestions:
        text += "; did you mean " + " or ".join(f"'{s}'" for s in suggestions) + "?"
    if isinstance(error, CorruptObjectError):
        text += "; 'mreg fsck --repair' restores damaged objects from a fallback or remote"
    return text
