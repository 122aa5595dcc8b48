"""The cache of files assembled by `mreg path`: shown by du, trimmed by gc to cache.maxsize."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from weightfiles import write_safetensors

from mreg.errors import InvalidInputError
from mreg.registry import Registry
from mreg.storage.cache import DEFAULT_MAX_SIZE, parse_size


@pytest.fixture
def two(registry: Registry, tmp_path: Path) -> Registry:
    """Two versions, each one weight file stored as chunks."""
    for seed, version in enumerate(("1.0.0", "2.0.0")):
        registry.add(f"w@{version}", [write_safetensors(tmp_path / version / "w.safetensors", seed=seed)])
    return registry


def cached(registry: Registry) -> set[Path]:
    return {path for _, path in registry.objects.cached_files()}


def test_du_shows_the_cache_and_gc_keeps_it_within_bounds(two: Registry) -> None:
    first = two.path("w@1.0.0")
    assert cached(two) == {first}
    usage = json.loads(run_cli("du", "--json", registry=two).stdout)
    assert usage["cache"] == first.stat().st_size and "assembled for 'mreg path'" in run_cli("du", registry=two).stdout
    assert two.gc().cache == 0 and cached(two) == {first}  # under the default bound: kept
    size = first.stat().st_size
    two.set_config("cache.maxsize", "0")
    report = run_cli("gc", "--json", registry=two)
    assert json.loads(report.stdout)["cache"] == size
    assert cached(two) == set() and two.path("w@1.0.0").read_bytes()  # assembled again on demand
    assert two.fsck().ok


def test_gc_drops_the_least_recently_used_copies_first(two: Registry) -> None:
    old, new = two.path("w@1.0.0"), two.path("w@2.0.0")
    os.utime(new, (1_000_000, 1_000_000))  # long unused...
    two.path("w@2.0.0")  # ...until now: a path marks its copy as used
    os.utime(old, (2_000_000, 2_000_000))
    two.set_config("cache.maxsize", str(new.stat().st_size + 10))
    dry = two.gc(dry_run=True)
    assert dry.cache == old.stat().st_size and cached(two) == {old, new}
    two.gc()
    assert cached(two) == {new}


def test_gc_drops_copies_nothing_refers_to(two: Registry) -> None:
    size = two.path("w@2.0.0").stat().st_size
    two.remove("w@2.0.0")
    assert two.gc().cache == size
    assert cached(two) == set()


def test_a_bad_cache_bound_stops_gc_before_it_deletes(two: Registry) -> None:
    two.path("w@1.0.0")
    two.remove("w@2.0.0")
    two.set_config("cache.maxsize", "lots")
    before = set(two.objects.iter_digests())
    result = run_cli("gc", registry=two)
    assert result.exit_code == 2 and "cache.maxsize" in result.stderr
    assert set(two.objects.iter_digests()) == before and len(cached(two)) == 1


def test_parse_size() -> None:
    assert parse_size("0") == 0 and parse_size("1024") == 1024 and parse_size("512M") == 512 << 20
    assert parse_size("2G") == parse_size("2GiB") == 2 << 30 and parse_size("1k") == 1024
    assert DEFAULT_MAX_SIZE == 1 << 30
    for bad in ("", "-1", "1.5G", "1P", "lots"):
        with pytest.raises(InvalidInputError):
            parse_size(bad)
