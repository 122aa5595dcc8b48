"""PyTorch weights: load speed, chunked storage, and the ten-checkpoint scenario.

- Loading ResNet-18 from the registry vs torch.load of the same weights from a
  plain file (target: ratio <= 1.2), as a state dict and as a ready model.
- Add and load of ResNet-18 stored as tensor chunks vs as one whole file (target:
  load ratio <= 1.1).
- Store size after ten checkpoints in which only the last two layers change, vs the
  sum of the checkpoints' file sizes (target: store <= 1.3x the first checkpoint).
"""

from __future__ import annotations

import torch
from common import best_of, paired, report, scratch

import mreg.formats.cuts
from mreg.pytorch.models import (
    TorchvisionBuilder,
    load_model,
    load_state_dict,
    register,
)
from mreg.registry import Registry

BUILDER = TorchvisionBuilder("resnet18")


def touch(state_dict: dict[str, torch.Tensor]) -> float:
    """Read every byte of every tensor (a mapped file is only read when touched).

    On one thread: with torch's pool of intra-op threads the sums' time on a shared
    machine depends on the neighbours far more than on how the tensors were loaded.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return float(sum(t.float().sum() for t in state_dict.values()))
    finally:
        torch.set_num_threads(threads)


def load_speed(root) -> None:  # type: ignore[no-untyped-def]
    registry = Registry.init(root / "load")
    model = BUILDER.build()
    register(registry, "resnet18@1.0.0", model, builder=BUILDER)
    plain = root / "resnet18.pt"
    torch.save(model.state_dict(), plain)

    ours, base, ratio = paired(lambda: torch.load(plain, weights_only=True), lambda: load_state_dict(registry, "resnet18"), 51)
    report("ResNet-18 state dict: registry vs torch.load", ours, base, "<= 1.2", ratio=ratio)
    ours, base, ratio = paired(
        lambda: touch(torch.load(plain, weights_only=True)), lambda: touch(load_state_dict(registry, "resnet18")), 51
    )
    report("  ... and reading every tensor", ours, base, "<= 1.2", ratio=ratio)

    def plain_model() -> torch.nn.Module:
        built = BUILDER.build()
        built.load_state_dict(torch.load(plain, weights_only=True))
        return built.eval()

    ours, base, ratio = paired(plain_model, lambda: load_model(registry, "resnet18"), 11)
    report("ResNet-18 ready model: load_model vs build + torch.load", ours, base, "<= 1.2", ratio=ratio)


def chunked_vs_whole(root) -> None:  # type: ignore[no-untyped-def]
    model = BUILDER.build()
    registries = {}
    adds = {}
    for label, min_chunk in (("chunked", mreg.formats.cuts.MIN_CHUNK), ("whole", 1 << 62)):
        mreg.formats.cuts.MIN_CHUNK = min_chunk  # a huge minimum: no cuts, one blob

        def add(label: str = label) -> None:
            registry = Registry.init(root / f"{label}-add")
            register(registry, "resnet18@1.0.0", model)
            registry.remove("resnet18@1.0.0")
            registry.gc()

        adds[label] = best_of(add, 5)
        registries[label] = registry = Registry.init(root / label)
        register(registry, "resnet18@1.0.0", model)
        assert registry.objects.is_chunked(registry.file_entry("resnet18").digest) == (label == "chunked")
    mreg.formats.cuts.MIN_CHUNK = 16 << 10
    chunked, whole = registries["chunked"], registries["whole"]
    report("ResNet-18 add: chunked vs whole file", adds["chunked"], adds["whole"], "none")
    ours, base, ratio = paired(lambda: load_state_dict(whole, "resnet18"), lambda: load_state_dict(chunked, "resnet18"), 301)
    report("ResNet-18 load: chunked vs whole file", ours, base, "<= 1.1", ratio=ratio)
    ours, base, ratio = paired(
        lambda: touch(load_state_dict(whole, "resnet18")), lambda: touch(load_state_dict(chunked, "resnet18")), 51
    )
    report("  ... and reading every tensor", ours, base, "<= 1.1", ratio=ratio)


def ten_checkpoints(root, num_classes: int) -> None:  # type: ignore[no-untyped-def]
    registry = Registry.init(root / f"checkpoints-{num_classes}")
    torch.manual_seed(0)
    model = TorchvisionBuilder("resnet18", {"num_classes": num_classes}).build()
    files = 0
    first = 0
    for step in range(10):
        if step:
            with torch.no_grad():  # only the last two layers change
                model.layer4[1].bn2.weight.add_(0.01)
                model.fc.weight.add_(0.01)
        register(registry, f"finetune@0.1.{step}", model)
        files += registry.get(f"finetune@0.1.{step}").files[0].size
        stored = sum(p.stat().st_size for p in registry.objects.objects_dir.rglob("*") if p.is_file())
        first = first or stored
    print(
        f"ten checkpoints, {num_classes}-class head: store {stored / 2**20:.1f} MiB = {stored / first:.2f}x the first "
        f"({first / 2**20:.1f} MiB; target <= 1.3x); the files sum to {files / 2**20:.1f} MiB, {files / stored:.1f}x the store"
    )


def main() -> None:
    with scratch("weights") as root:
        load_speed(root)
        chunked_vs_whole(root)
        ten_checkpoints(root, num_classes=2)
        ten_checkpoints(root, num_classes=1000)


if __name__ == "__main__":
    main()
