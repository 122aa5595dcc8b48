"""The metadata index: a cache of manifests that queries read in one batch."""

from __future__ import annotations

import sqlite3

import msgpack
import pytest
from conftest import modules_loaded_by, run_cli

from mreg.records.manifest import Dataset, FileEntry, Framework, Lineage, Manifest
from mreg.registry import Registry
from mreg.storage.index import INDEX_FILE, ManifestRow
from mreg.storage.objects import ObjectStore


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
    data = manifest.encode()
    row = ManifestRow.of(Manifest.decode(data), len(data))
    stored = ManifestRow._make(msgpack.unpackb(msgpack.packb(list(row))))  # as the index gives it back
    assert stored.manifest() == Manifest.decode(data)
    assert stored.total_size == 7


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
    registry.store.index.close()
    (registry.root / INDEX_FILE).write_bytes(b"not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (registry.root / (INDEX_FILE + suffix)).unlink(missing_ok=True)
    fresh = Registry.open(registry.root)
    assert not fresh.fsck().ok  # fsck says so
    assert len(fresh.query(name="demo")) == 3  # queries still answer, from the manifests
    assert len(Registry.open(registry.root).query(name="demo")) == 3
    assert Registry.open(registry.root).fsck().ok  # and the index was rebuilt


def _rows(registry: Registry) -> dict[str, tuple[bytes, bytes]]:
    with sqlite3.connect(registry.root / INDEX_FILE) as connection:
        rows = {d: (row, seal) for d, row, seal in connection.execute("SELECT digest, row, seal FROM manifests")}
    connection.close()
    return rows


def _set_row(registry: Registry, digest: str, row: bytes, seal: bytes) -> None:
    with sqlite3.connect(registry.root / INDEX_FILE) as connection:
        connection.execute("UPDATE manifests SET row = ?, seal = ? WHERE digest = ?", (row, seal, digest))
    connection.close()


def test_a_wrong_entry_is_never_served_and_fsck_reports_it(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 2)
    expected = [(v.version, v.digest) for v in registry.query(name="demo", metrics=["acc>=0.5"])]
    digest, other = registry.resolve("demo@1.0.0"), registry.resolve("demo@1.0.1")
    rows = _rows(registry)
    _set_row(registry, digest, *rows[other])  # another version's sealed row, filed under this digest
    fresh = Registry.open(registry.root)
    assert any("metadata index entry" in p for p in fresh.fsck().problems)
    assert [(v.version, v.digest) for v in fresh.query(name="demo", metrics=["acc>=0.5"])] == expected
    assert fresh.manifests([digest])[digest].version == "1.0.0"
    assert _rows(registry)[digest] == rows[digest]  # the miss was read again and rewritten
    assert Registry.open(registry.root).fsck().ok


def test_a_damaged_row_is_a_miss_for_every_query(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 4)
    registry.tag("demo@1.0.1", "production")
    queries = {
        "ls --metric": lambda r: [(v.version, v.digest, v.tags) for v in r.query(name="demo", metrics=["acc>=0.5"])],
        "ls --sort": lambda r: [v.version for v in r.query(name="demo", sort="acc", limit=2)],
        "ls latest": lambda r: [v.version for v in r.query(latest_only=True, metrics=["acc>0.1"])],
        "models": lambda r: r.models(),
        "du": lambda r: r.disk_usage().to_dict(),
    }
    expected = {label: query(registry) for label, query in queries.items()}
    rows = _rows(registry)
    for digest, (row, seal) in rows.items():  # metrics changed without a new seal: acc 0.0 -> 0.99
        values = msgpack.unpackb(row)
        values[7] = {"acc": 0.99 - values[7]["acc"]}
        values[0] = 1
        _set_row(registry, digest, msgpack.packb(values), seal)
    assert {label: query(Registry.open(registry.root)) for label, query in queries.items()} == expected
    assert _rows(registry) == rows  # each was read from its manifest again and rewritten
    problems = Registry.open(registry.root).fsck().problems
    assert problems == []


def test_fsck_reports_a_sealed_row_that_disagrees_with_its_manifest(registry: Registry, make_file) -> None:
    from mreg.storage.index import _seal

    _add_versions(registry, make_file, 1)
    registry.query(name="demo")
    digest = registry.resolve("demo@1.0.0")
    values = msgpack.unpackb(_rows(registry)[digest][0])
    values[3] = "another-family"  # as a writer with a bug would leave it, sealed
    row = msgpack.packb(values)
    _set_row(registry, digest, row, _seal(digest, row))
    problems = Registry.open(registry.root).fsck().problems
    assert [p for p in problems if "metadata index entry" in p and digest in p]


def test_an_index_of_an_older_schema_is_rebuilt(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 3)
    expected = [v.version for v in registry.query(name="demo", metrics=["acc>=0.5"])]
    registry.store.index.close()
    (registry.root / INDEX_FILE).unlink()
    with sqlite3.connect(registry.root / INDEX_FILE) as connection:  # schema 2: bodies, names and files
        connection.executescript(
            "CREATE TABLE manifests (digest TEXT PRIMARY KEY, name TEXT, size INTEGER, files TEXT, body BLOB) WITHOUT ROWID;"
            "PRAGMA user_version=2;"
        )
        for digest in registry.refs.read("demo").versions.values():
            connection.execute("INSERT INTO manifests VALUES (?, 'demo', 1, '', x'00')", (digest,))
    connection.close()
    fresh = Registry.open(registry.root)
    assert [v.version for v in fresh.query(name="demo", metrics=["acc>=0.5"])] == expected
    assert len(_rows(registry)) == 3
    assert fresh.fsck().ok


def test_du_counts_from_the_index(registry: Registry, make_file, monkeypatch: pytest.MonkeyPatch) -> None:
    _add_versions(registry, make_file, 3)
    first = registry.disk_usage().to_dict()
    assert first["models"][0]["logical"] == sum(len(f"weights {i}") for i in range(3))

    def no_manifest_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("du read a manifest object instead of the metadata index")

    monkeypatch.setattr(ObjectStore, "read_bytes", no_manifest_read)  # with the index filled, du reads no object
    monkeypatch.setattr(Manifest, "decode", staticmethod(no_manifest_read))
    assert Registry.open(registry.root).disk_usage().to_dict() == first


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
        connection.execute("UPDATE manifests SET row = x'c1', seal = 'x'")
    connection.close()
    assert Registry.open(registry.root).disk_usage().to_dict() == expected


def test_fsck_reports_a_plain_column_that_disagrees_and_queries_recheck_what_it_chooses(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 4)
    expected = [v.version for v in registry.query(name="demo", metrics=["acc>=0.5"])]
    digest = registry.resolve("demo@1.0.0")  # acc 0.0: a column claiming 0.9 must not make it match
    with sqlite3.connect(registry.root / INDEX_FILE) as connection:
        connection.execute("UPDATE manifests SET metrics = '{\"acc\": 0.9}', family = 'x' WHERE digest = ?", (digest,))
    connection.close()
    fresh = Registry.open(registry.root)
    assert [v.version for v in fresh.query(name="demo", metrics=["acc>=0.5"])] == expected
    assert [v.version for v in fresh.query(name="demo", sort="acc", limit=2)] == ["1.0.3", "1.0.2"]
    assert [p for p in fresh.fsck().problems if digest in p]


def test_sorted_and_filtered_queries_agree_with_the_full_match(registry: Registry, make_file) -> None:
    _add_versions(registry, make_file, 6)
    registry.note("demo@1.0.0", metrics={"acc": 0.95})  # a noted value wins over the registered one
    registry.note("demo@1.0.5", metrics={"acc": 0.05})
    registry.tag("demo@1.0.2", "production")
    shape = lambda views: [(v.version, v.tags, dict(v.all_metrics)) for v in views]  # noqa: E731
    for options in ({"metrics": ["acc>=0.5"]}, {"sort": "acc", "limit": 3}, {"sort": "acc", "reverse": True}, {"family": None}):
        fast = shape(Registry.open(registry.root).query(name="demo", **options))
        registry.store.index.close()
        (registry.root / INDEX_FILE).unlink()
        assert shape(Registry.open(registry.root).query(name="demo", **options)) == fast, options
    assert [v.version for v in registry.query(name="demo", sort="acc", limit=2)] == ["1.0.0", "1.0.4"]
    assert [v.version for v in registry.query(name="demo", metrics=["acc<0.1"])] == ["1.0.5"]


def test_ls_and_log_read_in_batches_and_skip_what_is_gone(registry: Registry, make_file) -> None:
    registry.add("base@1.0.0", [make_file("b.bin", "base")])
    registry.add("child@1.0.0", [make_file("c.bin", "child")], parents=["base@1.0.0"])
    registry.add("other@1.0.0", [make_file("o.bin", "other")], family="f")
    parent = registry.resolve("base@1.0.0")
    result = run_cli("log", "child", registry=registry)
    assert f"parent: base@1.0.0 ({parent[:15]})" in result.stdout
    registry.objects.delete(registry.resolve("other@1.0.0"))  # a missing manifest: fsck reports it, ls goes on
    models = {m.name: m for m in Registry.open(registry.root).models()}
    assert models["other"].family is None and models["child"].latest == "1.0.0"


def test_the_web_reads_an_index_and_never_writes_it(registry: Registry, make_file) -> None:
    from conftest import store_snapshot

    from mreg.web import pages
    from mreg.web.reader import ReadOnlyRegistry

    _add_versions(registry, make_file, 3)
    without = pages.model_page(ReadOnlyRegistry(registry.root), "demo")
    assert not (registry.root / INDEX_FILE).exists()  # the web UI does not create one
    registry.query(name="demo")
    registry.store.index.close()
    before = store_snapshot(registry)
    assert pages.model_page(ReadOnlyRegistry(registry.root), "demo") == without
    assert store_snapshot(registry) == before


def test_an_index_that_fails_mid_query_is_not_trusted(registry: Registry, make_file, monkeypatch) -> None:
    from mreg.storage.index import MetadataIndex

    _add_versions(registry, make_file, 4)
    options = ({"metrics": ["acc>0.3"]}, {"sort": "acc", "limit": 2})
    expected = [[v.version for v in registry.query(name="demo", **o)] for o in options]
    monkeypatch.setattr(MetadataIndex, "rows_where", lambda *args: None)  # as when SQLite fails after `named`
    monkeypatch.setattr(MetadataIndex, "values_where", lambda *args: None)
    assert [[v.version for v in Registry.open(registry.root).query(name="demo", **o)] for o in options] == expected
