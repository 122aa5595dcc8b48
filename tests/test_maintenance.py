"""fsck finds every kind of damage; gc reclaims only what nothing reaches, and waits for writers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import flip_byte, object_file, run_cli, store_snapshot

from mreg.errors import LockTimeoutError
from mreg.registry import Registry


@pytest.fixture
def populated(registry: Registry, make_file) -> Registry:
    """demo@1.0.0 (tagged prod) and demo@2.0.0, plus other/model@0.1.0."""
    registry.add("demo@1.0.0", [make_file("a/w.dat", "one")], tags=["prod"])
    registry.add("demo@2.0.0", [make_file("b/w.dat", "two"), make_file("b/cfg.json", "{}")])
    registry.add("other/model@0.1.0", [make_file("c/w.dat", "three")])
    return registry


def refs_file(registry: Registry, name: str = "demo") -> Path:
    return registry.refs.model_dir(name) / "_refs"


def assert_fsck_fails(registry: Registry, *fragments: str) -> None:
    """Both the API and ``mreg fsck`` report the problem; the CLI exits non-zero."""
    report = registry.fsck()
    assert not report.ok
    text = "\n".join(report.problems)
    for fragment in fragments:
        assert fragment in text, text
    result = run_cli("fsck", registry=registry)
    assert result.exit_code == 1, result
    assert result.stderr.startswith("mreg: error: fsck found") and len(result.stderr.splitlines()) == 1
    for fragment in fragments:
        assert fragment in result.stdout


def test_fsck_clean_on_a_fresh_store(registry: Registry) -> None:
    report = registry.fsck()
    assert report.ok and report.problems == [] and report.notes == []
    assert (report.objects, report.models, report.versions) == (0, 0, 0)
    assert run_cli("fsck", registry=registry).exit_code == 0


def test_fsck_clean_after_adds(populated: Registry) -> None:
    report = populated.fsck()
    assert report.ok, report.problems
    assert (report.objects, report.models, report.versions) == (7, 2, 3)
    result = run_cli("fsck", registry=populated)
    assert result.exit_code == 0 and result.stdout.strip().endswith("ok")


def test_fsck_detects_a_flipped_byte_in_a_blob(populated: Registry) -> None:
    blob = populated.get("demo@1.0.0").files[0].digest
    flip_byte(object_file(populated, blob))
    assert_fsck_fails(populated, f"object {blob} is corrupt")


def test_fsck_detects_a_flipped_byte_in_a_manifest(populated: Registry) -> None:
    digest = populated.resolve("demo@2.0.0")
    flip_byte(object_file(populated, digest), 20)
    assert_fsck_fails(populated, f"object {digest} is corrupt")


def test_fsck_detects_a_ref_to_a_missing_object(populated: Registry) -> None:
    real = populated.resolve("demo@1.0.0")
    made_up = "sha256:" + "e" * 64
    path = refs_file(populated)
    path.write_text(path.read_text().replace(real, made_up))
    assert_fsck_fails(populated, f"demo@1.0.0 -> {made_up}: manifest object is missing")


def test_fsck_detects_a_manifest_whose_blob_is_missing(populated: Registry) -> None:
    blob = populated.get("demo@2.0.0").files[0]
    object_file(populated, blob.digest).unlink()
    assert_fsck_fails(populated, f"file '{blob.path}' ({blob.digest}) is missing")


def test_fsck_detects_a_ref_to_a_blob(populated: Registry) -> None:
    real = populated.resolve("demo@1.0.0")
    blob = populated.get("demo@1.0.0").files[0].digest
    path = refs_file(populated)
    path.write_text(path.read_text().replace(real, blob))
    assert_fsck_fails(populated, f"demo@1.0.0 -> {blob}")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("garbage\n", "missing '# mreg refs 1' header"),
        ("# mreg refs 1\nversion 1.0.0\n", "corrupt at line 2"),
        ("\x00\xff\xfe", "refs of 'demo' are unreadable"),
    ],
)
def test_fsck_detects_a_corrupt_refs_file(populated: Registry, text: str, fragment: str) -> None:
    refs_file(populated).write_bytes(text.encode("latin-1"))
    assert_fsck_fails(populated, fragment)


def test_fsck_detects_wrong_latest(populated: Registry) -> None:
    path = refs_file(populated)
    path.write_text(path.read_text().replace("latest 2.0.0", "latest 1.0.0"))
    assert_fsck_fails(populated, "model 'demo': latest is 1.0.0 but should be 2.0.0")


def test_fsck_detects_a_dangling_tag_and_disorder(populated: Registry) -> None:
    path = refs_file(populated)
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines).replace("tag prod 1.0.0", "tag prod 3.0.0") + "\n")
    assert_fsck_fails(populated, "versions are not in precedence order", "tag prod points at missing version 3.0.0")


def test_fsck_detects_a_stray_file_in_the_object_store(populated: Registry) -> None:
    (populated.root / "objects" / "ab").mkdir(exist_ok=True)
    (populated.root / "objects" / "ab" / "junk").write_text("x")
    assert_fsck_fails(populated, "unexpected file in the object store")


def test_temp_files_and_unreachable_objects_are_notes(populated: Registry) -> None:
    (populated.root / "tmp" / "obj-123-abc.tmp").write_bytes(b"half written")
    populated.remove("other/model@0.1.0")
    report = populated.fsck()
    assert report.ok, report.problems
    assert report.notes == [
        "2 unreachable object(s); 'mreg gc' removes them",
        "1 temporary file(s) from interrupted writes; 'mreg gc' removes them",
    ]
    result = run_cli("fsck", registry=populated)
    assert result.exit_code == 0 and "note: 2 unreachable" in result.stdout


def test_gc_removes_unreachable_objects_and_temp_files(populated: Registry) -> None:
    removed = populated.get("other/model@0.1.0")
    populated.remove("other/model@0.1.0")
    loose = populated.objects.add_bytes(b"loose blob").digest
    temp = populated.root / "tmp" / "obj-1-dead.tmp"
    temp.write_bytes(b"partial")
    keep = {populated.resolve("demo@1.0.0"), populated.resolve("demo@2.0.0")}
    keep |= {f.digest for ref in ("demo@1.0.0", "demo@2.0.0") for f in populated.get(ref).files}
    gone = {removed.digest, removed.files[0].digest, loose}

    size = len(b"three") + len(b"loose blob") + populated.objects.size(removed.digest)
    snapshot = store_snapshot(populated)
    dry = populated.gc(dry_run=True)
    assert set(dry.objects) == gone and dry.temp_files == 1 and dry.dry_run and dry.bytes == size
    assert store_snapshot(populated) == snapshot and temp.exists()

    report = populated.gc()
    assert set(report.objects) == gone and report.temp_files == 1
    assert report.bytes == size
    assert set(populated.objects.iter_digests()) == keep
    assert not temp.exists()
    assert populated.fsck().notes == [] and populated.fsck().ok
    assert populated.path("demo@1.0.0").read_text() == "one"
    assert populated.gc().objects == []


def test_gc_cli_dry_run_removes_nothing(populated: Registry) -> None:
    populated.remove("demo@2.0.0")
    snapshot = store_snapshot(populated)
    result = run_cli("gc", "--dry-run", registry=populated)
    assert result.exit_code == 0 and result.stdout.startswith("would remove 3 unreachable object(s)")
    assert store_snapshot(populated) == snapshot
    result = run_cli("gc", "--json", registry=populated)
    assert result.exit_code == 0 and '"objects": 3' in result.stdout
    assert len(store_snapshot(populated)) == len(snapshot) - 3


def test_gc_refuses_when_a_reachable_manifest_is_unreadable(populated: Registry) -> None:
    object_file(populated, populated.resolve("demo@2.0.0")).unlink()
    before = store_snapshot(populated)
    result = run_cli("gc", registry=populated)
    assert result.exit_code != 0 and result.stderr.startswith("mreg: error:")
    assert store_snapshot(populated) == before


def test_gc_waits_for_a_writer(populated: Registry) -> None:
    populated.remove("other/model@0.1.0")
    holding, released = threading.Event(), threading.Event()

    def writer() -> None:
        with populated.store.writing():
            holding.set()
            time.sleep(0.4)
            released.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    report = populated.gc()
    assert released.is_set(), "gc ran while a writer held the store lock"
    assert len(report.objects) == 2
    thread.join()


def test_gc_times_out_beside_a_long_writer(populated: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    populated.remove("other/model@0.1.0")
    monkeypatch.setenv("MREG_LOCK_TIMEOUT", "0.2")
    before = store_snapshot(populated)
    with populated.store.writing():
        with pytest.raises(LockTimeoutError):
            populated.gc()
        result = run_cli("gc", registry=populated)
        assert result.exit_code == 6 and result.stderr.startswith("mreg: error: timed out")
    assert store_snapshot(populated) == before
    with populated.store.writing(), populated.store.writing():  # writers share the lock
        pass


def test_fsck_names_every_problem_even_with_a_malformed_digest_in_refs(populated: Registry) -> None:
    path = refs_file(populated)
    path.write_text(path.read_text().replace(populated.resolve("demo@1.0.0"), "sha256:1234"))
    blob = populated.get("other/model@0.1.0").files[0].digest
    flip_byte(object_file(populated, blob))
    report = populated.fsck()
    assert "model 'demo': version 1.0.0 points at invalid digest 'sha256:1234'" in report.problems
    assert f"object {blob} is corrupt" in "\n".join(report.problems)
