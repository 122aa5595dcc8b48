"""Allowed signers files: which key may sign as whom, for what, and when.

The format is git's ``gpg.ssh.allowedSignersFile``, read by ``ssh-keygen -Y verify``
(ssh-keygen(1), ALLOWED SIGNERS). One entry a line::

    # comment
    alice@example.com,bob@* ssh-ed25519 AAAAC3Nza... alice's laptop
    carol@example.com namespaces="mreg",valid-after="20260101Z",valid-before="20270101Z" ecdsa-sha2-nistp256 AAAAE2Vj...

principals (a pattern list: ``*``, ``?``, ``!`` to exclude), options (comma-separated,
no spaces outside quotes), key type, base64 key, and an optional comment. A key may
sign as a principal when an entry lists both, its ``namespaces`` (if given) match
the signature's namespace, and the signing time lies within ``valid-after`` and
``valid-before`` (both inclusive). Entries are tried in order, as ssh-keygen does.

Where mreg is stricter than ssh-keygen, it says so and names the line, rather than
skipping it as ssh-keygen does: any malformed line is an error; a time must end in
``Z`` (UTC), because ssh-keygen reads a zoneless time in each machine's own time
zone, so one file would mean different things on two machines. ``cert-authority``
entries and keys of types mreg does not verify (certificates, security keys, DSA)
are skipped with a warning: SSH certificates are out of scope.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path

from mreg.errors import AllowedSignersError, SignatureError, SignerNotAllowedError
from mreg.signing.files import read_small_file
from mreg.signing.patterns import in_list
from mreg.signing.wire import CERTIFICATE_SUFFIX, SUPPORTED_KEY_TYPES, UNSUPPORTED_KEY_TYPES, PublicKey, public_key_from_text
from mreg.text import printable

MAX_FILE = 1 << 20  # ~5,000 ed25519 entries
MAX_PATTERN = 256  # characters of one principal or namespace pattern
MAX_PATTERNS = 256  # patterns in one list
_TIME = re.compile(r"(\d{4})(\d\d)(\d\d)(?:(\d\d)(\d\d)(\d\d)?)?(Z|z|UTC|utc)?")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_OPTIONS = "cert-authority, namespaces=\"...\", valid-after=\"...\", valid-before=\"...\""


@dataclass(frozen=True)
class SignerEntry:
    """One usable line of an allowed signers file."""

    line: int
    principals: tuple[str, ...]  # patterns
    key: PublicKey
    namespaces: tuple[str, ...] | None = None  # patterns; None: any namespace
    valid_after: int | None = None  # seconds since the epoch, UTC
    valid_before: int | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether a key may sign as a principal, and why (or why not), naming the line."""

    allowed: bool
    reason: str
    entry: SignerEntry | None = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class AllowedSigners:
    """A parsed allowed signers file: its usable entries, in order, and what was skipped."""

    path: str
    entries: tuple[SignerEntry, ...]
    warnings: tuple[str, ...] = ()

    def check(self, key: PublicKey, principal: str, namespace: str, when: int | datetime) -> Verdict:
        """May ``key`` sign as ``principal`` in ``namespace`` at time ``when``? (``ssh-keygen -Y verify``)

        Args:
            key: the verified signer's key (from :func:`mreg.signing.sshsig.verify`).
            principal: who the signer claims to be (``-I``), e.g. ``alice@example.com``.
            namespace: the signature's namespace (``-n``).
            when: the signing time: seconds since the epoch, or an aware datetime.

        Returns:
            A :class:`Verdict`, true when allowed; its reason names the deciding line.

        Raises:
            SignatureError: ``principal`` is empty, too long or has control characters.
        """
        _check_principal(principal)
        moment = _seconds(when)
        refusal: Verdict | None = None
        principal_listed = False
        others: list[str] = []
        for entry in self.entries:
            named = in_list(principal, entry.principals)
            if entry.key != key:
                principal_listed = principal_listed or named
                continue
            if not named:
                others.extend(entry.principals)
                continue
            problem = _restriction(entry, namespace, moment)
            if problem is None:
                return Verdict(True, f"{self.path}:{entry.line}: {key} may sign as '{printable(principal)}'", entry)
            refusal = refusal or Verdict(False, f"{self.path}:{entry.line}: {key} {problem}", entry)  # the first line says why
        if refusal is not None:
            return refusal
        who = f"'{printable(principal)}'"
        if others:
            return Verdict(False, f"{self.path} allows {key} only for {printable(','.join(others), 120)}, not for {who}")
        if principal_listed:
            return Verdict(False, f"{self.path} lists other keys for {who}, not {key}")
        return Verdict(False, f"{key} is not in {self.path}")

    def require(self, key: PublicKey, principal: str, namespace: str, when: int | datetime) -> SignerEntry:
        """The entry that allows ``key`` to sign as ``principal`` (see :meth:`check`).

        Raises:
            SignerNotAllowedError: no entry allows it; the message says why.
        """
        verdict = self.check(key, principal, namespace, when)
        if not verdict.allowed or verdict.entry is None:
            raise SignerNotAllowedError(f"signer not allowed: {verdict.reason}")
        return verdict.entry

    def find_principals(self, key: PublicKey, when: int | datetime | None = None) -> tuple[str, ...]:
        """The principals of the first entry for ``key`` valid at ``when`` (``ssh-keygen -Y find-principals``).

        As ssh-keygen does, namespaces are not considered, and the principals are the
        entry's patterns as written.

        Args:
            key: the signer's key.
            when: the time the key must be valid at (default: now).

        Returns:
            The principal patterns, or an empty tuple when no entry lists the key.
        """
        moment = int(time.time()) if when is None else _seconds(when)
        for entry in self.entries:
            if entry.key == key and (entry.valid_after or moment) <= moment <= (entry.valid_before or moment):
                return entry.principals
        return ()


def _restriction(entry: SignerEntry, namespace: str, moment: int) -> str | None:
    """Why ``entry``'s options forbid a signature in ``namespace`` at ``moment`` (None: they allow it)."""
    if entry.namespaces is not None and not in_list(namespace, entry.namespaces):
        return f"may sign only in namespaces {','.join(entry.namespaces)}, not '{printable(namespace)}'"
    if entry.valid_after is not None and moment < entry.valid_after:
        return f"is valid only from {_show(entry.valid_after)}, and the signature is of {_show(moment)}"
    if entry.valid_before is not None and moment > entry.valid_before:
        return f"expired at {_show(entry.valid_before)}, and the signature is of {_show(moment)}"
    return None


def load(path: str | PathLike[str]) -> AllowedSigners:
    """Read and parse an allowed signers file (at most :data:`MAX_FILE` bytes).

    Raises:
        AllowedSignersError: the file is missing, too large, not UTF-8, or a line is
            malformed (the message names the file and line).
    """
    where = str(path)
    data, _ = read_small_file(Path(path), MAX_FILE, "allowed signers file", AllowedSignersError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AllowedSignersError(f"{printable(where, 200)}:{line}: not UTF-8 text") from None
    return parse(text, where)


def parse(text: str, path: str = "allowed signers") -> AllowedSigners:
    """Parse the text of an allowed signers file; ``path`` names it in messages.

    Raises:
        AllowedSignersError: a line is malformed (the message names the file and line).
    """
    if len(text) > MAX_FILE:
        raise AllowedSignersError(f"{printable(path, 200)} is longer than the {MAX_FILE} characters allowed")
    entries: list[SignerEntry] = []
    warnings: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        where = f"{printable(path, 200)}:{number}"
        try:
            parsed = _parse_line(line.removesuffix("\r"), number, where)
        except SignatureError as exc:  # a key that does not decode
            if isinstance(exc, AllowedSignersError):
                raise
            raise AllowedSignersError(f"{where}: {exc.message}") from None
        if isinstance(parsed, str):
            warnings.append(f"{where}: {parsed}")
        elif parsed is not None:
            entries.append(parsed)
    return AllowedSigners(path, tuple(entries), tuple(warnings))


def _parse_line(line: str, number: int, where: str) -> SignerEntry | str | None:
    """An entry, a warning (the line is skipped), or None for a blank line or comment."""
    line = line.strip(" \t")
    if not line or line.startswith("#"):
        return None
    if _CONTROL.search(line):
        raise AllowedSignersError(f"{where}: the line has a control character")
    principals_field, rest = _field(line, where)
    second, rest = _field(rest, where)
    if _is_key_type(second):
        options, key_type = "", second
    else:
        options = second
        key_type, rest = _field(rest, where)
        if not _is_key_type(key_type):
            if options and not any(c in options for c in '=,"') and options.lower() != "cert-authority":
                raise AllowedSignersError(
                    f"{where}: unknown key type '{printable(options, 40)}' (mreg reads {', '.join(SUPPORTED_KEY_TYPES)})"
                )
            found = f"'{printable(key_type, 40)}'" if key_type else "nothing"
            raise AllowedSignersError(
                f"{where}: expected principals, options and a key type ({', '.join(SUPPORTED_KEY_TYPES)}), found {found}"
            )
    encoded, _comment = _field(rest, where)
    if not encoded:
        raise AllowedSignersError(f"{where}: the {key_type} key is missing after its type")
    principals = _patterns(_unquoted(principals_field, where), where, "principal")
    settings = _options(options, where)
    if key_type not in SUPPORTED_KEY_TYPES:
        return f"{key_type} entry skipped: mreg verifies {', '.join(SUPPORTED_KEY_TYPES)} keys (SSH certificates are out of scope)"
    key = public_key_from_text(key_type, encoded, "the key")
    if settings.get("cert-authority"):
        return "cert-authority entry skipped: mreg verifies plain keys; SSH certificates are out of scope"
    namespaces = settings.get("namespaces")
    after, before = settings.get("valid-after"), settings.get("valid-before")
    entry = SignerEntry(
        line=number,
        principals=principals,
        key=key,
        namespaces=None if namespaces is None else _patterns(str(namespaces), where, "namespace"),
        valid_after=None if after is None else _time(str(after), where, "valid-after"),
        valid_before=None if before is None else _time(str(before), where, "valid-before"),
    )
    if entry.valid_after is not None and entry.valid_before is not None and entry.valid_before <= entry.valid_after:
        raise AllowedSignersError(f"{where}: valid-before is not later than valid-after")
    return entry


def _is_key_type(field: str) -> bool:
    return field in SUPPORTED_KEY_TYPES or field in UNSUPPORTED_KEY_TYPES or field.endswith(CERTIFICATE_SUFFIX)


def _field(text: str, where: str) -> tuple[str, str]:
    """The next field (spaces inside double quotes kept, ``\\"`` escaped there) and the rest."""
    end = next(_outside_quotes(text, " \t", where))
    return text[:end], text[end:].lstrip(" \t")


def _outside_quotes(text: str, separators: str, where: str) -> Iterator[int]:
    """The index of each character of ``separators`` outside double quotes (``\\"`` stays
    inside them), then ``len(text)``; a quote still open there is refused."""
    quoted, index = False, 0
    while index < len(text):
        character = text[index]
        if quoted and character == "\\" and text[index + 1 : index + 2] == '"':
            index += 1
        elif character == '"':
            quoted = not quoted
        elif character in separators and not quoted:
            yield index
        index += 1
    if quoted:
        raise AllowedSignersError(f"{where}: a double quote is not closed")
    yield len(text)


def _unquoted(field: str, where: str) -> str:
    """A whole field in double quotes without them; quotes anywhere else are refused."""
    if len(field) >= 2 and field[0] == field[-1] == '"' and '"' not in field[1:-1]:
        return field[1:-1]
    if '"' in field:
        raise AllowedSignersError(f"{where}: principals may be quoted only as a whole")
    return field


def _options(text: str, where: str) -> dict[str, str | bool]:
    """The options field: ``cert-authority`` and the quoted values of the others."""
    found: dict[str, str | bool] = {}
    if not text:
        return found
    for option in _split_outside_quotes(text, where):
        name, equals, value = option.partition("=")
        name = name.lower()  # option names are case-insensitive, as ssh-keygen reads them
        if name in found:
            raise AllowedSignersError(f"{where}: option {name} is given twice")
        if name == "cert-authority" and not equals:
            found[name] = True
        elif name in ("namespaces", "valid-after", "valid-before") and equals:
            if len(value) < 2 or value[0] != '"' or value[-1] != '"':
                raise AllowedSignersError(f'{where}: the value of {name} must be in double quotes ({name}="...")')
            found[name] = value[1:-1].replace('\\"', '"')
        else:
            raise AllowedSignersError(
                f"{where}: unknown option or key type '{printable(option, 40)}' (options: {_OPTIONS}; "
                f"key types: {', '.join(SUPPORTED_KEY_TYPES)})"
            )
    return found


def _split_outside_quotes(text: str, where: str) -> list[str]:
    """``text`` split at the commas that are not inside double quotes."""
    parts, start = [], 0
    for end in _outside_quotes(text, ",", where):
        parts.append(text[start:end])
        start = end + 1
    return parts


def _patterns(text: str, where: str, what: str) -> tuple[str, ...]:
    """A pattern list, each pattern non-empty, without spaces, and bounded."""
    patterns = tuple(text.split(","))
    if len(patterns) > MAX_PATTERNS:
        raise AllowedSignersError(f"{where}: more than {MAX_PATTERNS} {what} patterns")
    for pattern in patterns:
        if not pattern.lstrip("!") or len(pattern) > MAX_PATTERN or any(c in pattern for c in ' \t"'):
            raise AllowedSignersError(
                f"{where}: invalid {what} pattern '{printable(pattern)}' (non-empty, at most {MAX_PATTERN} characters, no spaces or quotes)"
            )
    return patterns


def _time(text: str, where: str, name: str) -> int:
    """A ``YYYYMMDD[HHMM[SS]]Z`` time as seconds since the epoch."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise AllowedSignersError(f"{where}: {name} '{printable(text)}' is not a time: use YYYYMMDD[HHMM[SS]]Z, e.g. 20270101Z")
    if match.group(7) is None:
        raise AllowedSignersError(
            f"{where}: {name} '{printable(text)}' has no time zone: write {text}Z for UTC "
            "(ssh-keygen reads a time without Z in each machine's own zone)"
        )
    year, month, day, hour, minute, second = (int(group or 0) for group in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise AllowedSignersError(f"{where}: {name} '{printable(text)}' is not a valid date and time") from None
    seconds = calendar.timegm(moment.timetuple())
    if seconds <= 0:
        raise AllowedSignersError(f"{where}: {name} '{printable(text)}' is not after 1970-01-01")
    return seconds


def _check_principal(principal: str) -> None:
    if not isinstance(principal, str) or not principal or len(principal) > MAX_PATTERN or _CONTROL.search(principal):
        raise SignatureError(f"invalid principal '{printable(principal)}': give who signed, e.g. alice@example.com")


def _seconds(when: int | datetime) -> int:
    """A signing time as seconds since the epoch (an aware datetime, or seconds)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise SignatureError("a signing time must carry its time zone (a naive datetime means different times on different machines)")
        return int(when.timestamp())
    if isinstance(when, bool) or not isinstance(when, int):
        raise SignatureError(f"a signing time must be seconds since the epoch or an aware datetime, not {type(when).__name__}")
    return when


def _show(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
