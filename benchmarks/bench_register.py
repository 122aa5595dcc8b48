"""`mreg.pytorch.register` of a state dict vs `torch.save` (target: <= 3x) and vs the floor (target: <= 1.3x),
and the peak memory of registering and adding a 2 GB model (target: a small multiple of one chunk).

In-process, paired: `torch.save` of the same state dict to a file, the floor
(hashlib SHA-256 of the bytes register stores, then writing them to a file; no
fsync), and register into a fresh store (created untimed). ResNet-18 (45 MB, 62
tensors) is fsync-bound; the large state dict (``MREG_BENCH_REGISTER_SIZE``, default
2 GB of 10 MB tensors) is hash-bound.

Memory: a child process builds the state dict, resets its peak RSS counter
(``/proc/self/clear_refs``), registers, and reports the new peak minus the RSS it
had before: what registering held on top of the tensors themselves. `mreg add` of
the same bytes as a .safetensors file is measured as a whole process (peak RSS).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from common import paired, report, safetensors_file, scratch

from mreg.pytorch.models import TorchvisionBuilder, register
from mreg.pytorch.tensors import safetensors_blocks
from mreg.registry import Registry

SIZE = int(os.environ.get("MREG_BENCH_REGISTER_SIZE", 2 << 30))
PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", 5))
CHUNK = 10 << 20  # the tensors of the large state dict, so its chunks

MEMORY_CHILD = """
import re, sys, torch
from mreg import Registry
from mreg.pytorch import register
def kib(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
state_dict = {f"layer{i}.weight": torch.randn(1024, 2560) for i in range(int(sys.argv[2]))}
registry = Registry.init(sys.argv[1])
open("/proc/self/clear_refs", "w").write("5")
before = kib("VmRSS")
register(registry, "big@1.0.0", state_dict)
print((kib("VmHWM") - before) * 1024)
"""


ADD_CHILD = """
import re, runpy, sys
report = sys.argv.pop(1)
sys.argv[0] = "mreg"
try:
    runpy.run_module("mreg", run_name="__main__")
except SystemExit as exit:
    assert not exit.code
peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
open(report, "w").write(str(peak * 1024))
"""


def floor(state_dict: dict[str, torch.Tensor], destination: Path) -> None:
    """SHA-256 the bytes register would store, once, and write them to a file."""
    hasher = hashlib.sha256()
    with open(destination, "wb") as stream:
        for block in safetensors_blocks(state_dict):
            hasher.update(block)
            stream.write(block)


def timing(root: Path, label: str, state_dict: dict[str, torch.Tensor]) -> None:
    store = root / "store"

    def fresh_store() -> None:
        shutil.rmtree(store, ignore_errors=True)
        Registry.init(store)

    def ours() -> None:
        register(Registry.open(store), "model@1.0.0", state_dict)

    saved = root / "saved.pt"
    fresh_store()
    mine, base, ratio = paired(lambda: torch.save(state_dict, saved), ours, PAIRS, prepare=fresh_store)
    report(f"register {label} vs torch.save", mine, base, "<= 3", ratio=ratio)
    fresh_store()
    mine, base, ratio = paired(lambda: floor(state_dict, saved), ours, PAIRS, prepare=fresh_store)
    report(f"register {label} vs hash once + write", mine, base, "<= 1.3", ratio=ratio)


def memory(root: Path) -> None:
    count = max(1, SIZE // CHUNK)
    held = int(subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(root / "memory"), str(count)], check=True, capture_output=True, text=True
    ).stdout)
    print(f"{'register ' + str(count * CHUNK >> 20) + ' MB: peak RSS above the tensors':<52} {held / 2**20:8.1f} MiB  "
          f"= {held / CHUNK:.1f} chunks of 10 MiB  (target: a small multiple of one chunk)")
    source = safetensors_file(root / "big.safetensors", SIZE)
    Registry.init(root / "add")
    report_file = root / "peak"
    subprocess.run(
        [sys.executable, "-c", ADD_CHILD, str(report_file), "--registry", str(root / "add"), "add", "big@1.0.0", str(source)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    peak = int(report_file.read_text())
    print(f"{'mreg add of a ' + str(source.stat().st_size >> 20) + ' MB .safetensors: peak RSS':<52} "
          f"{peak / 2**20:8.1f} MiB  (the whole process: Python, mreg and its buffers)")


def main() -> None:
    with scratch("register") as root:
        timing(root, "ResNet-18 (45 MB)", TorchvisionBuilder("resnet18").build().state_dict())
        large = {f"layer{i}.weight": torch.randn(1024, 2560) for i in range(max(1, SIZE // CHUNK))}
        timing(root, f"{SIZE >> 20} MB state dict", large)
        del large
        memory(root)


if __name__ == "__main__":
    main()
