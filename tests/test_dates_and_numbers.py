"""Every date and number a user or a config gives, read into range or refused.

Log times are fixed-width UTC text compared as text, so a date before the year 1000
must be written with four digits; an offset that moves a time past the years 1-9999
is an input error, not an internal one. Durations (``http.timeout``,
``MREG_LOCK_TIMEOUT``, ``--grace``) and sizes (``cache.maxsize``) are finite and
bounded. A pulled manifest must give a file already here the size it has.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import assert_clean_failure, closed_port_url, run_cli

from mreg import Blob
from mreg.errors import InvalidInputError, InvalidRefError, RemoteError, UnknownRefError
from mreg.records.manifest import Manifest
from mreg.records.names import format_ref, log_time, parse_ref, parse_time
from mreg.registry import Registry
from mreg.storage.locks import FileLock


@pytest.fixture
def tagged(registry: Registry) -> Registry:
    """m@1.0.0 tagged production now."""
    registry.add("m@1.0.0", [Blob("w.bin", lambda: [b"w"])], tags=["production"])
    return registry


@pytest.mark.parametrize("date", ["0999-12-31", "0001-01-01", "0999-12-31T23:59:59Z", "0500-06-01T00:00:00+05:00", "1969-12-31"])
def test_a_date_before_anything_was_logged_is_not_yet_set(tagged: Registry, date: str) -> None:
    with pytest.raises(UnknownRefError, match="had no tag 'production'"):
        tagged.resolve(f"m@production@{{{date}}}")
    with pytest.raises(UnknownRefError, match="had no latest version"):
        tagged.resolve(f"m@{{{date}}}")
    result = run_cli("resolve", f"m@production@{{{date}}}", registry=tagged)
    assert_clean_failure(result, code=3)


def test_times_are_written_with_every_digit_and_read_back() -> None:
    assert parse_time("0999-12-31") == "0999-12-31T23:59:59Z"
    assert parse_time("0009-01-02T03:04:05+01:00") == "0009-01-02T02:04:05Z"
    assert log_time(5, 6, 7, 8, 9, 1) == "0005-06-07T08:09:01Z"
    ref = parse_ref("m@prod@{0999-12-31}")
    assert format_ref(ref) == "m@prod@{0999-12-31T23:59:59Z}" and parse_ref(format_ref(ref)) == ref
    assert sorted(["2026-01-01T00:00:00Z", parse_time("0999-12-31"), parse_time("1000-01-01")])[0] == "0999-12-31T23:59:59Z"


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01T00:30:00+01:00"])
def test_an_offset_past_the_years_1_to_9999_is_an_input_error(tagged: Registry, text: str) -> None:
    with pytest.raises(InvalidRefError, match="outside the years 1 to 9999"):
        parse_ref(f"m@production@{{{text}}}")
    assert_clean_failure(run_cli("resolve", f"m@production@{{{text}}}", registry=tagged), code=2)
    assert_clean_failure(run_cli("show", f"m@{{{text}}}", registry=tagged), code=2)


def test_the_widest_offsets_inside_the_range_resolve(tagged: Registry) -> None:
    assert tagged.resolve("m@production@{9999-12-31T23:59:59+23:59}") == tagged.resolve("m@1.0.0")
    with pytest.raises(UnknownRefError):
        tagged.resolve("m@production@{0001-01-02T00:00:00+23:59}")


def test_a_log_time_not_in_the_logs_format_never_decides_the_past(tagged: Registry) -> None:
    """A log from elsewhere may carry any text as a time: it cannot be placed, so it is left out."""
    log = tagged.root / "models" / "m" / "_log"
    entry = {"time": "10000-01-01T00:00:00Z", "author": "x", "ref": "tags/staging", "old": None, "new": "1.0.0", "message": ""}
    log.write_text(log.read_text() + json.dumps(entry) + "\n")
    with pytest.raises(UnknownRefError, match="had no tag 'staging'"):
        tagged.resolve("m@staging@{2000-01-01}")  # the year 10000 would sort before 2000 as text


@pytest.mark.parametrize("value", ["inf", "nan", "1e12", "0", "-1", "soon", "\uff15", "3601"])
def test_http_timeout_out_of_range_is_a_clean_input_error(registry: Registry, value: str) -> None:
    run_cli("config", "--add", "fallback.url", closed_port_url(), registry=registry)
    registry.set_config("http.timeout", value)
    result = run_cli("resolve", "absent@1.0.0", registry=registry)
    assert_clean_failure(result, code=2)
    assert "http.timeout" in result.stderr


def test_http_timeout_in_range_is_used(registry: Registry) -> None:
    run_cli("config", "--add", "fallback.url", closed_port_url(), registry=registry)
    for value in ("0.5", "3600"):
        run_cli("config", "http.timeout", value, registry=registry)
        assert_clean_failure(run_cli("resolve", "absent@1.0.0", registry=registry), code=7)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e300", "later"])
def test_a_lock_timeout_out_of_range_is_refused_not_waited_forever(tagged: Registry, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MREG_LOCK_TIMEOUT", value)
    with pytest.raises(InvalidInputError, match="MREG_LOCK_TIMEOUT"):
        FileLock(tagged.root / "lock")
    started = time.monotonic()
    with FileLock(tagged.refs.models_dir / "m" / "_lock", timeout=0):  # held: a bad bound would wait forever
        result = run_cli("tag", "m@1.0.0", "x", registry=tagged)
    assert_clean_failure(result, code=2)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("value", ["9" * 5000, "99999999999999999999", "1e3", "-5"])
def test_cache_maxsize_out_of_range_is_a_clean_input_error(registry: Registry, value: str) -> None:
    registry.set_config("cache.maxsize", value)
    assert_clean_failure(run_cli("gc", registry=registry), code=2)


def test_cache_maxsize_is_capped_not_overflowed(registry: Registry) -> None:
    registry.set_config("cache.maxsize", "9999999999999999999T")
    assert run_cli("gc", "--dry-run", registry=registry).exit_code == 0


@pytest.mark.parametrize("grace", ["nan", "inf", "1e300", "-1", "two"])
def test_a_bucket_grace_out_of_range_is_a_clean_input_error(grace: str) -> None:
    result = run_cli("gc", "s3://bucket/prefix", "--grace", grace)
    assert_clean_failure(result, code=2)
    assert "--grace" in result.stderr


def forge_size(store: Registry, spec: str, size: int) -> None:
    """Point ``spec`` at a copy of its manifest whose only file declares ``size`` bytes."""
    manifest = store.manifest(store.resolve(spec))
    forged = Manifest(**{**manifest.__dict__, "files": (manifest.files[0]._replace(size=size),)})
    digest = store.objects.add_bytes(forged.encode()).digest
    name, version = spec.split("@")
    with store.store.updating(name, author="x", message="") as update:
        update.table = update.table.without_version(version).with_version(version, digest)


def test_a_pulled_manifest_that_lies_about_a_file_already_here_is_refused(tmp_path: Path) -> None:
    here, there = Registry.init(tmp_path / "here"), Registry.init(tmp_path / "there")
    data = b"the same bytes in both"
    here.add("mine@1.0.0", [Blob("w.bin", lambda: [data])])
    there.add("theirs@1.0.0", [Blob("w.bin", lambda: [data])])
    forge_size(there, "theirs@1.0.0", len(data) + 7)
    with pytest.raises(RemoteError, match=f"declares 'w.bin'.* as {len(data) + 7} bytes, but that object has {len(data)}"):
        here.pull(str(tmp_path / "there"))
    assert "theirs" not in here.refs.names() or not here.refs.read("theirs").versions
    assert_clean_failure(run_cli("pull", str(tmp_path / "there"), registry=here), code=7)
    assert here.fsck().ok


def test_a_fallbacks_manifest_that_lies_about_a_file_already_here_is_refused(tmp_path: Path) -> None:
    here, there = Registry.init(tmp_path / "here"), Registry.init(tmp_path / "there")
    data = b"shared"
    here.add("mine@1.0.0", [Blob("w.bin", lambda: [data])])
    there.add("theirs@1.0.0", [Blob("w.bin", lambda: [data])])
    forge_size(there, "theirs@1.0.0", 1 << 40)
    here.set_config("fallback.url", str(tmp_path / "there"))
    assert_clean_failure(run_cli("show", "theirs@1.0.0", registry=here), code=7)
    assert here.fsck().ok
