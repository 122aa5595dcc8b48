"""The metadata index: a cache of manifests that queries read in one batch."""

from __future__ import annotations

import sqlite3

from mreg import Registry
from mreg.index import INDEX_FILE, _trusted_manifest
from mreg.objects import Dataset, FileEntry, Framework, Lineage, Manifest

from conftest import modules_loaded_by, run_cli


def _add_versions(registry: Registry, make_file, count: int) -> None:
    for i in range(count):
        registry.add(f"demo@1.0.{i}", [make_file(f"w{i}.bin", f"weights {i}")], metrics={"acc": i / count})


def test_cached_manifests_equal_decoded_ones() -> None:
    manifest = Manifest(
        "team/demo",
        "1.2.3-rc.1+build",
        (FileEntry("a/w.bin", "sha256:" + "a" * 64, 7), FileEntry("b.txt", "sha256:" + "b" * 64, 0)),
        family="resnet",
        framework=Framework("pytorch", "2.13.0"),
        architecture="resnet18",
        input_shape=(1, 3, -1, 224),
        metrics={"acc": 0.5, "loss": 2.0},
        properties={"notes": ["x", {"y": 1.5}], "flag": True, "none": None},
        lineage=Lineage((Dataset("imagenet", None, "s3://x"),), ("sha256:" + "c" * 64,), "2026-01-01T00:00:00Z", "me", "why"),
    )
    assert _trusted_manifest(manifest.encode()) == manifest
    assert _trusted_manifest(b"\x81\xa1k\x01") is None


def test_queries_fill_the_index_and_agree_with_the_manifests(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 4)
    expected = [v.version for v in registry.query(name="demo", metrics=["acc>=0.5"])]
    assert expected == ["1.0.3", "1.0.2"]
    assert (registry.root / INDEX_FILE).is_file()
    again = Registry.open(registry.root)
    assert [v.version for v in again.query(name="demo", metrics=["acc>=0.5"])] == expected
    digests = list(again.refs.read("demo").versions.values())
    assert again.manifests(digests) == {d: again.manifest(d) for d in digests}
    assert again.fsck().ok


def test_a_corrupt_index_is_rebuilt(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 3)
    registry.query(name="demo")
    registry.index.close()
    (registry.root / INDEX_FILE).write_bytes(b"not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (registry.root / (INDEX_FILE + suffix)).unlink(missing_ok=True)
    fresh = Registry.open(registry.root)
    assert not fresh.fsck().ok  # fsck says so
    assert len(fresh.query(name="demo")) == 3  # queries still answer, from the manifests
    assert len(Registry.open(registry.root).query(name="demo")) == 3
    assert Registry.open(registry.root).fsck().ok  # and the index was rebuilt


def test_a_wrong_entry_is_never_served_and_fsck_reports_it(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 2)
    registry.query(name="demo")
    digest = registry.resolve("demo@1.0.0")
    other = registry.manifest(registry.resolve("demo@1.0.1")).encode()
    with sqlite3.connect(registry.root / INDEX_FILE) as connection:
        connection.execute("UPDATE manifests SET body = ?, files = '' WHERE digest = ?", (other, digest))
    connection.close()
    fresh = Registry.open(registry.root)
    assert fresh.manifests([digest])[digest].version == "1.0.0"
    problems = fresh.fsck().problems
    assert any("metadata index entry" in p for p in problems)


def test_du_counts_from_the_index(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 3)
    first = registry.disk_usage().to_dict()
    assert Registry.open(registry.root).disk_usage().to_dict() == first
    assert first["models"][0]["logical"] == sum(len(f"weights {i}") for i in range(3))


def test_log_shows_the_newest_entries(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 3)
    registry.tag("demo@1.0.0", "production")
    full = registry.log("demo")
    assert registry.log("demo", 2) == full[:2]
    assert full[0].ref == "tags/production"
    result = run_cli("log", "demo", "-n", "1", "--json", registry=registry)
    assert result.exit_code == 0
    assert '"tags/production"' in result.stdout and "versions/" not in result.stdout


def test_show_does_not_import_sqlite(registry: Registry, make_file, tmp_path) -> None:
    _add_versions(registry, make_file, 1)
    registry.query(name="demo")  # the index exists, but show has no use for it
    result, loaded = modules_loaded_by("show", "demo", cwd=tmp_path, prefixes=["sqlite3"])
    assert result.exit_code == 0, result.stderr
    assert loaded == []


def test_model_names_are_found_at_any_depth(registry: Registry, make_file) -> None:
    for name in ("a", "team/b", "team/deep/c"):
        registry.add(f"{name}@1.0.0", [make_file("w.bin", name)])
    assert registry.refs.names() == ["a", "team/b", "team/deep/c"]
    assert [m.name for m in registry.models()] == ["a", "team/b", "team/deep/c"]


def test_a_damaged_derived_column_is_a_miss_not_a_crash(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 2)
    expected = registry.disk_usage().to_dict()
    with sqlite3.connect(registry.root / INDEX_FILE) as connection:
        connection.execute("UPDATE manifests SET files = 'garbage', size = 'x'")
    connection.close()
    assert Registry.open(registry.root).disk_usage().to_dict() == expected
