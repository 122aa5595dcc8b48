"""The git-style config file (.mreg/config): the module and the ``mreg config`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_clean_failure, closed_port_url, run_cli

from mreg.errors import InvalidInputError
from mreg.registry import Registry
from mreg.storage.config import Config, ConfigError, parse_key, update

SAMPLE = """\
# a comment
; another comment
[core]
\tformatversion = 1

[fallback]
\turl = /mnt/team
\turl = http://store.example:8080/mreg
[remote "origin"]
\turl = /srv/origin
[http]
\ttimeout = 2.5
"""


def load(text: str, tmp_path: Path) -> Config:
    """Parse config text through a real file."""
    path = tmp_path / "config"
    path.write_text(text, encoding="utf-8")
    return Config.load(path)


def test_parse_and_write_round_trip(tmp_path: Path) -> None:
    """Encoding what was parsed and parsing it again gives the same entries."""
    config = load(SAMPLE, tmp_path)
    assert config.get("core.formatversion") == "1"
    assert config.get_all("fallback.url") == ["/mnt/team", "http://store.example:8080/mreg"]
    assert config.get("remote.origin.url") == "/srv/origin"
    assert config.get("http.timeout") == "2.5"
    again = load(config.encode(), tmp_path)
    assert again.entries == config.entries
    assert [e.name for e in again.entries] == [
        "core.formatversion",
        "fallback.url",
        "fallback.url",
        "remote.origin.url",
        "http.timeout",
    ]


def test_a_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    """No config file reads as no entries, not as an error."""
    config = Config.load(tmp_path / "absent")
    assert config.entries == [] and config.get("core.x") is None and config.get_all("fallback.url") == []


def test_sections_and_keys_are_case_insensitive_subsections_are_not(tmp_path: Path) -> None:
    """[FallBack] URL is fallback.url; [remote "Origin"] is not remote.origin."""
    config = load('[FallBack]\n\tURL = /a\n[Remote "Origin"]\n\tUrl = /b\n', tmp_path)
    assert config.get("fallback.url") == config.get("FALLBACK.Url") == "/a"
    assert config.get("remote.Origin.url") == config.get("REMOTE.Origin.URL") == "/b"
    assert config.get("remote.origin.url") is None
    assert config.subsections("REMOTE") == ["Origin"]
    assert parse_key("Remote.Origin.URL") == ("remote", "Origin", "url")


def test_subsections_with_dots_and_quotes_round_trip(tmp_path: Path) -> None:
    """A subsection may hold dots, quotes and backslashes; it is escaped in the header."""
    path = tmp_path / "config"
    update(path, "remote.my.team.url", "/one")
    update(path, 'remote.a"b\\c.url', "/two")
    assert '[remote "my.team"]' in path.read_text()
    config = Config.load(path)
    assert config.subsections("remote") == ["my.team", 'a"b\\c']
    assert config.get("remote.my.team.url") == "/one"
    assert config.get('remote.a"b\\c.url') == "/two"


def test_repeated_keys_keep_their_order(tmp_path: Path) -> None:
    """--add appends in order; get reads the last; set replaces every value."""
    path = tmp_path / "config"
    for value in ("/first", "/second", "/third"):
        update(path, "fallback.url", value, add=True)
    update(path, "core.other", "x")
    update(path, "fallback.url", "/fourth", add=True)
    config = Config.load(path)
    assert config.get_all("fallback.url") == ["/first", "/second", "/third", "/fourth"]
    assert config.get("fallback.url") == "/fourth"
    assert path.read_text().count("[fallback]") == 1  # added beside its siblings
    update(path, "fallback.url", "/only")
    assert Config.load(path).get_all("fallback.url") == ["/only"]
    assert Config.load(path).get("core.other") == "x"


@pytest.mark.parametrize(
    "value",
    ["has # hash", "semi;colon", "a#b", "inner spaces here", " leading", "trailing ", 'say "hi"', "back\\slash", "tab\tinside"],
)
def test_values_that_need_quoting_round_trip(tmp_path: Path, value: str) -> None:
    """Values with comment characters, edge spaces, quotes or backslashes come back exactly."""
    path = tmp_path / "config"
    update(path, "core.value", value)
    update(path, "core.after", "plain")
    config = Config.load(path)
    assert config.get("core.value") == value
    assert config.get("core.after") == "plain"


def test_comments_after_unquoted_values_are_dropped(tmp_path: Path) -> None:
    """A ' #' or ' ;' after an unquoted value starts a comment, as in git."""
    config = load("[core]\n\ta = value # note\n\tb = two words ; note\n\tflag\n", tmp_path)
    assert config.get("core.a") == "value"
    assert config.get("core.b") == "two words"
    assert config.get("core.flag") == "true"  # a bare key is boolean true, as in git


def test_a_quoted_value_followed_by_a_comment(tmp_path: Path) -> None:
    """`key = "v" # note` reads as v (git's syntax, which the module docstring promises)."""
    assert load('[core]\n\tname = "quoted value" # note\n', tmp_path).get("core.name") == "quoted value"


def test_an_empty_value_round_trips(tmp_path: Path) -> None:
    """`mreg config core.empty ""` stores the empty string, not boolean true."""
    path = tmp_path / "config"
    update(path, "core.empty", "")
    assert Config.load(path).get("core.empty") == ""


@pytest.mark.parametrize("key", ["nosection", "a..b", ".key", "section.", "sec.1key", "sec.key_x", "sec tion.key", ""])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    """A key that is not SECTION.KEY or SECTION.NAME.KEY is invalid input, and nothing is written."""
    with pytest.raises(InvalidInputError):
        update(tmp_path / "config", key, "x")
    assert not (tmp_path / "config").exists()


def test_multi_line_values_are_refused(tmp_path: Path) -> None:
    """A value is one line: a newline would change the file's structure."""
    with pytest.raises(InvalidInputError):
        update(tmp_path / "config", "core.x", "one\n[evil]\nkey = 1")


@pytest.mark.parametrize("text", ["[core\n\tx = 1\n", "x = 1\n", "[core]\n\t= 1\n", '[core "unterminated]\n\tx = 1\n'])
def test_a_malformed_file_raises_config_error(tmp_path: Path, text: str) -> None:
    """Unparseable text is a ConfigError naming the file and line."""
    with pytest.raises(ConfigError, match="line"):
        load(text, tmp_path)


def test_config_command_set_get_add_list_unset(registry: Registry) -> None:
    """The CLI mirrors git config: set, get (last), --add, --get-all, --list, --unset."""
    assert run_cli("config", "remote.team.url", "/mnt/team", registry=registry).exit_code == 0
    assert run_cli("config", "remote.team.url", registry=registry).stdout == "/mnt/team\n"
    for url in ("/a", "http://h:8000/b", "/c d"):
        assert run_cli("config", "--add", "fallback.url", url, registry=registry).exit_code == 0
    assert run_cli("config", "fallback.url", registry=registry).stdout == "/c d\n"
    assert run_cli("config", "--get-all", "FALLBACK.URL", registry=registry).stdout == "/a\nhttp://h:8000/b\n/c d\n"
    listed = run_cli("config", "--list", registry=registry).stdout.splitlines()
    assert listed == [
        "core.formatversion=1",
        "remote.team.url=/mnt/team",
        "fallback.url=/a",
        "fallback.url=http://h:8000/b",
        "fallback.url=/c d",
    ]
    assert run_cli("config", "--unset", "fallback.url", registry=registry).exit_code == 0
    assert run_cli("config", "--get-all", "fallback.url", registry=registry).exit_code == 1
    assert run_cli("config", "remote.team.url", registry=registry).stdout == "/mnt/team\n"
    assert registry.root.joinpath("config").read_text().count("fallback") == 0


def test_config_command_missing_key_fails_cleanly(registry: Registry) -> None:
    """Reading a key that has no value: one error line, exit 1."""
    assert_clean_failure(run_cli("config", "fallback.url", registry=registry), code=1)
    assert_clean_failure(run_cli("config", registry=registry), code=2)


@pytest.mark.parametrize("key", ["nosection", "a..b", "sec.key_x"])
def test_config_command_refuses_bad_keys(registry: Registry, key: str) -> None:
    """A bad key is a usage error (exit 2) and the file is untouched."""
    before = registry.root.joinpath("config").read_bytes()
    assert_clean_failure(run_cli("config", key, "value", registry=registry), code=2)
    assert_clean_failure(run_cli("config", "--add", key, "value", registry=registry), code=2)
    assert registry.root.joinpath("config").read_bytes() == before


def test_a_malformed_config_file_is_a_clean_error(registry: Registry) -> None:
    """Commands that read a broken config fail with one line naming it, no traceback."""
    registry.root.joinpath("config").write_text("[core\n\tformatversion = 1\n")
    result = run_cli("config", "--list", registry=registry)
    assert_clean_failure(result)
    assert "config line 1" in result.stderr
    assert_clean_failure(run_cli("config", "--add", "fallback.url", "/x", registry=registry))
    assert_clean_failure(run_cli("resolve", "absent@1.0.0", registry=registry))


def test_a_config_file_that_is_not_utf8_is_a_clean_error(registry: Registry) -> None:
    """Undecodable bytes are a malformed config, reported like one (not as a crash)."""
    registry.root.joinpath("config").write_bytes(b"[core]\n\tname = \xff\n")
    result = run_cli("config", "--list", registry=registry)
    assert_clean_failure(result)
    assert result.exit_code != 70 and "internal error" not in result.stderr


def test_http_timeout_must_be_a_number(registry: Registry) -> None:
    """http.timeout is read as seconds; anything else is a clean usage error when used."""
    run_cli("config", "http.timeout", "0.5", registry=registry)
    run_cli("config", "--add", "fallback.url", closed_port_url(), registry=registry)
    assert_clean_failure(run_cli("resolve", "absent@1.0.0", registry=registry), code=7)  # a number: used
    run_cli("config", "http.timeout", "soon", registry=registry)
    assert_clean_failure(run_cli("resolve", "absent@1.0.0", registry=registry), code=2)
