"""kill -9 in the middle of an add leaves a store that fsck calls clean, with no partial object."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import assert_clean_failure, object_file, run_cli, run_mreg

from mreg.registry import Registry

SIZE = 512 << 20
# sha256 of 512 MiB of zero bytes (checked against mreg's own answer at the end of the test).
ZEROS_DIGEST = "sha256:9acca8e8c22201155389f65abbf6bc9723edc7384ead80503839f49dcc56d767"


def wait_for_growing_temp_file(registry: Registry, process: subprocess.Popen, minimum: int = 8 << 20) -> Path:
    """Poll ``.mreg/tmp`` until a temporary object has at least ``minimum`` bytes."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the add finished before it could be killed"
        for temp in (registry.root / "tmp").iterdir():
            try:
                if temp.stat().st_size >= minimum:
                    return temp
            except FileNotFoundError:
                continue
        time.sleep(0.005)
    raise AssertionError("no temporary file appeared")


def test_kill_during_add_leaves_a_clean_store(registry: Registry, tmp_path: Path) -> None:
    big = tmp_path / "big.dat"
    with open(big, "wb") as stream:
        stream.truncate(SIZE)  # sparse: reading is fast, hashing and writing take a moment
    process = subprocess.Popen(
        [sys.executable, "-m", "mreg", "add", "big@1.0.0", str(big)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        temp = wait_for_growing_temp_file(registry, process)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert temp.exists() and temp.stat().st_size < SIZE

    fsck = run_cli("fsck")
    assert fsck.exit_code == 0, fsck
    assert "note: 1 temporary file(s)" in fsck.stdout
    assert_clean_failure(run_cli("resolve", "big@1.0.0"), code=3)
    assert_clean_failure(run_cli("show", "big"), code=3)
    partial = object_file(registry, ZEROS_DIGEST)
    if partial.exists():  # only acceptable if complete and correct
        assert partial.stat().st_size == SIZE
        assert registry.objects.verify(ZEROS_DIGEST) is None
    assert all(registry.objects.verify(d) is None for d in registry.objects.iter_digests())

    again = run_mreg("add", "big@1.0.0", str(big), cwd=tmp_path)
    assert again.exit_code == 0, again.stderr
    assert registry.get("big@1.0.0").files[0].digest == ZEROS_DIGEST
    assert registry.objects.size(ZEROS_DIGEST) == SIZE
    report = registry.fsck()
    assert report.ok, report.problems
    gc = run_cli("gc")
    assert gc.exit_code == 0 and "and 1 temporary file(s)" in gc.stdout
    assert list((registry.root / "tmp").iterdir()) == []
    assert run_cli("fsck").exit_code == 0


def test_zeros_digest_constant() -> None:
    digest = hashlib.sha256()
    block = bytes(16 << 20)
    for _ in range(SIZE // len(block)):
        digest.update(block)
    assert "sha256:" + digest.hexdigest() == ZEROS_DIGEST
