"""A medical-imaging walk through mreg: a MONAI bundle, registered, exported, reloaded.

Run it from the repository root after `pip install -r requirements.txt` (which must
list `monai`):

    python drafts/example_medical.py

It trains a tiny 2-D UNet on synthetic images it makes itself (no patient data, no
download), writes it as a MONAI bundle with MONAI's own `init_bundle`, registers the
bundle with its model card, exports it, and loads the export with MONAI's
ConfigParser unchanged. It works on the registry `.mreg/` in the current directory
and can be run again: registering identical content again is a no-op. Each step
names the `mreg` command that does the same from the shell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mreg import Registry, VersionConflictError
from mreg.formats.bundle_config import read_config_file
from mreg.formats.monai_bundle import read_bundle
from mreg.pytorch import load_model
from mreg.pytorch.bundle import build_network, network_builder
from mreg.formats.bundle_card import card_from_bundle
from mreg.records.card import ModelCard
from mreg.records.manifest import Dataset

SPEC = "chest-seg@1.0.0"
CARD_KEY = "model_card"  # where this draft keeps the card; the lead decides its final place
EXPORT_DIR = Path("example-export/chest-seg")
NETWORK_DEF: dict[str, Any] = {
    "_target_": "UNet",  # monai.networks.nets.UNet, found by MONAI's short name
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 2,
    "channels": [8, 16, 32],
    "strides": [2, 2],
    "num_res_units": 1,
}
SIZE = 64  # the synthetic radiographs are 64x64


def main() -> None:
    started = time.perf_counter()
    torch.set_num_threads(1)  # bit-identical training on every run, so re-runs are no-ops
    registry = Registry.init(".")
    print(f"mreg medical example: registry at {registry.root}")

    step("1. Train a small 2-D UNet to segment the lungs on synthetic chest radiographs", "your training script")
    print("   NOTE: the images are synthetic (two bright ellipses on noise) made by this script;")
    print("   no patient data is used and the scores below say nothing about clinical performance")
    network, metrics, subgroups, digests = train()

    step("2. Write it as a MONAI bundle", "python -m monai.bundle init_bundle DIR")
    with tempfile.TemporaryDirectory() as scratch:
        bundle = write_bundle(Path(scratch) / "chest_seg", network, metrics)
        info = read_bundle(bundle)  # checked as MONAI's metadata schema would, offline, without MONAI
        print(f"   {bundle.name}: version {info.version}, {info.framework}, input {list(info.input_shape or [])}, "
              f"eval_metrics {dict(info.metrics)}")
        card = dataclasses.replace(
            card_from_bundle(info),  # intended use, modality, input contract, data source, eval_metrics
            training_data=(Dataset("synthetic-chest-train-64", digests["train"]),),
            evaluation_data=(Dataset("synthetic-chest-val-32", digests["val"]),),
            subgroup_performance=subgroups,
            limitations="Trained and evaluated on synthetic images only; never use it on patients.",
        )

        step("3. Register the bundle with its model card", f"mreg add {SPEC} BUNDLE_DIR")
        # Once `add` recognises bundles, `registry.add(SPEC, [bundle])` alone lifts all of this.
        try:
            result = registry.add(
                SPEC,
                [bundle],
                family="unet",
                framework=info.framework,
                architecture="monai.networks.nets.UNet",
                input_shape=info.input_shape,
                metrics=info.metrics,
                properties={**info.properties(), CARD_KEY: card.to_dict()},
                message=info.message,
            )
            state = "added" if result.created else "already registered, identical: no-op"
            print(f"   {SPEC:<18} {result.digest[:15]}  {state}")
        except VersionConflictError:
            print(f"   {SPEC} already holds other content; keeping it (versions are immutable)")

    step("4. The model card, as `mreg show` would print it", f"mreg show {SPEC}")
    view = registry.get(SPEC)
    print("   files: " + ", ".join(f.path for f in view.files))
    for line in ModelCard.from_dict(view.properties[CARD_KEY]).lines():
        print(f"   {line}")

    step("5. Export the version: the bundle directory again, byte for byte", f"mreg export {SPEC} {EXPORT_DIR}")
    exported = subprocess.run([sys.executable, "-m", "mreg", "export", SPEC, str(EXPORT_DIR)],
                              check=True, capture_output=True, text=True)
    print("\n".join(f"   {line}" for line in exported.stdout.strip().splitlines()[-2:]))

    step("6. MONAI loads the exported bundle unchanged, with the registered weights",
         "python: monai.bundle.ConfigParser + torch.load(models/model.pt)")
    image = synthetic_batch(1, seed=99)[0][0]  # one 1x64x64 radiograph
    expected = predict(network, image)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(str(EXPORT_DIR / "configs/metadata.json"))
    parser.read_config(str(EXPORT_DIR / "configs/inference.json"))
    monai_network = parser.get_parsed_content("network_def")
    monai_network.load_state_dict(torch.load(EXPORT_DIR / "models/model.pt", weights_only=True))
    print(f"   MONAI built {type(monai_network).__name__} (bundle {parser['_meta_#version']}); "
          f"same prediction as the trained network: {torch.equal(predict(monai_network, image), expected)}")

    step("7. mreg loads it too, building network_def without running the config",
         "python: mreg.pytorch.load_model(registry, REF, builder=network_builder(config))")
    config = read_config_file(registry.path(SPEC, "configs/inference.json"), "configs/inference.json")
    loaded = load_model(registry, SPEC, builder=network_builder(config))
    print(f"   load_model: {type(loaded).__name__}, same prediction: {torch.equal(predict(loaded, image), expected)}")
    hostile = {"network_def": {"_target_": "os.system", "command": "echo this never runs"}}
    try:
        build_network(hostile)
    except ValueError as refused:  # mreg.InvalidInputError
        print(f"   a config whose network_def is os.system is refused: {refused}")
    print(f"\ndone in {time.perf_counter() - started:.1f}s")


def step(title: str, command: str) -> None:
    print(f"\n{title}\n   (shell: {command})")


def synthetic_batch(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noisy 'radiographs' with two bright ellipses ('lungs') of random size, their masks, and the sizes."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    scale = 0.18 + 0.14 * torch.rand(count, 1, 1, generator=generator)  # lung size
    masks = torch.zeros(count, SIZE, SIZE)
    for centre in (-0.4, 0.4):
        masks += (((x - centre) / scale) ** 2 + (y / (1.8 * scale)) ** 2 <= 1).float()
    images = 0.6 * masks + 0.3 * torch.rand(count, SIZE, SIZE, generator=generator)
    return images.unsqueeze(1), masks.clamp(max=1).long(), scale.flatten()


def dice(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Dice of the lung class."""
    overlap = (prediction * target).sum((1, 2)).float()
    return 2 * overlap / (prediction.sum((1, 2)) + target.sum((1, 2))).clamp(min=1)


def train() -> tuple[torch.nn.Module, dict[str, float], dict[str, dict[str, float]], dict[str, str]]:
    """A few steps of Adam on 64 synthetic images; Dice on 32 held out, overall and by lung size."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    network = UNet(**{key: value for key, value in NETWORK_DEF.items() if key != "_target_"})
    train_x, train_y, _ = synthetic_batch(64, seed=1)
    val_x, val_y, val_scale = synthetic_batch(32, seed=2)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    steps = 40
    for index in range(steps):
        batch = slice(index % 8 * 8, index % 8 * 8 + 8)
        loss = loss_function(network(train_x[batch]), train_y[batch].unsqueeze(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    with torch.no_grad():
        scores = dice(network(val_x).argmax(1), val_y)
    small = val_scale < val_scale.median()
    metrics = {"mean_dice": round(scores.mean().item(), 4)}
    subgroups = {
        "small_lungs": {"mean_dice": round(scores[small].mean().item(), 4)},
        "large_lungs": {"mean_dice": round(scores[~small].mean().item(), 4)},
    }
    print(f"   {steps} steps of 8 images: loss {loss.item():.3f}; Dice on 32 held-out synthetic images "
          f"{metrics['mean_dice']:.3f} (small lungs {subgroups['small_lungs']['mean_dice']:.3f}, "
          f"large {subgroups['large_lungs']['mean_dice']:.3f})")
    digests = {name: "sha256:" + hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
               for name, (x, y) in {"train": (train_x, train_y), "val": (val_x, val_y)}.items()}
    return network, metrics, subgroups, digests


def write_bundle(directory: Path, network: torch.nn.Module, metrics: dict[str, float]) -> Path:
    """A bundle made by MONAI's init_bundle: metadata, inference config, weights, docs, LICENSE."""
    from monai.bundle import init_bundle
    from monai.bundle.utils import DEFAULT_INFERENCE, DEFAULT_METADATA

    image = {"type": "image", "format": "magnitude", "modality": "DX", "num_channels": 1,
             "spatial_shape": [SIZE, SIZE], "dtype": "float32", "value_range": [0, 1],
             "is_patch_data": False, "channel_def": {"0": "radiograph"}}
    metadata = {
        **DEFAULT_METADATA,
        "version": "1.0.0",
        "changelog": {"1.0.0": "first version, trained on synthetic radiographs"},
        "task": "Lung segmentation in 2-D chest radiographs",
        "description": "A small 2-D UNet that segments both lungs; a demonstration trained on synthetic images.",
        "authors": "mreg example",
        "copyright": "Copyright (c) mreg example",
        "intended_use": "Demonstration of mreg only; not for any clinical use.",
        "data_source": "synthetic radiographs generated by drafts/example_medical.py",
        "data_type": "tensor",
        "image_classes": "single channel radiograph, intensities in [0, 1]",
        "pred_classes": "2 channels: background, lung",
        "eval_metrics": metrics,
        "network_data_format": {
            "inputs": {"image": image},
            "outputs": {"pred": {**image, "format": "labels", "num_channels": 2,
                                 "channel_def": {"0": "background", "1": "lung"}}},
        },
    }
    inference = {**DEFAULT_INFERENCE, "network_def": NETWORK_DEF}  # MONAI's template pipeline, our network
    init_bundle(directory, network=network, metadata_str=json.dumps(metadata, indent=4),
                inference_str=json.dumps(inference, indent=4))
    return directory


def predict(network: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network.eval()(image.unsqueeze(0)).argmax(1)


if __name__ == "__main__":
    main()
