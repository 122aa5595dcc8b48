"""The grammar of names, tags, references, digests, conditions and file paths."""

from __future__ import annotations

import pytest

from mreg.errors import (
    InvalidInputError,
    InvalidNameError,
    InvalidRefError,
    InvalidVersionError,
)
from mreg.records.names import (
    Ref,
    format_ref,
    is_digest,
    parse_assignment,
    parse_condition,
    parse_digest_prefix,
    parse_name_version,
    parse_number,
    parse_ref,
    validate_file_path,
    validate_key,
    validate_name,
    validate_tag,
)

HEX64 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    ["demo", "a", "0", "resnet-50", "org/team/resnet_50.v2", "A1/b2/C3", "x" * 200, "a.b", "a/" + "b" * 198],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../demo",
        "a/../b",
        "a/..",
        "a..b",
        "/demo",
        "demo/",
        "a//b",
        "/",
        "de\x00mo",
        "de\x01mo",
        "demo\tx",
        "\ndemo",
        "x" * 201,
        "modèle",
        "μοντέλο",
        "de mo",
        ".hidden",
        "_private",
        "-dash",
        "a/.b",
        "a/_refs",
        "a\\b",
        "demo@1.0.0",
        "sha256:abc",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidNameError) as caught:
        validate_name(name)
    assert "segments" in str(caught.value) or "empty" in str(caught.value)
    assert "\n" not in str(caught.value) and "\x00" not in str(caught.value)


@pytest.mark.parametrize("check, text", [(validate_name, "demo\n"), (validate_tag, "prod\n"), (validate_key, "acc\n")])
def test_trailing_newline_is_refused(check, text: str) -> None:
    # A '$' anchor matches before a trailing newline; 'prod\n' in _refs would corrupt it.
    with pytest.raises(InvalidNameError):
        check(text)


@pytest.mark.parametrize("tag", ["production", "staging", "prod-2", "canary.eu_1", "vnext", "version", "T" * 100])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag, message",
    [
        ("latest", "maintained by mreg"),
        ("1.2.3", "looks like a version"),
        ("2.0.0-rc.1", "looks like a version"),
        ("v1.2.3", "looks like a version"),
        ("v1", "looks like a version"),
        ("V2.0", "looks like a version"),
        ("v1-beta", "looks like a version"),
        ("1abc", "starts with a letter"),
        ("", "starts with a letter"),
        ("_x", "starts with a letter"),
        ("a/b", "starts with a letter"),
        ("a b", "starts with a letter"),
        ("T" * 101, "at most 100"),
        ("pr\x00od", "starts with a letter"),
    ],
)
def test_invalid_tags(tag: str, message: str) -> None:
    with pytest.raises(InvalidNameError, match=message):
        validate_tag(tag)


@pytest.mark.parametrize(
    "text, ref",
    [
        ("demo", Ref(name="demo")),
        ("org/team/demo", Ref(name="org/team/demo")),
        ("demo@1.0.0", Ref(name="demo", version="1.0.0")),
        ("demo@2.0.0-rc.1+build.5", Ref(name="demo", version="2.0.0-rc.1+build.5")),
        ("demo@production", Ref(name="demo", tag="production")),
        ("a/b@canary", Ref(name="a/b", tag="canary")),
        ("sha256:" + HEX64, Ref(digest_prefix=HEX64)),
        ("sha256:abcdef12", Ref(digest_prefix="abcdef12")),
        ("demo@prod@{2026-11-01T12:00:00Z}", Ref(name="demo", tag="prod", at="2026-11-01T12:00:00Z")),
        ("a/b@latest@{2026-11-01T23:59:59Z}", Ref(name="a/b", at="2026-11-01T23:59:59Z")),
    ],
)
def test_parse_and_format_round_trip(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref
    assert format_ref(ref) == text
    assert str(ref) == text
    assert parse_ref(format_ref(ref)) == ref


def test_latest_forms() -> None:
    assert parse_ref("demo@latest") == parse_ref("demo") == Ref(name="demo")
    assert parse_ref("demo").is_latest and parse_ref("demo@latest").is_latest
    assert not parse_ref("demo@1.0.0").is_latest and not parse_ref("demo@prod").is_latest
    assert format_ref(parse_ref("demo@latest")) == "demo"


@pytest.mark.parametrize(
    "text, error",
    [
        ("demo@", InvalidRefError),
        ("demo@1.0", InvalidVersionError),
        ("demo@01.0.0", InvalidVersionError),
        ("demo@v1.0.0", InvalidNameError),
        ("demo@1.0.0@x", InvalidVersionError),
        ("../x@1.0.0", InvalidNameError),
        ("@1.0.0", InvalidNameError),
        ("demo@-x", InvalidNameError),
        ("sha256:", InvalidRefError),
        ("sha256:abc1234", InvalidRefError),
        ("sha256:zzzzzzzz", InvalidRefError),
        ("sha256:" + HEX64 + "0", InvalidRefError),
        ("demo@prod@{}", InvalidRefError),
        ("demo@prod@{2026-11-01}x", InvalidRefError),
        ("demo@1.0.0@{2026-11-01}", InvalidRefError),
        ("demo@prod@{2026-11-01T12:00:00}", InvalidRefError),  # no time zone
        ("demo@v1@{2026-11-01}", InvalidNameError),
    ],
)
def test_parse_ref_refuses(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_ref(text)


@pytest.mark.parametrize(
    "text, hexpart",
    [("sha256:abcdef12", "abcdef12"), ("sha256:ABCDEF12", "abcdef12"), ("sha256:" + HEX64, HEX64)],
)
def test_digest_prefixes_accepted(text: str, hexpart: str) -> None:
    assert parse_digest_prefix(text) == hexpart


@pytest.mark.parametrize(
    "text",
    ["sha256:abcdef1", "abcdef12", "sha256:abcdefgh", "sha256:abcd ef12", "sha512:abcdef12", "sha256:" + HEX64 + "a"],
)
def test_digest_prefixes_refused(text: str) -> None:
    with pytest.raises(InvalidRefError, match="8 to 64 hex digits"):
        parse_digest_prefix(text)


def test_is_digest() -> None:
    assert is_digest("sha256:" + HEX64)
    assert not is_digest("sha256:" + HEX64.upper())
    assert not is_digest("sha256:" + HEX64[:-1])
    assert not is_digest(HEX64)


def test_parse_name_version() -> None:
    assert parse_name_version("demo") == ("demo", None)
    assert parse_name_version("a/b@1.2.3-rc.1") == ("a/b", "1.2.3-rc.1")
    with pytest.raises(InvalidRefError, match="latest"):
        parse_name_version("demo@latest")
    with pytest.raises(InvalidRefError, match="names a tag"):
        parse_name_version("demo@production")
    with pytest.raises(InvalidVersionError, match="leading 'v'"):
        parse_name_version("demo@v1.0.0")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("acc>=0.9", ("acc", ">=", 0.9)),
        ("acc <= 1", ("acc", "<=", 1.0)),
        ("loss<0.5", ("loss", "<", 0.5)),
        ("top-1>75", ("top-1", ">", 75.0)),
        ("acc=0.9", ("acc", "==", 0.9)),
        ("acc==0.9", ("acc", "==", 0.9)),
        ("acc!=0", ("acc", "!=", 0.0)),
        ("f1>=1e-3", ("f1", ">=", 0.001)),
    ],
)
def test_parse_condition(text: str, expected: tuple[str, str, float]) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize("text", ["acc", ">=0.9", "acc>=", "acc>=abc", "acc>=nan", "acc<inf", "acc=>0.9", "..x>1", "acc~1"])
def test_parse_condition_refuses(text: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_condition(text)


def test_parse_assignment() -> None:
    assert parse_assignment("acc=0.9", "metric") == ("acc", "0.9")
    assert parse_assignment("url=a=b", "metadata") == ("url", "a=b")
    assert parse_assignment("note=", "metadata") == ("note", "")
    for bad in ["acc", "=1", "a b=1", "..=1", "a..b=1"]:
        with pytest.raises(InvalidNameError):
            parse_assignment(bad, "metadata")


@pytest.mark.parametrize("text, value", [("0.9", 0.9), ("-1", -1.0), ("1e3", 1000.0), ("0", 0.0)])
def test_parse_number(text: str, value: float) -> None:
    assert parse_number(text, "metric") == value


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "", "abc", "0x10"])
def test_parse_number_refuses(text: str) -> None:
    with pytest.raises(InvalidNameError, match="metric"):
        parse_number(text, "metric")


@pytest.mark.parametrize("path", ["model.pt", "sub/dir/weights.bin", "модель.pt", "a b.txt", "x" * 1024, ".hidden"])
def test_valid_file_paths(path: str) -> None:
    assert validate_file_path(path) == path


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "a/", "a//b", ".", "./a", "a/./b", "..", "../x", "a/../b", "a\\b", "a\x00b", "a\nb", "x" * 1025]
)
def test_invalid_file_paths(path: str) -> None:
    with pytest.raises(InvalidNameError) as caught:
        validate_file_path(path)
    assert isinstance(caught.value, InvalidInputError)
