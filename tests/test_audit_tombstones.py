"""A released version number never names other bytes: locally, and through push, pull,
fallbacks and buckets."""

from __future__ import annotations

from pathlib import Path

import pytest
from bucket_servers import azurite, bucket_server, bucket_url, s3_server  # noqa: F401 - fixtures
from conftest import assert_clean_failure, one_file, run_cli, store_snapshot

from mreg.errors import ConflictError, VersionConflictError
from mreg.registry import Registry


def test_a_removed_version_comes_back_only_with_its_own_bytes(registry: Registry) -> None:
    digest = registry.add("m@1.0.0", one_file(b"released"), message="first").digest
    registry.add("m@1.1.0", one_file(b"next"))
    registry.remove("m@1.0.0")
    assert registry.refs.read("m").removed == {"1.0.0": digest}
    before = store_snapshot(registry)
    result = run_cli("add", "m@1.0.0", "-m", "first", str(_file(registry, b"other bytes")), registry=registry)
    assert_clean_failure(result, 4)
    assert "was removed while it named" in result.stderr and "never names other bytes" in result.stderr
    assert {k: v for k, v in store_snapshot(registry).items() if "objects" not in k} == {k: v for k, v in before.items() if "objects" not in k}
    with pytest.raises(VersionConflictError, match="different metadata"):
        registry.add("m@1.0.0", one_file(b"released"), message="another message")
    restored = registry.add("m@1.0.0", one_file(b"released"), message="first")  # the very same content: a restore
    assert restored.digest == digest and restored.created
    assert registry.resolve("m@1.0.0") == digest and registry.fsck().ok
    changes = [(e.ref, e.old, e.new) for e in reversed(registry.log("m")) if e.ref.endswith("/1.0.0")]
    assert changes == [("versions/1.0.0", None, digest), ("versions/1.0.0", digest, None), ("versions/1.0.0", None, digest)]


def _file(registry: Registry, data: bytes) -> Path:
    path = registry.root.parent / "input.bin"
    path.write_bytes(data)
    return path


def test_a_collected_manifest_cannot_be_restored(registry: Registry) -> None:
    registry.add("m@1.0.0", one_file(b"released"))
    registry.add("m@1.1.0", one_file(b"next"))
    registry.remove("m@1.0.0")
    registry.gc()
    with pytest.raises(VersionConflictError, match="old manifest collected"):
        registry.add("m@1.0.0", one_file(b"released"))


def test_bump_and_build_metadata_never_reuse_a_removed_number(registry: Registry) -> None:
    registry.add("m@1.0.0", one_file(b"a"))
    registry.add("m@1.1.0+build.1", one_file(b"b"))
    registry.remove("m@1.1.0+build.1")
    assert registry.add("m", one_file(b"c"), bump="minor").version == "1.2.0"
    with pytest.raises(ConflictError, match="precedence of the removed m@1.1.0"):
        registry.add("m@1.1.0+build.2", one_file(b"d"))


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_transfer_refuses_a_version_the_other_side_removed_with_other_bytes(tmp_path: Path, direction: str) -> None:
    here, there = Registry.init(tmp_path / "here"), Registry.init(tmp_path / "there")
    there.add("m@1.0.0", one_file(b"released there"))
    there.add("m@0.9.0", one_file(b"older"))
    there.remove("m@1.0.0")
    here.add("m@1.0.0", one_file(b"other bytes here"))
    before = store_snapshot(there), store_snapshot(here)
    args = ("push", str(there.root.parent)) if direction == "push" else ("pull", str(there.root.parent))
    result = run_cli(*args, "--force", registry=here)
    assert_clean_failure(result, 4)
    side = "there" if direction == "push" else "here"
    assert f"m@1.0.0 was removed {side}" in result.stderr or f"removed {'here' if direction == 'push' else 'there'}" in result.stderr
    assert (store_snapshot(there), store_snapshot(here)) == before


def test_tombstones_travel_and_a_pull_cannot_bring_back_other_bytes(tmp_path: Path) -> None:
    origin, copy = Registry.init(tmp_path / "origin"), Registry.init(tmp_path / "copy")
    digest = origin.add("m@1.0.0", one_file(b"one")).digest
    origin.add("m@1.1.0", one_file(b"two"))
    copy.pull(str(origin.root))
    origin.remove("m@1.0.0")
    copy.pull(str(origin.root))
    assert copy.refs.read("m").removed == {"1.0.0": digest}  # the tombstone came along
    assert copy.resolve("m@1.0.0") == digest  # removals do not travel: the copy keeps its version
    assert copy.fsck().ok and origin.fsck().ok


def test_a_fallback_cannot_answer_a_removed_version_with_other_bytes(tmp_path: Path) -> None:
    local, other = Registry.init(tmp_path / "local"), Registry.init(tmp_path / "other")
    local.add("m@1.0.0", one_file(b"ours"))
    local.add("m@0.1.0", one_file(b"keep"))
    local.remove("m@1.0.0")
    other.add("m@1.0.0", one_file(b"theirs"))
    local.set_config("fallback.url", str(other.root.parent))
    result = run_cli("resolve", "m@1.0.0", registry=local)
    assert_clean_failure(result, 7)
    assert "m@1.0.0" in result.stderr and "never reused" in result.stderr


def test_a_bucket_refuses_a_version_it_removed(bucket_url: str, tmp_path: Path) -> None:
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    a.add("m@1.0.0", one_file(b"released"))
    a.add("m@0.1.0", one_file(b"keep"))
    a.remove("m@1.0.0")
    assert run_cli("push", bucket_url, registry=a).exit_code == 0
    b.add("m@1.0.0", one_file(b"reused number"))
    result = run_cli("push", bucket_url, "--force", registry=b)
    assert_clean_failure(result, 4)
    assert "removed there" in result.stderr and "never reused" in result.stderr
    assert run_cli("fsck", bucket_url, registry=a).exit_code == 0
