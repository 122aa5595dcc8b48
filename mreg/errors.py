"""The one exception hierarchy of mreg.

Every error a user can cause derives from :class:`MregError`. Errors carry data
(the name, version or digest concerned) and a message in the words of the Python
API; each front end renders them its own way: the CLI picks an exit code by class
and spells parameters as its flags (:mod:`mreg.cli.errors`), the web UI picks an
HTTP status (:mod:`mreg.web.app`). Where it fits, an error also inherits the
matching built-in (``KeyError``, ``FileNotFoundError``, ``ValueError``) so that
callers of the Python API can catch what they already know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping


class MregError(Exception):
    """Root of every error mreg raises on purpose.

    A message may name a parameter of the call as ``{name}`` (listed in ``options``):
    :attr:`message` spells it as Python does (``name=``, or the spelling ``options``
    maps it to, such as ``force=True``), and :meth:`render` lets a front end spell it
    its own way (the CLI as ``--name``).
    """

    def __init__(self, message: str, *, options: Iterable[str] | Mapping[str, str] = ()) -> None:
        self.template = message
        self.spellings = dict(options) if isinstance(options, Mapping) else {option: f"{option}=" for option in options}
        self.options = tuple(self.spellings)
        self.message = self.render(self.spellings.__getitem__)
        super().__init__(self.message)

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each parameter it names spelt by ``spell``."""
        text = self.template
        for option in self.options:
            text = text.replace("{" + option + "}", spell(option))
        return text

    def __str__(self) -> str:
        return self.message


class InvalidInputError(MregError, ValueError):
    """User input that breaks a rule of the grammar or the metadata schema."""


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


class UntrustedRegistryError(RegistryNotFoundError):
    """A registry found by walking up that another user owns: refused as if absent, until
    the user trusts it (see :mod:`mreg.store.trust`)."""


class NotFoundError(MregError, KeyError):
    """Something the user named does not exist.

    ``suggestions`` holds what the user may have meant (close names that do exist),
    for a front end to offer; empty when nothing is close.
    """

    suggestions: tuple[str, ...] = ()

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownModelError(NotFoundError):
    """No model of that name."""

    def __init__(self, name: str, suggestions: Iterable[str] = ()) -> None:
        super().__init__(f"no model named '{name}'")
        self.name = name
        self.suggestions = tuple(suggestions)


class UnknownRefError(NotFoundError):
    """A reference that names no version."""

    def __init__(self, ref: str, detail: str = "", suggestions: Iterable[str] = ()) -> None:
        super().__init__(f"unknown reference '{ref}'" + (f": {detail}" if detail else ""))
        self.ref = ref
        self.detail = detail
        self.suggestions = tuple(suggestions)


class ObjectNotFoundError(NotFoundError):
    """An object that is not in the store (nor in any fallback)."""

    def __init__(self, digest: str, detail: str = "") -> None:
        super().__init__(f"object {digest} not found" + (f" ({detail})" if detail else ""))
        self.digest = digest


class InputFileError(MregError, FileNotFoundError):
    """A file given on the command line that is missing or unreadable."""


class OutputFileError(MregError, OSError):
    """A file mreg was asked to write outside the store (``export``) that the file system
    refused: no space left, read-only, an I/O error, no permission. ``errno`` says which."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


class ConflictError(MregError):
    """An update that would overwrite something immutable or lost a race."""


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

    def __init__(self, digest: str, detail: str) -> None:
        super().__init__(f"object {digest} is corrupt: {detail}")
        self.digest = digest


class CorruptRefsError(MregError):
    """A model's ref table or log that cannot be parsed."""


class UnsafeFileError(MregError):
    """A file of a store that is a link, a FIFO, a device or a directory, or too large to
    read: refused, never followed or waited on."""


class SignatureError(MregError):
    """A signature that cannot be read, or that does not verify."""


class SigningKeyError(SignatureError, InvalidInputError):
    """A signing key that is missing, unsafe or unreadable, or ssh-keygen that failed."""


class AllowedSignersError(SignatureError, InvalidInputError):
    """An allowed signers file that is missing or breaks its format (named with its line)."""


class SignerNotAllowedError(SignatureError):
    """A valid signature by a key the allowed signers do not trust for this use."""


class StatementError(SignatureError, InvalidInputError):
    """A statement field that the canonical format cannot carry, or statement text that does not parse."""


class LockTimeoutError(MregError, TimeoutError):
    """Another process held a lock for longer than the bounded wait."""


class RemoteError(MregError):
    """A fallback store or remote that failed: unreachable, missing or bad data."""

