"""SemVer 2.0.0: parsing, precedence (semver.org item 11), ``highest`` and ``bump``."""

from __future__ import annotations

import random

import pytest

from mreg.errors import InvalidInputError, InvalidVersionError
from mreg.records.versions import (
    Version,
    bump,
    format_version,
    highest,
    is_version,
    parse_version,
)


def precedence(text: str) -> tuple:
    return parse_version(text).precedence

VALID = [
    "0.0.0",
    "1.2.3",
    "10.20.30",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-0.3.7",
    "1.0.0-x.7.z.92",
    "1.0.0-x-y-z.--",
    "1.0.0-alpha+001",
    "1.0.0+20130313144700",
    "1.0.0-beta+exp.sha.5114f85",
    "1.0.0+21AF26D3----117B344092BD",
    "2.0.0-rc.1",
    "1.0.0-0A.is.legal",
    "999999999999.0.0",
]

INVALID = [
    "",
    "1",
    "1.0",
    "1.0.0.0",
    "01.0.0",
    "1.01.0",
    "1.0.01",
    "v1.0.0",
    "V1.0.0",
    "1.0.0-",
    "1.0.0+",
    "1.0.0-alpha..1",
    "1.0.0-.alpha",
    "1.0.0-alpha.",
    "1.0.0-01",
    "1.0.0-alpha.01",
    "1.0.0+build..1",
    "1.0.0-alpha_beta",
    " 1.0.0",
    "1.0.0 ",
    "-1.0.0",
    "1.0.0-alpha+",
    "a.b.c",
    "1.0.0-" + "a" * 200,
]


@pytest.mark.parametrize("text", VALID)
def test_valid_versions_parse(text: str) -> None:
    version = parse_version(text)
    assert is_version(text)
    assert str(version) == text
    assert format_version(version) == text


def test_parse_fields() -> None:
    version = parse_version("1.2.3-rc.10.beta+build.7")
    assert (version.major, version.minor, version.patch) == (1, 2, 3)
    assert version.prerelease == ("rc", 10, "beta")
    assert version.build == ("build", "7")
    assert version.is_prerelease
    assert not parse_version("1.2.3+x").is_prerelease


@pytest.mark.parametrize("text", INVALID)
def test_invalid_versions_are_refused(text: str) -> None:
    assert not is_version(text)
    with pytest.raises(InvalidVersionError) as caught:
        parse_version(text)
    assert isinstance(caught.value, InvalidInputError) and isinstance(caught.value, ValueError)
    assert "MAJOR.MINOR.PATCH" in str(caught.value)


def test_leading_v_gets_a_hint() -> None:
    with pytest.raises(InvalidVersionError, match="drop the leading 'v'"):
        parse_version("v1.0.0")


def test_trailing_newline_is_not_a_version() -> None:
    # A '$' anchor would match before a trailing newline; '1.0.0\n' in _refs corrupts it.
    assert not is_version("1.0.0\n")
    with pytest.raises(InvalidVersionError):
        parse_version("1.0.0\n")


@pytest.mark.parametrize("text", ["1\u0660.0.0", "1.0.0-\u0663a", "1.2\u0663.0"])
def test_non_ascii_digits_are_not_versions(text: str) -> None:
    # SemVer identifiers are [0-9A-Za-z-] only; a Unicode-aware \d would accept these.
    assert not is_version(text)


# semver.org, item 11, every example in order.
SEMVER_ORG_CHAINS = [
    ["1.0.0", "2.0.0", "2.1.0", "2.1.1"],
    ["1.0.0-alpha", "1.0.0"],
    [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ],
]


@pytest.mark.parametrize("chain", SEMVER_ORG_CHAINS)
def test_semver_org_precedence_examples(chain: list[str]) -> None:
    keys = [parse_version(text).precedence for text in chain]
    for lower, higher in zip(keys, keys[1:]):
        assert lower < higher
    shuffled = list(chain)
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=precedence) == chain
    assert sorted(shuffled, key=precedence, reverse=True) == chain[::-1]


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("1.9.0", "1.10.0"),
        ("1.0.0-2", "1.0.0-10"),
        ("1.0.0-10", "1.0.0-a"),
        ("1.0.0-rc.1", "1.0.0-rc.1.0"),
        ("0.9.9", "1.0.0-alpha"),
        ("1.0.0-Z", "1.0.0-a"),
    ],
)
def test_more_precedence(lower: str, higher: str) -> None:
    assert parse_version(lower).precedence < parse_version(higher).precedence


def test_build_metadata_does_not_order() -> None:
    a, b, plain = parse_version("1.0.0+b1"), parse_version("1.0.0+a9"), parse_version("1.0.0")
    assert a.precedence == b.precedence == plain.precedence
    assert parse_version("1.0.0-rc.1+zzz").precedence < parse_version("1.0.0+aaa").precedence
    assert sorted(["1.0.0+b", "1.0.0+a"], key=precedence) == ["1.0.0+b", "1.0.0+a"]  # build metadata: a tie


def test_version_equality_keeps_build_but_not_text() -> None:
    assert parse_version("1.0.0+x") != parse_version("1.0.0+y")
    assert parse_version("1.0.0") == Version(1, 0, 0)


@pytest.mark.parametrize(
    "versions, expected",
    [
        ([], None),
        (["1.0.0"], "1.0.0"),
        (["1.0.0", "2.0.0-rc.1"], "1.0.0"),
        (["2.0.0-rc.1", "2.0.0-beta"], "2.0.0-rc.1"),
        (["0.1.0", "1.10.0", "1.9.0"], "1.10.0"),
        (["3.0.0-alpha", "0.0.1"], "0.0.1"),
        (["1.0.0+build.5"], "1.0.0+build.5"),
    ],
)
def test_highest_follows_the_latest_rule(versions: list[str], expected: str | None) -> None:
    assert highest(versions) == expected


@pytest.mark.parametrize(
    "existing, part, expected",
    [
        ([], "major", "1.0.0"),
        ([], "minor", "0.1.0"),
        ([], "patch", "0.0.1"),
        (["1.2.3"], "major", "2.0.0"),
        (["1.2.3"], "minor", "1.3.0"),
        (["1.2.3"], "patch", "1.2.4"),
        (["1.2.3", "0.9.0", "1.10.0"], "patch", "1.10.1"),
        (["1.2.3+build.9"], "patch", "1.2.4"),
        # promotion of a pre-release to its release, as npm does
        (["2.0.0-rc.1"], "major", "2.0.0"),
        (["2.0.0-rc.1"], "minor", "2.0.0"),
        (["2.0.0-rc.1"], "patch", "2.0.0"),
        (["2.1.0-rc.1"], "major", "3.0.0"),
        (["2.1.0-rc.1"], "minor", "2.1.0"),
        (["2.1.0-rc.1"], "patch", "2.1.0"),
        (["2.1.3-rc.1"], "major", "3.0.0"),
        (["2.1.3-rc.1"], "minor", "2.2.0"),
        (["2.1.3-rc.1"], "patch", "2.1.3"),
        (["1.0.0", "2.0.0-rc.1"], "major", "2.0.0"),
    ],
)
def test_bump(existing: list[str], part: str, expected: str) -> None:
    assert bump(existing, part) == expected  # type: ignore[arg-type]


def test_bump_refuses_unknown_part() -> None:
    with pytest.raises(InvalidVersionError):
        bump(["1.0.0"], "build")  # type: ignore[arg-type]
