"""NAME@TAG@{DATE} and NAME@latest@{DATE}: what a tag named at a time, from the model's log."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from conftest import run_cli

from mreg.errors import InvalidRefError, UnknownRefError
from mreg.records.names import format_ref, parse_ref
from mreg.registry import Registry


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time mreg logs, set by the test: ``clock[0] = when(...)``."""
    now = [when("2026-11-01T12:00:00")]
    real = time.gmtime
    monkeypatch.setattr(time, "gmtime", lambda seconds=None: real(now[0] if seconds is None else seconds))
    return now


def when(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def history(registry: Registry, make_file, clock: list[float]) -> Registry:
    """m@1.0.0 production on Nov 1 at noon; m@1.1.0 on Nov 3 at noon, production from then."""
    registry.add("m@1.0.0", [make_file("a", "a")], tags=["production"])
    clock[0] = when("2026-11-03T12:00:00")
    registry.add("m@1.1.0", [make_file("b", "b")])
    registry.tag("m@1.1.0", "production")
    return registry


def test_a_tag_resolves_to_what_it_named_then(history: Registry) -> None:
    old, new = history.resolve("m@1.0.0"), history.resolve("m@1.1.0")
    assert history.resolve("m@production@{2026-11-02}") == old  # a date: the end of that day, UTC
    assert history.resolve("m@production@{2026-11-03}") == new
    assert history.resolve("m@production@{2026-11-03T11:59:59Z}") == old
    assert history.resolve("m@production@{2026-11-03T12:00:00Z}") == new
    assert history.resolve("m@production@{2026-11-03T13:00:00+02:00}") == old  # 11:00 UTC
    assert history.resolve("m@latest@{2026-11-01}") == old and history.resolve("m@{2026-11-04}") == new
    assert history.get("m@production@{2026-11-02}").version == "1.0.0"


def test_before_the_tag_existed_is_not_found(history: Registry) -> None:
    with pytest.raises(UnknownRefError, match="had no tag 'production' at 2026-10-31T23:59:59Z.*first set at 2026-11-01T12:00:00Z"):
        history.resolve("m@production@{2026-10-31}")
    with pytest.raises(UnknownRefError):
        history.resolve("m@staging@{2026-11-05}")
    with pytest.raises(UnknownRefError, match="'m' had no latest version at 2026-10-31T23:59:59Z"):
        history.resolve("m@{2026-10-31}")
    with pytest.raises(UnknownRefError):
        history.resolve("nosuch@latest@{2026-11-05}")
    result = run_cli("resolve", "m@production@{2026-10-01}", registry=history)
    assert result.exit_code == 3 and result.stderr.startswith("mreg: error:") and "had no tag" in result.stderr


def test_time_travel_works_wherever_a_reference_does(history: Registry, clock: list[float]) -> None:
    assert run_cli("resolve", "m@production@{2026-11-02}", registry=history).stdout.strip() == history.resolve("m@1.0.0")
    assert run_cli("show", "m@production@{2026-11-02}", registry=history).stdout.startswith("m@1.0.0 ")
    assert run_cli("path", "m@production@{2026-11-02}", registry=history).stdout.strip() == str(history.path("m@1.0.0"))
    clock[0] = when("2026-11-05T00:00:00")
    assert run_cli("tag", "m@production@{2026-11-02}", "production", registry=history).exit_code == 0  # a roll back
    assert history.resolve("m@production") == history.resolve("m@1.0.0")
    assert history.resolve("m@production@{2026-11-04}") == history.resolve("m@1.1.0")
    history.remove("m@1.0.0")  # removed now, but the past still names it
    assert history.resolve("m@production@{2026-11-02}") == history.get("m@production@{2026-11-02}").digest


@pytest.mark.parametrize("text", ["m@1.0.0@{2026-11-01}", "m@production@{yesterday}", "m@production@{2026-11-01T10:00}",
                                  "m@production@{2026-11-01", "sha256:12345678@{2026-11-01}", "m@production@{2026-02-30}"])
def test_malformed_time_references(text: str, history: Registry) -> None:
    with pytest.raises(InvalidRefError):
        parse_ref(text)
    assert run_cli("resolve", text, registry=history).exit_code == 2


def test_time_references_format_back() -> None:
    assert format_ref(parse_ref("m@prod@{2026-11-01T12:00:00+01:00}")) == "m@prod@{2026-11-01T11:00:00Z}"
    assert format_ref(parse_ref("m@{2026-11-01}")) == "m@latest@{2026-11-01T23:59:59Z}"
