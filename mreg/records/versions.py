"""Semantic Versioning 2.0.0: parsing, precedence and bumping.

mreg does not use PEP 440 (``packaging.version``) here on purpose: PEP 440 rewrites
``1.0.0-rc.1`` as ``1.0.0rc1``, cannot parse pre-releases such as ``1.0.0-alpha.beta``,
and orders build metadata (``+local``), all of which SemVer forbids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from mreg.errors import InvalidVersionError
from mreg.text import printable

# The regular expression published on semver.org, with named groups; used with
# fullmatch (a "$" anchor would accept a trailing newline) and ASCII digits only.
_SEMVER = re.compile(
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
MAX_VERSION_LENGTH = 128

Bump = Literal["major", "minor", "patch"]
_Identifier = int | str


class Version(NamedTuple):
    """A parsed SemVer 2.0.0 version; order versions by :attr:`precedence`, not ``<``."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[_Identifier, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        return format_version(self)

    @property
    def is_prerelease(self) -> bool:
        """True for versions such as ``2.0.0-rc.1``."""
        return bool(self.prerelease)

    @property
    def precedence(self) -> tuple:
        """A sort key that orders versions by SemVer precedence (build ignored)."""
        # A release sorts above all of its pre-releases; within a pre-release,
        # numeric identifiers sort below alphanumeric ones (semver.org, item 11).
        pre = tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)


def parse_version(text: str) -> Version:
    """Parse a SemVer 2.0.0 string.

    Raises:
        InvalidVersionError: when ``text`` is not a valid version.
    """
    if not isinstance(text, str):
        raise InvalidVersionError(f"a version must be a string, not {type(text).__name__}")
    match = _SEMVER.fullmatch(text) if len(text) <= MAX_VERSION_LENGTH else None
    if match is None:
        hint = " (drop the leading 'v')" if text[:1] in "vV" and _SEMVER.fullmatch(text[1:]) else ""
        raise InvalidVersionError(
            f"invalid version '{printable(text)}'{hint}: expected MAJOR.MINOR.PATCH with optional "
            "-PRERELEASE and +BUILD, e.g. 1.4.0 or 2.0.0-rc.1 (semver.org)"
        )
    pre = match["pre"]
    build = match["build"]
    return Version(
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"]),
        tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


def is_version(text: str) -> bool:
    """True when ``text`` parses as a SemVer 2.0.0 version."""
    return len(text) <= MAX_VERSION_LENGTH and _SEMVER.fullmatch(text) is not None


def format_version(version: Version) -> str:
    """Render a version in its canonical text form."""
    text = f"{version.major}.{version.minor}.{version.patch}"
    if version.prerelease:
        text += "-" + ".".join(str(p) for p in version.prerelease)
    if version.build:
        text += "+" + ".".join(version.build)
    return text


def highest(texts: Iterable[str]) -> str | None:
    """The version ``latest`` means: the highest release, else the highest pre-release."""
    parsed = [parse_version(t) for t in texts]
    releases = [v for v in parsed if not v.is_prerelease]
    pool = releases or parsed
    return str(max(pool, key=lambda v: v.precedence)) if pool else None


def bump(existing: Iterable[str], part: Bump) -> str:
    """The next version after the highest existing one (``0.0.0`` if there is none).

    A pre-release is promoted to its release when that is what the bump asks for:
    bumping ``2.0.0-rc.1`` by ``major`` gives ``2.0.0``, as npm and semver tools do.
    """
    parsed = [parse_version(t) for t in existing]
    top = max(parsed, key=lambda v: v.precedence) if parsed else Version(0, 0, 0)
    major, minor, patch = top.major, top.minor, top.patch
    if part == "major":
        promote = top.is_prerelease and minor == 0 and patch == 0
        return f"{major if promote else major + 1}.0.0"
    if part == "minor":
        promote = top.is_prerelease and patch == 0
        return f"{major}.{minor if promote else minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch if top.is_prerelease else patch + 1}"
    raise InvalidVersionError(f"unknown bump '{part}': use major, minor or patch")
