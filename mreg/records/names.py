"""The grammar of everything a user types: names, tags, references, digests, keys.

This module is the single owner of these rules. Every validator raises an
:class:`~mreg.errors.InvalidInputError` whose message says what is allowed, and no
string accepted here can become a path outside the store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, NamedTuple, NewType

from mreg.errors import (
    InvalidInputError,
    InvalidNameError,
    InvalidRefError,
    InvalidTypeError,
)
from mreg.records.versions import is_version, parse_version
from mreg.text import printable

Digest = NewType("Digest", str)
"""A full object id: ``sha256:`` followed by 64 lowercase hex digits."""

DIGEST_PREFIX = "sha256:"
MIN_DIGEST_PREFIX = 8
LATEST = "latest"

MAX_NAME_LENGTH = 200
MAX_TAG_LENGTH = 100
MAX_KEY_LENGTH = 100
MAX_PATH_LENGTH = 1024

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*", re.ASCII)
_TAG = re.compile(r"[A-Za-z][A-Za-z0-9._-]*", re.ASCII)
_VERSION_LIKE_TAG = re.compile(r"[vV][0-9]+(?:[.\-+].*)?", re.ASCII | re.DOTALL)
_HEX = re.compile(r"[0-9a-f]+", re.ASCII)
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@/-]*", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_LOG_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", re.ASCII)  # as the log records times
_CONDITION = re.compile(r"(?P<key>[^<>=!\s]+)\s*(?P<op>>=|<=|==|!=|>|<|=)\s*(?P<value>\S+)", re.ASCII)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise InvalidNameError."""
    _require_text(name, "a model name")
    problem = None
    if not name:
        problem = "it is empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"it is longer than {MAX_NAME_LENGTH} characters"
    elif ".." in name:
        problem = "it contains '..'"
    elif not _NAME.fullmatch(name):
        problem = "it is not made of '/'-separated segments"
    if problem:
        raise InvalidNameError(
            f"invalid model name '{printable(name)}': {problem}; a name is one or more "
            "'/'-separated segments of letters, digits, '.', '_' and '-', each starting with "
            f"a letter or digit, at most {MAX_NAME_LENGTH} characters"
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag name, else raise InvalidNameError."""
    _require_text(tag, "a tag")
    if tag == LATEST:
        raise InvalidNameError("'latest' is maintained by mreg and cannot be set by hand")
    if is_version(tag) or _VERSION_LIKE_TAG.fullmatch(tag):
        raise InvalidNameError(
            f"invalid tag '{printable(tag)}': it looks like a version; "
            "versions are registered with 'mreg add NAME@VERSION', tags are words such as 'production'"
        )
    if not _TAG.fullmatch(tag) or len(tag) > MAX_TAG_LENGTH:
        raise InvalidNameError(
            f"invalid tag '{printable(tag)}': a tag starts with a letter and continues with letters, "
            f"digits, '.', '_' or '-', at most {MAX_TAG_LENGTH} characters"
        )
    return tag


def validate_key(key: str, what: str = "key") -> str:
    """Validate a metric name or metadata key (letters, digits, ``_.@/-``)."""
    _require_text(key, f"a {what}")
    if not _KEY.fullmatch(key) or len(key) > MAX_KEY_LENGTH or ".." in key:
        raise InvalidNameError(
            f"invalid {what} '{printable(key)}': use letters, digits and '_', '.', '@', '/', '-', "
            f"starting with a letter, digit or '_', at most {MAX_KEY_LENGTH} characters"
        )
    return key


def validate_file_path(path: str) -> str:
    """Validate a file path recorded in a manifest: relative, '/'-separated, no '..'."""
    _require_text(path, "a file path")
    parts = path.split("/")
    bad = (
        not path
        or len(path) > MAX_PATH_LENGTH
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 32 or c == "\\" for c in path)
    )
    if bad:
        raise InvalidNameError(
            f"invalid file path '{printable(path)}': it must be relative, '/'-separated, "
            "without empty, '.' or '..' segments, backslashes or control characters"
        )
    return path


def _require_text(value: object, what: str) -> None:
    """API callers can pass anything: a non-string is an input error, not a crash."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a string, not {type(value).__name__}")


# ---------------------------------------------------------------------------- digests


def is_digest(text: str) -> bool:
    """True for a full digest ``sha256:<64 hex>`` (False for anything else, a non-string too:
    decoded objects from elsewhere hold any type)."""
    return isinstance(text, str) and text.startswith(DIGEST_PREFIX) and len(text) == 71 and bool(_HEX.fullmatch(text[7:]))


def validate_digest(text: str) -> Digest:
    """Return ``text`` as a Digest if it is a full, lowercase sha256 digest."""
    if not is_digest(text):
        raise InvalidRefError(f"invalid digest '{printable(text)}': expected sha256: followed by 64 hex digits")
    return Digest(text)


def digest_from_hex(hexdigest: str) -> Digest:
    """Turn a hashlib hexdigest into a Digest."""
    return validate_digest(DIGEST_PREFIX + hexdigest)


def parse_digest_prefix(text: str) -> str:
    """Return the hex part of ``sha256:HEX`` where HEX has 8 to 64 hex digits."""
    _require_text(text, "a digest")
    hexpart = text[len(DIGEST_PREFIX) :].lower() if text.startswith(DIGEST_PREFIX) else ""
    if not (MIN_DIGEST_PREFIX <= len(hexpart) <= 64 and _HEX.fullmatch(hexpart)):
        raise InvalidRefError(
            f"invalid digest '{printable(text)}': expected sha256: followed by "
            f"{MIN_DIGEST_PREFIX} to 64 hex digits"
        )
    return hexpart


# ------------------------------------------------------------------------- references


class Ref(NamedTuple):
    """A parsed reference: ``NAME``, ``NAME@VERSION``, ``NAME@TAG``, ``NAME@latest`` or a
    digest; a tag or ``latest`` may add ``@{DATE}``: what it pointed at then."""

    name: str = ""
    version: str | None = None
    tag: str | None = None
    digest_prefix: str | None = None  # hex digits after "sha256:"
    at: str | None = None  # a UTC time as the log writes it, YYYY-MM-DDTHH:MM:SSZ

    @property
    def is_latest(self) -> bool:
        """True for ``NAME`` and ``NAME@latest``."""
        return bool(self.name) and self.version is None and self.tag is None

    def __str__(self) -> str:
        return format_ref(self)


def parse_ref(text: str) -> Ref:
    """Parse a reference string (see the README's reference grammar).

    Raises:
        InvalidRefError: the reference is malformed.
        InvalidNameError: the name or tag part breaks the naming rules.
    """
    _require_text(text, "a reference")
    base, brace, when = text.partition("@{")
    if brace:
        ref = parse_ref(base)
        if not ref.name or ref.version is not None or ref.at is not None:
            raise InvalidRefError(
                f"invalid reference '{printable(text)}': only a tag or latest has a past "
                "(NAME@TAG@{DATE} or NAME@latest@{DATE}); versions and digests never change"
            )
        if not when.endswith("}"):
            raise InvalidRefError(f"invalid reference '{printable(text)}': '@{{' without a closing '}}'")
        return ref._replace(at=parse_time(when[:-1]))
    if text.startswith(DIGEST_PREFIX):
        return Ref(digest_prefix=parse_digest_prefix(text))
    name, sep, selector = text.partition("@")
    validate_name(name)
    if not sep or selector == LATEST:
        return Ref(name=name)
    if not selector:
        raise InvalidRefError(f"invalid reference '{printable(text)}': nothing after '@'")
    if selector[:1].isdigit():
        return Ref(name=name, version=str(parse_version(selector)))
    return Ref(name=name, tag=validate_tag(selector))


def parse_name_version(text: str) -> tuple[str, str | None]:
    """Parse ``NAME`` or ``NAME@VERSION`` (as ``mreg add`` takes them)."""
    _require_text(text, "NAME@VERSION")
    name, sep, version = text.partition("@")
    validate_name(name)
    if not sep:
        return name, None
    if version == LATEST:
        raise InvalidRefError("'latest' is maintained by mreg; give an explicit version or {bump}", options=("bump",))
    if version[:1].isalpha() and not _VERSION_LIKE_TAG.fullmatch(version):
        raise InvalidRefError(
            f"'{printable(text)}' names a tag; a new version needs NAME@VERSION (tags go with {{tags}})", options=("tags",)
        )
    return name, str(parse_version(version))


def format_ref(ref: Ref) -> str:
    """The text form of a reference; the inverse of :func:`parse_ref`."""
    if ref.digest_prefix is not None:
        return DIGEST_PREFIX + ref.digest_prefix
    selector = ref.version or ref.tag or (LATEST if ref.at else None)
    text = f"{ref.name}@{selector}" if selector else ref.name
    return f"{text}@{{{ref.at}}}" if ref.at else text


def parse_time(text: str) -> str:
    """An ISO 8601 date or date and time, as UTC in the log's format.

    A date alone means the end of that day (UTC), so that everything logged on it
    counts; a time needs its offset (``Z`` or ``+HH:MM``), as a time without one
    would depend on where the command runs.

    Raises:
        InvalidRefError: the text is not such a date or time.
    """
    from datetime import (  # start-up: only a reference with @{DATE} needs it
        datetime,
        timezone,
    )

    _require_text(text, "a date")
    hint = "expected an ISO 8601 date or time such as 2026-11-01 or 2026-11-01T12:00:00Z"
    try:
        if _DATE.fullmatch(text):
            moment = datetime.fromisoformat(text).replace(hour=23, minute=59, second=59, tzinfo=timezone.utc)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRefError(f"invalid date '{printable(text)}': {hint}") from None
    if moment.tzinfo is None:
        raise InvalidRefError(f"invalid date '{printable(text)}': give the time zone (Z or +HH:MM); {hint}")
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:  # a far offset moves the moment past year 1 or 9999
        raise InvalidRefError(f"invalid date '{printable(text)}': it falls outside the years 1 to 9999 in UTC") from None
    return log_time(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)


def log_time(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str:
    """A UTC time in the log's fixed-width format, ``YYYY-MM-DDTHH:MM:SSZ``.

    Every field has its full width (the year 999 is ``0999``, which ``strftime``
    does not promise), so that such times order as text, as the log's readers compare them.
    """
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


def is_log_time(text: str) -> bool:
    """True for a time in the log's fixed-width format (the only times that order as text)."""
    return _LOG_TIME.fullmatch(text) is not None


# ----------------------------------------------------------- metrics and key=value input


def parse_number(text: str, what: str) -> float:
    """Parse a finite number for a metric or a threshold."""
    _require_text(text, what)
    try:
        value = float(text)
    except ValueError:
        raise InvalidNameError(f"invalid {what}: '{printable(text)}' is not a number") from None
    if not math.isfinite(value):
        raise InvalidNameError(f"invalid {what}: '{printable(text)}' is not a finite number")
    return value


def parse_seconds(text: str, what: str, *, maximum: float, positive: bool = False, unit: str = "seconds") -> float:
    """A duration read from a setting or an option: a finite number of ``unit`` from 0
    (above 0 when ``positive``) to ``maximum``, which keeps every clock and socket API
    that receives it in range.

    Raises:
        InvalidInputError: naming ``what``, the value and the range.
    """
    _require_text(text, what)
    lowest = "above 0" if positive else "from 0"
    problem = InvalidInputError(f"invalid {what} '{printable(text, 40)}': a number of {unit} {lowest} to {maximum:g}")
    try:
        value = float(text) if text.strip().isascii() else math.nan  # float() would take other scripts' digits
    except ValueError:
        raise problem from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > maximum:
        raise problem
    return value


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` and validate KEY."""
    _require_text(text, what)
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidNameError(f"invalid {what} '{printable(text)}': expected KEY=VALUE")
    return validate_key(key, what), value


def parse_condition(text: str) -> tuple[str, str, float]:
    """Parse a metric threshold such as ``acc>=0.9`` into ``(name, operator, value)``."""
    _require_text(text, "a metric condition")
    match = _CONDITION.fullmatch(text.strip())
    if match is None:
        raise InvalidNameError(
            f"invalid metric condition '{printable(text)}': expected NAME OP NUMBER "
            "with OP one of >=, <=, >, <, ==, !=, e.g. 'acc>=0.9'"
        )
    op = "==" if match["op"] == "=" else match["op"]
    return validate_key(match["key"], "metric name"), op, parse_number(match["value"], "threshold")


def names_of(value: Any, what: str) -> list[Any]:
    """An iterable of names as a list; a bare string is refused (it would be its letters).

    Raises:
        InvalidTypeError: ``value`` is a string, bytes or not iterable.
    """
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"{what} must be a list of names, not a single string (use [{value!r}])")
    if not isinstance(value, Iterable):
        raise InvalidTypeError(f"{what} must be a list of names, not {type(value).__name__}")
    return list(value)


def text_of(value: Any, what: str) -> str:
    """``value`` if it is a str, else InvalidTypeError (API callers pass anything)."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{what} must be a string, not {type(value).__name__}")
    return value


def require(condition: bool, message: str) -> None:
    """Raise InvalidInputError(message) unless ``condition``."""
    if not condition:
        raise InvalidInputError(message)


def refuse_case_twin(names: Iterable[str], name: str) -> None:
    """Refuse a new model whose name differs from one of ``names`` only in case.

    Such names would share one directory on case-insensitive file systems.
    """
    existing = list(names)
    if name in existing:
        return
    twin = next((other for other in existing if other.lower() == name.lower()), None)
    if twin is not None:
        raise InvalidNameError(f"model name '{name}' differs only in case from the existing model '{twin}'")
