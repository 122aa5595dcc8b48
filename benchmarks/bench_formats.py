"""`.pt` checkpoints: adding them without torch, and loading them back.

- `mreg add` of ResNet-18 as `.pt` vs the same weights as `.safetensors`, whole
  process, paired runs (target: ratio <= 1.3; the `.pt` add must not import torch).
- Loading a checkpoint registered as `.pt` vs `torch.load(weights_only=True)` of the
  original file, at ResNet-18 size (45 MB) and at 2 GB (target: ratio <= 1.0), each
  also with every tensor read once (a mapped file is read only when touched), and
  against `torch.load(mmap=True)`, which like mreg reads no tensor until touched.
- The same `.pt` stored as chunks vs as one whole blob (target: load ratio <= 1.1).

Weights are random (there is no network here). Set MREG_BENCH_BIG=0 to skip 2 GB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import torch
from bench_weights import touch
from common import compile_package, paired, report, scratch
from common import mreg as run_mreg

import mreg.formats.cuts
from mreg.pytorch.models import TorchvisionBuilder, load_state_dict
from mreg.registry import Registry

BIG = int(os.environ.get("MREG_BENCH_BIG", 2 << 30))
PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", 11))


def resnet18() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return TorchvisionBuilder("resnet18").build().state_dict()


def add_pt_vs_safetensors(root) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    state = resnet18()
    pt, st = root / "resnet18.pt", root / "resnet18.safetensors"
    torch.save(state, pt)
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    stores = {label: root / f"store-{label}" for label in ("pt", "st")}

    def fresh() -> None:
        for store in stores.values():
            shutil.rmtree(store, ignore_errors=True)
            run_mreg("init", str(store), cwd=root)

    fresh()
    ours, base, ratio = paired(
        lambda: run_mreg("--registry", str(stores["st"]), "add", "r@1.0.0", str(st), cwd=root),
        lambda: run_mreg("--registry", str(stores["pt"]), "add", "r@1.0.0", str(pt), cwd=root),
        PAIRS,
        prepare=fresh,
    )
    report("mreg add ResNet-18: .pt vs .safetensors", ours, base, "<= 1.3", ratio=ratio)
    fresh()
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mreg", "--registry", str(stores["pt"]), "add", "r@1.0.0", str(pt)],
        capture_output=True, text=True, check=True, cwd=root,
    )  # fmt: skip
    torch_imported = any(line.rsplit("|", 1)[-1].strip() == "torch" for line in trace.stderr.splitlines())
    print(f"{'  ... python -X importtime shows torch imported':<52} {'yes (FAIL)' if torch_imported else 'no'}")


def load_pt(root, state: dict[str, torch.Tensor], label: str, pairs: int) -> None:  # type: ignore[no-untyped-def]
    path = root / f"{label}.pt"
    torch.save(state, path)
    registry = Registry.init(root / f"load-{label}")
    registry.add("m@1.0.0", [path])
    ours, base, ratio = paired(lambda: torch.load(path, weights_only=True), lambda: load_state_dict(registry, "m"), pairs)
    report(f".pt {label}: load_state_dict vs torch.load", ours, base, "<= 1.0", ratio=ratio)
    ours, base, ratio = paired(
        lambda: torch.load(path, weights_only=True, mmap=True), lambda: load_state_dict(registry, "m"), pairs
    )
    report("  ... vs torch.load(mmap=True): neither reads", ours, base, "none", ratio=ratio)
    ours, base, ratio = paired(
        lambda: touch(torch.load(path, weights_only=True)), lambda: touch(load_state_dict(registry, "m")), max(3, pairs // 4)
    )
    report("  ... and reading every tensor", ours, base, "<= 1.0", ratio=ratio)


def chunked_vs_whole(root) -> None:  # type: ignore[no-untyped-def]
    path = root / "chunks.pt"
    torch.save(resnet18(), path)
    registries = {}
    for label, min_chunk in (("chunked", mreg.formats.cuts.MIN_CHUNK), ("whole", 1 << 62)):
        saved, mreg.formats.cuts.MIN_CHUNK = mreg.formats.cuts.MIN_CHUNK, min_chunk
        registries[label] = registry = Registry.init(root / f"pt-{label}")
        registry.add("m@1.0.0", [path])
        mreg.formats.cuts.MIN_CHUNK = saved
        assert registry.objects.is_chunked(registry.file_entry("m").digest) == (label == "chunked")
    chunked, whole = registries["chunked"], registries["whole"]
    ours, base, ratio = paired(lambda: load_state_dict(whole, "m"), lambda: load_state_dict(chunked, "m"), 101)
    report(".pt ResNet-18 load: chunked vs whole file", ours, base, "<= 1.1", ratio=ratio)
    ours, base, ratio = paired(lambda: touch(load_state_dict(whole, "m")), lambda: touch(load_state_dict(chunked, "m")), 21)
    report("  ... and reading every tensor", ours, base, "<= 1.1", ratio=ratio)


def big_state(size: int) -> dict[str, torch.Tensor]:
    """``size`` bytes of float32 in 64 MiB tensors (a large language model's shape)."""
    generator = torch.Generator().manual_seed(0)
    count = max(1, size // (64 << 20))
    return {f"layer{i}.weight": torch.randn(4096, 4096, generator=generator) for i in range(count)}


def main() -> None:
    compile_package()
    with scratch("formats") as root:
        add_pt_vs_safetensors(root)
        load_pt(root, resnet18(), "ResNet-18 (45 MB)", 31)
        chunked_vs_whole(root)
        if BIG:
            load_pt(root, big_state(BIG), f"{BIG >> 20} MiB", 5)


if __name__ == "__main__":
    main()
