"""The signed statement, ``mreg-statement v1``: the exact bytes a signature covers.

An mreg signature never covers a manifest or a log line directly; it covers a short
UTF-8 text that says, in fixed order, one ``name value`` pair a line, what the
signer asserts::

    mreg-statement v1
    kind approval
    model resnet18
    version 1.0.0
    manifest sha256:1c3a1e3d061d7a38f691f114df65044c1b1afbe7d2d0b01984aecad94347cbda
    tag production
    principal alice@example.com
    time 2026-03-01T09:30:00Z
    meaning Approved for the March release after clinical validation

Every line ends with ``\\n``, the last one included; nothing else is allowed (no
``\\r``, no blank line, no trailing space). The lines, in this order:

``kind``
    ``registration`` (these exact weights were registered as this version),
    ``tag`` (this tag was moved to this version), ``approval`` (the signer approves
    this version for this tag) or ``revocation`` (the signer withdraws a statement).
``model``, ``version``, ``manifest``
    The version and its manifest digest (``sha256:`` and 64 lowercase hex digits).
``tag``
    Required for ``tag`` and ``approval``, optional for ``revocation``, absent for
    ``registration``.
``revokes``
    Only, and required, for ``revocation``: the digest (``sha256:`` of its bytes) of
    the statement withdrawn.
``principal``
    Who signs, as named in the allowed signers file (``ssh-keygen -Y verify -I``).
``time``
    When, in UTC, to the second, as the model's log writes it: ``YYYY-MM-DDTHH:MM:SSZ``.
``meaning``
    One line of free text, 1 to 1000 characters.

Values are NFC-normalised printable text: no control, format (bidi) or separator
characters other than the space of ``meaning``; the other values have no spaces, and
a principal none of ``,*?!"``, which are pattern syntax in allowed signers files. So
a third party rebuilds the statement from a record's fields and checks it with
OpenSSH alone::

    ssh-keygen -Y verify -f allowed_signers -I alice@example.com -n mreg \\
        -s approval.sig -Overify-time=20260301093000Z < statement

(:meth:`Statement.ssh_keygen_verify` gives that command.) Parsing is strict: text
that is not exactly what :meth:`Statement.encode` writes for its fields is refused.
"""

from __future__ import annotations

import calendar
import re
import time
import unicodedata
from dataclasses import dataclass, fields
from datetime import datetime

from mreg.errors import StatementError
from mreg.records.codec import sha256_digest
from mreg.text import printable

FORMAT = "mreg-statement v1"
KINDS = ("registration", "tag", "approval", "revocation")
MAX_VALUE = 256  # characters of a model, version, tag or principal
MAX_MEANING = 1000
MAX_STATEMENT = 8 << 10  # bytes: every field at its longest, in 4-byte characters, fits
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_PRINCIPAL_SYNTAX = ',*?!"'
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the model's log's


@dataclass(frozen=True)
class Statement:
    """What a signer asserts about one version; see the module docstring for the format."""

    kind: str
    model: str
    version: str
    manifest: str
    principal: str
    time: str
    meaning: str
    tag: str | None = None
    revokes: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StatementError(f"unknown statement kind '{printable(self.kind)}' (kinds: {', '.join(KINDS)})")
        for name in ("model", "version", "principal"):
            _token(getattr(self, name), name)
        _digest(self.manifest, "manifest")
        _time(self.time)
        _text(self.meaning, "meaning", MAX_MEANING)
        if any(c in self.principal for c in _PRINCIPAL_SYNTAX):
            raise StatementError(f"principal '{printable(self.principal)}' has one of {_PRINCIPAL_SYNTAX}, pattern syntax in allowed signers")
        if self.kind in ("tag", "approval") and self.tag is None:
            raise StatementError(f"{'an' if self.kind == 'approval' else 'a'} {self.kind} statement names its tag")
        if self.kind == "registration" and self.tag is not None:
            raise StatementError("a registration statement names no tag")
        if self.tag is not None:
            _token(self.tag, "tag")
        if (self.kind == "revocation") != (self.revokes is not None):
            raise StatementError("a revocation statement, and only it, names the statement it revokes")
        if self.revokes is not None:
            _digest(self.revokes, "revokes")

    def encode(self) -> bytes:
        """The canonical bytes: what is signed, and what :meth:`parse` reads back."""
        lines = [FORMAT]
        for field in _ORDER:
            value = getattr(self, field)
            if value is not None:
                lines.append(f"{field} {value}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    @property
    def digest(self) -> str:
        """``sha256:`` and the hex digest of :meth:`encode` (what a revocation names)."""
        return sha256_digest(self.encode())

    @property
    def timestamp(self) -> int:
        """``time`` as seconds since the epoch (to check a key's validity at it)."""
        return calendar.timegm(datetime.strptime(self.time, _TIME_FORMAT).timetuple())

    def ssh_keygen_verify(self, allowed_signers: str, signature: str, namespace: str = "mreg") -> list[str]:
        """The ``ssh-keygen -Y verify`` command that checks this statement (given on its standard input)."""
        moment = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(self.timestamp))
        return ["ssh-keygen", "-Y", "verify", "-f", allowed_signers, "-I", self.principal, "-n", namespace,
                "-s", signature, f"-Overify-time={moment}"]

    @classmethod
    def parse(cls, data: bytes) -> Statement:
        """Read a statement, refusing anything but the canonical form of valid fields.

        Args:
            data: the statement's bytes (from a store, a file or a person: hostile).

        Returns:
            The statement, whose :meth:`encode` gives back exactly ``data``.

        Raises:
            StatementError: the bytes are too long, not UTF-8, not ``mreg-statement v1``,
                or a field is missing, unknown, repeated, out of order or invalid.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_STATEMENT:
            raise StatementError(f"a statement is bytes of at most {MAX_STATEMENT}")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise StatementError("the statement is not UTF-8 text") from None
        if not text.endswith("\n"):
            raise StatementError("the statement does not end with a line feed")
        lines = text[:-1].split("\n")
        if lines[0] != FORMAT:
            raise StatementError(f"not an mreg statement: the first line is '{printable(lines[0])}', not '{FORMAT}'")
        values: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(" ")
            if name not in _ORDER:
                raise StatementError(f"the statement has an unknown line '{printable(line)}'")
            if name in values:
                raise StatementError(f"the statement has two {name} lines")
            values[name] = value
        missing = [name for name in _REQUIRED if name not in values]
        if missing:
            raise StatementError(f"the statement has no {missing[0]} line")
        statement = cls(**values)
        if statement.encode() != data:
            raise StatementError("the statement is not in canonical form (its lines out of order, or spaces where none belong)")
        return statement


_ORDER = ("kind", "model", "version", "manifest", "tag", "revokes", "principal", "time", "meaning")
_REQUIRED = tuple(f.name for f in fields(Statement) if f.name not in ("tag", "revokes"))


def _text(value: object, name: str, limit: int) -> str:
    """Non-empty NFC printable text without surrounding spaces, at most ``limit`` characters."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise StatementError(f"the statement's {name} must be text of 1 to {limit} characters")
    if not value.isprintable() or value != value.strip(" "):
        raise StatementError(
            f"the statement's {name} '{printable(value)}' has a line break, control, format or separator character, "
            "or spaces at its ends"
        )
    if not unicodedata.is_normalized("NFC", value):
        raise StatementError(f"the statement's {name} '{printable(value)}' is not in Unicode normal form NFC")
    return value


def _token(value: object, name: str) -> None:
    _text(value, name, MAX_VALUE)
    if " " in str(value):
        raise StatementError(f"the statement's {name} '{printable(value)}' has a space")


def _digest(value: object, name: str) -> None:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise StatementError(f"the statement's {name} '{printable(value)}' is not sha256: and 64 lowercase hex digits")


def _time(value: object) -> None:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise StatementError(f"the statement's time '{printable(value)}' is not YYYY-MM-DDTHH:MM:SSZ (UTC)")
    try:
        datetime.strptime(value, _TIME_FORMAT)
    except ValueError:
        raise StatementError(f"the statement's time '{printable(value)}' is not a valid date and time") from None
