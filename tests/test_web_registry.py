"""A small registry shaped like the one example.py makes, for the web UI's tests (no tests here).

Random small tensors stand in for the pretrained weights, so it builds in well under a second.
"""

from __future__ import annotations

from pathlib import Path

from mreg import Registry


def state_dict(seed: int, classes: int = 10, changed: bool = False) -> dict:
    """A tiny 'network': a backbone of two 32 KiB tensors (stored as chunks) and a head."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tensors = {
        "backbone.conv.weight": torch.randn(64, 128, generator=generator),
        "backbone.bn.weight": torch.randn(64, 128, generator=generator),
        "fc.weight": torch.randn(classes, 128, generator=generator),
        "fc.bias": torch.zeros(classes),
    }
    if changed:
        tensors["backbone.bn.weight"] = tensors["backbone.bn.weight"] + 0.5
    return tensors


def build_registry(path: Path) -> Registry:
    """resnet18 1.0.0 (production) and 2.0.0 (a 2-class head), mobilenet_v2, and a classifier
    with three versions and two metrics, each with lineage, datasets and metadata."""
    from mreg.pytorch import register

    registry = Registry.init(path)
    base = state_dict(0, classes=1000)
    common = {"architecture": "resnet18", "family": "resnet", "input_shape": (1, 3, 224, 224)}
    register(registry, "resnet18@1.0.0", base, message="torchvision resnet18, random weights", **common,
             properties={"pretrained": False, "published_metrics": {"acc@1": 69.758}})
    head = {**base, "fc.weight": state_dict(1, classes=2)["fc.weight"], "fc.bias": state_dict(1, classes=2)["fc.bias"]}
    register(registry, "resnet18@2.0.0", head, parents=["resnet18@1.0.0"], metrics={"synthetic_val_acc": 0.94, "train_loss": 0.13},
             datasets=["synthetic-squares@https://data.example.org/squares"], message="2-class head", **common)
    register(registry, "mobilenet_v2@1.0.0", state_dict(2), family="mobilenetv2", architecture="mobilenet_v2",
             message="torchvision mobilenet_v2")
    for index, (auc, loss) in enumerate(((0.81, 0.52), (0.88, 0.31), (0.86, 0.29))):
        register(registry, f"classifier@1.{index}.0", state_dict(3, classes=2, changed=index == 2), family="resnet",
                 parents=["resnet18@2.0.0"], metrics={"auc": auc, "loss": loss}, message=f"classifier round {index + 1}")
    registry.tag("resnet18@1.0.0", "production")
    registry.tag("classifier@1.1.0", "production")
    registry.tag("classifier@1.2.0", "staging")
    return registry
