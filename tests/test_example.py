"""example.py runs to completion offline, and a second run is harmless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "example.py"


def run_example(cwd: Path, torch_home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TORCH_HOME": str(torch_home),  # an empty hub cache: nothing pretrained on disk
        "https_proxy": "http://127.0.0.1:9",  # no route to the download host, refused at once
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "MREG_AUTHOR": "example-test",
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_example_runs_offline_twice(tmp_path: Path) -> None:
    first = run_example(tmp_path, tmp_path / "torch-home")
    assert first.returncode == 0, first.stderr
    assert "recorded as pretrained: false" in first.stdout
    assert "resnet18@2.0.0" in first.stdout and "added" in first.stdout
    assert "versions: ok" in first.stdout
    assert "chest-seg@1.0.0" in first.stdout and "same output as the trained network: True" in first.stdout  # MONAI's loader
    assert "load_model(chest-seg@1.0.0): UNet, same output: True" in first.stdout

    second = run_example(tmp_path, tmp_path / "torch-home")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already registered, identical: no-op") == 3
    assert "chest-seg@1.0.0" in second.stdout and "unchanged since the last run (same bytes): no-op" in second.stdout
    assert "versions: ok" in second.stdout
