"""A shared registry with a planted ``_log``, ``_lock``, ``_refs.tmp`` or model
directory link: local writes refuse it clearly and write nothing where it leads."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli

from mreg import Blob
from mreg.registry import Registry


@pytest.mark.parametrize("planted", ["_log", "_lock", "_refs.tmp", "_notes", "model directory"])
def test_local_writes_never_follow_a_planted_link(registry: Registry, tmp_path: Path, planted: str) -> None:
    registry.add("m@1.0.0", [Blob("w.bin", lambda: [b"one"])])
    registry.add("m@1.1.0", [Blob("w.bin", lambda: [b"two"])])
    model = registry.root / "models" / "m"
    target = tmp_path / "victim"
    target.write_bytes(b"precious\n")
    if planted == "model directory":
        moved = tmp_path / "elsewhere"
        model.rename(moved)
        model.symlink_to(moved)
        target = moved / "_refs"
    else:
        if (model / planted).exists():
            (model / planted).unlink()
        (model / planted).symlink_to(target)
    before = target.read_bytes()
    args = ("note", "m@1.0.0", "-m", "x") if planted == "_notes" else ("tag", "m@1.1.0", "prod")
    result = run_cli(*args, registry=registry)
    assert_clean_failure(result, 5)
    assert "symbolic link" in result.stderr and "refusing" in result.stderr
    assert target.read_bytes() == before
