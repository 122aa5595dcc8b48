"""Helpers for the web UI's tests (no tests here): a registry like example.py's, and a live server.

Random small tensors, written as safetensors without torch, stand in for the pretrained weights,
so it builds in a fraction of a second.
"""

from __future__ import annotations

import json
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mreg.registry import Registry


def safetensors_file(path: Path, seed: int, classes: int = 10, changed: bool = False) -> Path:
    """A tiny 'network' written as safetensors without torch: a backbone of two 32 KiB
    tensors (stored as chunks) and a head; ``changed`` adds 0.5 to one backbone tensor."""
    rng = random.Random(seed)
    shapes = {"backbone.conv.weight": (64, 128), "backbone.bn.weight": (64, 128), "fc.weight": (classes, 128), "fc.bias": (classes,)}
    header, blobs, offset = {}, [], 0
    for name, shape in shapes.items():
        count = shape[0] * (shape[1] if len(shape) > 1 else 1)
        values = [0.0] * count if name == "fc.bias" else [rng.uniform(-1, 1) for _ in range(count)]
        if changed and name == "backbone.bn.weight":
            values = [v + 0.5 for v in values]
        blob = struct.pack(f"<{count}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def build_registry(path: Path) -> Registry:
    """resnet18 1.0.0 (production) and 2.0.0 (a 2-class head), mobilenet_v2, a classifier
    with three versions and two metrics, each with lineage, datasets and metadata, and a
    model with a nested name."""
    registry = Registry.init(path)
    inputs = path / "inputs"

    def add(spec: str, seed: int, *, classes: int = 10, changed: bool = False, properties: dict | None = None, **details: Any) -> None:
        files = [safetensors_file(inputs / spec / "model.safetensors", seed, classes, changed)]
        registry.add(spec, files, framework="pytorch 2.13.0", properties=properties, **details)

    common = {"architecture": "resnet18", "family": "resnet", "input_shape": (1, 3, 224, 224)}
    add("resnet18@1.0.0", 0, classes=1000, message="torchvision resnet18, random weights", **common,
        properties={"pretrained": False, "published_metrics": {"acc@1": 69.758}})
    add("resnet18@2.0.0", 0, classes=2, parents=["resnet18@1.0.0"],
                 metrics={"synthetic_val_acc": 0.94, "train_loss": 0.13},
                 datasets=["synthetic-squares@https://data.example.org/squares"], message="2-class head", **common)
    add("mobilenet_v2@1.0.0", 2, family="mobilenetv2", architecture="mobilenet_v2", message="torchvision mobilenet_v2")
    for index, (auc, loss) in enumerate(((0.81, 0.52), (0.88, 0.31), (0.86, 0.29))):
        add(f"classifier@1.{index}.0", 3, classes=2, changed=index == 2, family="resnet", parents=["resnet18@2.0.0"],
            metrics={"auc": auc, "loss": loss}, message=f"classifier round {index + 1}")
    add("team/vision/detector@0.1.0", 4, family="detector", message="a model with a nested name")
    registry.tag("resnet18@1.0.0", "production")
    registry.tag("classifier@1.1.0", "production")
    registry.tag("classifier@1.2.0", "staging")
    registry.note("classifier@1.1.0", message="Reviewed by the clinical team.", metrics={"test_auc": 0.87})
    registry.note("classifier@1.0.0", deprecated="superseded by 1.1.0")
    return registry


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(path: Path, *extra: str) -> Iterator[str]:
    """Run ``mreg serve`` on the registry at ``path`` in a real subprocess; yield its URL.

    On exit the server is interrupted as a user would (Ctrl-C) and must stop cleanly.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mreg", "serve", "--registry", str(path), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_listening(port, process)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


def _wait_until_listening(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mreg serve exited: {process.communicate()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("mreg serve did not start listening in 30 s")
