"""Several processes pushing to one bucket at once, a push killed midway, and
corrupt local objects: the bucket's guarantees under stress, on every service of
bucket_servers (moto's S3 and Azurite on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bucket_servers import azurite, bucket_server, bucket_url, s3_server  # noqa: F401 - fixtures
from conftest import assert_clean_failure, flip_byte, object_file, run_cli, run_mreg
from test_bucket import add, cli_json, keys, refs_of

from mreg import Blob
from mreg.registry import Registry


def push_all_at_once(registries: list[Registry], url: str, *extra: str) -> list[subprocess.CompletedProcess]:
    """Start ``mreg push`` in every registry together; return their results."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mreg", "--registry", str(r.root), "push", url, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in registries
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_concurrent_pushes_of_different_versions_all_land(bucket_url: str, tmp_path: Path) -> None:
    """Three processes push three versions of one model at once: all succeed, nothing is lost."""
    registries = [Registry.init(tmp_path / f"r{i}") for i in range(3)]
    for i, registry in enumerate(registries):
        add(registry, f"net@1.0.{i}", f"weights {i}".encode() * 1000, message=f"from r{i}")
    results = push_all_at_once(registries, bucket_url)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    clone = Registry.init(tmp_path / "clone")
    cli_json("pull", bucket_url, registry=clone)
    assert sorted(clone.refs.read("net").versions) == ["1.0.0", "1.0.1", "1.0.2"]
    assert clone.refs.read("net").latest == "1.0.2"
    messages = {e.message for e in clone.log("net")}
    assert {"from r0", "from r1", "from r2"} <= messages
    assert sum(1 for e in clone.log("net") if e.ref.startswith("versions/") and "push from" in e.message) == 3
    assert clone.fsck().ok


def test_same_version_or_same_tag_gives_one_winner_and_one_conflict(bucket_url: str, tmp_path: Path) -> None:
    """Same version with other content, or one tag moved by both: exactly one push wins, the other exits 4."""
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    add(a, "net@1.0.0", b"a's weights")
    add(b, "net@1.0.0", b"b's weights")
    results = push_all_at_once([a, b], bucket_url)
    assert sorted(r.returncode for r in results) == [0, 4], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 4)
    assert loser.stderr.startswith("mreg: error: ") and "net@1.0.0" in loser.stderr
    winner = a if results[0].returncode == 0 else b
    clone = Registry.init(tmp_path / "clone")
    cli_json("pull", bucket_url, registry=clone)
    assert refs_of(clone) == refs_of(winner)

    add(winner, "net@1.1.0", b"second")
    cli_json("push", bucket_url, registry=winner)
    c, d = Registry.init(tmp_path / "c"), Registry.init(tmp_path / "d")
    for registry, version in ((c, "1.0.0"), (d, "1.1.0")):
        cli_json("pull", bucket_url, registry=registry)
        registry.tag(f"net@{version}", "prod")
    results = push_all_at_once([c, d], bucket_url)
    assert sorted(r.returncode for r in results) == [0, 4], [r.stderr for r in results]
    tagged = cli_json("pull", bucket_url, registry=Registry.init(tmp_path / "e"))
    assert len([t for t in tagged["tags"] if t.startswith("net@prod")]) == 1


def test_push_killed_midway_then_push_clone_fsck(bucket_url: str, tmp_path: Path) -> None:
    """kill -9 during a push: the bucket has objects but no refs; pushing again finishes; clone is clean."""
    source = Registry.init(tmp_path / "src")
    big = os.urandom(17 << 20)  # above the multipart threshold
    files = [Blob("big.bin", lambda: [big])] + [Blob(f"part{i}.bin", lambda i=i: [os.urandom(256 << 10)]) for i in range(24)]
    source.add("net@1.0.0", files)  # type: ignore[arg-type]
    process = subprocess.Popen([sys.executable, "-m", "mreg", "--registry", str(source.root), "push", bucket_url])
    deadline = time.monotonic() + 60
    while not any(k.startswith("objects/") for k in keys(bucket_url)) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not any(k.startswith("models/") for k in keys(bucket_url)), "the push finished before it was killed"

    again = cli_json("push", bucket_url, registry=source)
    assert again["versions"] == ["net@1.0.0"]
    clone = run_mreg("clone", bucket_url, str(tmp_path / "clone"))
    assert clone.exit_code == 0, clone.stderr
    copy = Registry.open(tmp_path / "clone")
    assert copy.fsck().ok and copy.path("net@1.0.0", "big.bin").read_bytes() == big
    assert cli_json("gc", bucket_url, "--grace", "0", registry=source)["objects"] == 0


@pytest.mark.parametrize("size", [1000, 17 << 20], ids=["small", "multipart"])
def test_a_corrupt_local_object_is_never_uploaded(size: int, bucket_url: str, tmp_path: Path) -> None:
    """Bytes are verified as they are read for upload: a bad one stops the push (exit 5), its key stays absent."""
    source = Registry.init(tmp_path / "src")
    digest = add(source, "net@1.0.0", os.urandom(size))
    blob = source.file_entry("net@1.0.0").digest
    flip_byte(object_file(source, blob), size // 2)
    result = run_cli("push", bucket_url, registry=source)
    assert_clean_failure(result, 5)
    stored = keys(bucket_url)
    assert f"objects/{blob[7:9]}/{blob[9:]}" not in stored
    assert f"objects/{digest[7:9]}/{digest[9:]}" not in stored and not any(k.startswith("models/") for k in stored)


def test_the_service_enforces_create_only_and_compare_and_swap(bucket_url: str) -> None:
    """What the refs and objects rest on, as the server enforces it, with eight writers at once
    each time: one create-only write of a key wins (If-None-Match), one swap from a version wins
    (If-Match), a stale version or a create over an existing key loses and changes nothing."""
    from concurrent.futures import ThreadPoolExecutor

    from mreg.sharing.buckets.client import Bucket

    bucket = Bucket.open(bucket_url, None, 10, check=False)
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: bucket.create("k", b"create %d" % i), range(8)))
        assert created.count(True) == 1
        first = bucket.get("k", 100)
        assert first is not None and first[0] == b"create %d" % created.index(True)
        swapped = list(pool.map(lambda i: bucket.swap("k", b"swap %d" % i, first[1]), range(8)))
    assert swapped.count(True) == 1
    second = bucket.get("k", 100)
    assert second is not None and second[0] == b"swap %d" % swapped.index(True) and second[1] != first[1]
    assert not bucket.swap("k", b"stale", first[1]) and not bucket.swap("k", b"absent?", None)
    assert bucket.get("k", 100) == second
    assert bucket.swap("k", b"current", second[1]) and bucket.get("k", 100)[0] == b"current"  # type: ignore[index]
