"""A walk through mreg: register, look up, list, load and verify PyTorch models,
and a medical-imaging model packaged as a MONAI bundle, with its model card.

Run it from the repository root after `pip install -r requirements.txt`:

    python example.py

It works on the registry `.mreg/` in the current directory (created if missing) and
can be run again: registering identical content again is a no-op. Each step names
the `mreg` command that does the same from the shell. Every image it trains on is
synthetic, made by this script: no patient data, no download.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch

from mreg.errors import InvalidInputError, NotFoundError, VersionConflictError
from mreg.pytorch import diff
from mreg.pytorch.bundle import build_network
from mreg.pytorch.models import TorchvisionBuilder, load_model, register
from mreg.pytorch.pretrained import PretrainedModel, fetch_pretrained
from mreg.records.card import ModelCard
from mreg.records.manifest import Dataset
from mreg.registry import Registry

PRETRAINED = ("resnet18", "mobilenet_v2")  # 44.7 MiB + 13.6 MiB of weights
DERIVED_VERSION = "2.0.0"  # a new head changes the output: a major version in SemVer terms
LAPTOP = "example-laptop"  # a second registry beside this one, for the fallback demo
MEDICAL = "chest-seg"  # the MONAI bundle; its version, 1.0.0, comes from the bundle's metadata
EXPORT_DIR = Path("example-export") / MEDICAL
SIZE = 64  # the synthetic radiographs are 64x64
NETWORK_DEF: dict[str, Any] = {  # the bundle's network_def: monai.networks.nets.UNet, by MONAI's short name
    "_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2,
    "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1,
}  # fmt: skip


def main() -> None:
    started = time.perf_counter()
    torch.set_num_threads(1)  # bit-identical training on every run, so re-runs are no-ops
    registry = Registry.init(".")
    print(f"mreg example: registry at {registry.root}")

    step("1. Register two pretrained open-source vision models", "mreg add NAME@VERSION FILE --family ... --metric ...")
    fetched = {name: fetch(name) for name in PRETRAINED}
    for name, model in fetched.items():
        weights = model.properties["torchvision_weights"] if model.pretrained else "random weights (offline fallback)"
        add(registry, f"{name}@1.0.0", model, message=f"torchvision {name}, {weights}")

    step("2. Derive a second version: resnet18 with a 2-class head", "mreg add resnet18@2.0.0 ... --parent resnet18@1.0.0")
    derived, metrics = train_two_class_head(fetched["resnet18"].model)
    add_derived(registry, derived, metrics)

    step("3. Tag a version as production", "mreg tag resnet18@1.0.0 production")
    change = registry.tag("resnet18@1.0.0", "production")
    print(f"   {change.name}@{change.tag} -> {change.new}" + (f" (was {change.old})" if change.old else ""))

    step("4. List models and versions", "mreg ls; mreg ls resnet18")
    for model in registry.models():
        tags = ", ".join(f"{t}={v}" for t, v in sorted(model.tags.items())) or "-"
        print(f"   {model.name:<14} latest {model.latest:<7} {model.versions} version(s)  family {model.family}  tags {tags}")
    for entry in registry.versions("resnet18"):
        print(f"   resnet18@{entry.version:<7} {entry.digest[:15]}  {', '.join(entry.tags)}")

    step("5. Look up by latest, by version, by tag and by digest", "mreg resolve REF; mreg show REF")
    digest = registry.resolve("resnet18@1.0.0")
    for ref in ("resnet18@latest", "resnet18@1.0.0", "resnet18@production", digest[:15]):
        view = registry.get(ref)
        print(f"   {ref:<20} -> {view.name}@{view.version}  {view.digest[:15]}  metrics {dict(view.metrics)}")
    print(f"   weights file on disk: {registry.path('resnet18@production')}")

    step("6. Query the registry: a family, a metric threshold", "mreg ls --family resnet --metric 'synthetic_val_acc>=0.9'")
    for view in registry.query(family="resnet"):
        print(f"   family resnet: {view.name}@{view.version}")
    for view in registry.query(metrics=["synthetic_val_acc>=0.9"]):
        print(f"   synthetic_val_acc >= 0.9: {view.name}@{view.version} ({view.metrics['synthetic_val_acc']:.2f})")

    step("7. Load models back and run inference", "python: mreg.pytorch.load_model(registry, REF)")
    run_inference(registry, fetched["resnet18"])

    step("8. Lineage: where resnet18@latest came from, and the model's log", "mreg log resnet18")
    latest = registry.get("resnet18@latest")
    print(f"   {latest.name}@{latest.version} parents: {[registry.label(p) for p in latest.lineage.parents]}")
    print(f"   created {latest.lineage.created} by {latest.lineage.author}: {latest.lineage.message}")
    log = subprocess.run([sys.executable, "-m", "mreg", "log", "resnet18"], check=True, capture_output=True, text=True)
    print("   $ mreg log resnet18\n" + "\n".join(f"   {line}" for line in log.stdout.splitlines()))

    step("9. Results after registration, the best version, the past",
         "mreg note REF --metric KEY=VALUE -m TEXT; mreg ls resnet18 --sort METRIC --limit 1; mreg show NAME@latest@{DATE}")
    note_evaluation(registry)
    show_best_and_past(registry)

    step("10. What changed between versions, and what it cost to store", "mreg diff resnet18@1.0.0 resnet18@2.0.0; mreg du")
    show_diff_and_usage(registry)

    step("11. Path resolution with a storage fallback", "mreg config --add fallback.url ..; mreg path REF")
    show_fallback(registry)

    step("12. A medical model: a small MONAI UNet that segments the lungs in chest radiographs", "your training script")
    print("   NOTE: the radiographs are synthetic (two bright ellipses on noise) made by this script; no patient")
    print("   data is used, and the scores below say nothing about clinical performance")
    network, metrics, card = train_lung_unet()

    step("13. Package it as a MONAI bundle and register it with its model card",
         "python -m monai.bundle init_bundle DIR; mreg add chest-seg DIR --card card.json")
    add_bundle(registry, network, metrics, card)

    step("14. What a reviewer reads: the version's contract and model card", f"mreg show {MEDICAL}@1.0.0")
    show_card(registry)

    step("15. Export the bundle; MONAI's own loader and mreg's load_model both rebuild it",
         f"mreg export {MEDICAL}@1.0.0 {EXPORT_DIR}; python: monai.bundle.ConfigParser, mreg.pytorch.load_model")
    round_trip(registry, network)

    step("16. Verify the store", "mreg fsck")
    report = registry.fsck()
    print(f"   {report.objects} objects, {report.models} models, {report.versions} versions: "
          + ("ok" if report.ok else f"PROBLEMS: {report.problems}"))
    print(f"\ndone in {time.perf_counter() - started:.1f}s")


def step(title: str, command: str) -> None:
    print(f"\n{title}\n   (shell: {command})")


def fetch(name: str) -> PretrainedModel:
    """Pretrained weights from torchvision, or, offline, the architecture with random weights."""
    with warnings.catch_warnings():  # the fallback's warning is printed below, in this script's words
        warnings.simplefilter("ignore", RuntimeWarning)
        model = fetch_pretrained(name)
    if model.pretrained:
        print(f"   {name}: published weights {model.properties['torchvision_weights']} (hash checked)")
    else:
        print(f"   WARNING: {name}: no pretrained weights ({model.reason}); registering the same "
              "architecture with random weights, recorded as pretrained: false")
    return model


def add(registry: Registry, spec: str, model: PretrainedModel, *, message: str) -> None:
    try:
        result = register(registry, spec, model.model, message=message, **model.registration())
    except VersionConflictError:
        # Happens if an earlier run registered other weights under this version
        # (for example offline, before the published weights could be downloaded).
        print(f"   {spec} already holds other weights; keeping it (versions are immutable)")
        return
    state = "added" if result.created else "already registered, identical: no-op"
    print(f"   {spec:<20} {result.digest[:15]}  {state}")


def make_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic 'scans': noise, and for label 1 a bright square standing in for a lesion."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, 64, 64, generator=generator) * 0.5
    labels = torch.arange(count) % 2
    images[labels == 1, :, 24:40, 24:40] += 0.5
    return images, labels


def train_two_class_head(base: torch.nn.Module) -> tuple[torch.nn.Module, dict[str, float]]:
    """Fine-tune a new 2-class head on resnet18's frozen features, for a few steps."""
    print("   training data: 96 synthetic 64x64 images this script makes (not real scans)")
    torch.manual_seed(0)
    model = TorchvisionBuilder("resnet18", {"num_classes": 2}).build()
    backbone_weights = {k: v for k, v in base.state_dict().items() if not k.startswith("fc.")}
    model.load_state_dict(backbone_weights, strict=False)
    backbone = torch.nn.Sequential(*list(model.children())[:-1]).eval()
    (train_x, train_y), (val_x, val_y) = make_images(64, seed=1), make_images(32, seed=2)
    with torch.no_grad():
        train_features, val_features = backbone(train_x).flatten(1), backbone(val_x).flatten(1)
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=0.01)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model.fc(train_features), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model.fc(val_features).argmax(1) == val_y).float().mean().item()
    print(f"   trained the head for 60 steps: loss {loss.item():.3f}, accuracy on held-out synthetic images {accuracy:.2f}")
    return model.eval(), {"synthetic_val_acc": round(accuracy, 4), "train_loss": round(loss.item(), 4)}


def add_derived(registry: Registry, model: torch.nn.Module, metrics: dict[str, float]) -> None:
    spec = f"resnet18@{DERIVED_VERSION}"
    try:
        result = register(
            registry,
            spec,
            model,
            family="resnet",
            builder=TorchvisionBuilder("resnet18", {"num_classes": 2}),
            input_shape=(1, 3, 64, 64),
            metrics=metrics,
            datasets=["synthetic lesions, generated by example.py (seeds 1 and 2)"],
            parents=["resnet18@1.0.0"],
            properties={"task": "binary classification (normal / abnormal)", "classes": ["normal", "abnormal"]},
            message="2-class head fine-tuned on synthetic images",
        )
    except VersionConflictError:
        print(f"   {spec} already holds other weights; keeping it (versions are immutable)")
        return
    state = "added" if result.created else "already registered, identical: no-op"
    print(f"   {spec:<20} {result.digest[:15]}  {state}; parent resnet18@1.0.0")


def note_evaluation(registry: Registry) -> None:
    """Evaluate resnet18@2.0.0 on new images and note the result: the version itself never changes."""
    classifier = load_model(registry, f"resnet18@{DERIVED_VERSION}")
    images, labels = make_images(32, seed=4)
    with torch.no_grad():
        accuracy = (classifier(images).argmax(1) == labels).float().mean().item()
    change = registry.note(
        f"resnet18@{DERIVED_VERSION}",
        metrics={"synthetic_test_acc": round(accuracy, 4)},
        message="evaluated on 32 new synthetic images (seed 4)",
    )
    state = "noted" if change.new != change.old else "the note already says so"
    print(f"   resnet18@{DERIVED_VERSION}: synthetic_test_acc {accuracy:.2f} ({state}; 'mreg log resnet18' keeps each change)")
    view = registry.get(f"resnet18@{DERIVED_VERSION}")
    print(f"   registered metrics {dict(view.metrics)}; noted since {dict(view.evaluation)}")


def show_best_and_past(registry: Registry) -> None:
    """The best version by a noted metric, and what latest was before 2.0.0 arrived."""
    for view in registry.query(name="resnet18", sort="synthetic_test_acc", limit=1):
        print(f"   best resnet18 by synthetic_test_acc: {view.version} ({view.all_metrics['synthetic_test_acc']:.2f})")
    added = next(e for e in registry.log("resnet18") if e.ref == f"versions/{DERIVED_VERSION}" and e.new)
    before = datetime.fromisoformat(added.time) - timedelta(seconds=1)
    ref = f"resnet18@latest@{{{before.strftime('%Y-%m-%dT%H:%M:%SZ')}}}"
    try:
        print(f"   {ref} -> {registry.get(ref).version} (latest just before {DERIVED_VERSION} was added)")
    except NotFoundError:
        print(f"   {ref}: resnet18 had no version yet")


def show_diff_and_usage(registry: Registry) -> None:
    """Tensor-level diff of the fine-tune, and how little its backbone cost to store."""
    changes = diff(registry, "resnet18@1.0.0", "resnet18@2.0.0")
    for change in changes.files:
        tensors = change.tensors
        if tensors is None:
            continue
        print(f"   {change.path}: {len(tensors.changed)} tensors changed, {tensors.unchanged} unchanged "
              f"({tensors.unchanged_bytes / 2**20:.1f} MiB shared)")
        for tensor in tensors.changed:
            print(f"      {tensor.old.name}: {tensor.old.dtype}{list(tensor.old.shape)} -> {tensor.new.dtype}{list(tensor.new.shape)}")
    for metric in changes.metrics:
        print(f"   metric {metric.name}: {'-' if metric.old is None else metric.old} -> {metric.new}")
    print("   each distinct tensor is stored once, so versions that share weights share storage:")
    for model in registry.disk_usage().models:
        print(f"   {model.name:<14} {model.versions} version(s): registered {model.logical / 2**20:5.1f} MiB, "
              f"stored {model.stored / 2**20:5.1f} MiB ({model.ratio:.2f}x)")


def show_fallback(registry: Registry) -> None:
    """A second registry, as on a laptop, that falls back on this one for what it lacks."""
    laptop = Registry.init(LAPTOP)
    laptop.set_config("fallback.url", str(registry.root.parent))
    print(f"   a second registry at {laptop.root}, falling back on {registry.root.parent}")
    view = laptop.get("mobilenet_v2@latest")  # not in the laptop's refs: found in the fallback
    print(f"   {view.name}@{view.version} resolved through the fallback: {view.digest[:15]}")
    local = laptop.path("mobilenet_v2@latest")  # fetched, verified, cached in the laptop registry
    print(f"   its weights, fetched and verified once, cached at {local}")
    print(f"   in the laptop registry now: {laptop.objects.contains(view.files[0].digest)}; "
          "'mreg pull' would copy the refs too")


def run_inference(registry: Registry, resnet: PretrainedModel) -> None:
    production = load_model(registry, "resnet18@production")  # rebuilt from the registry alone
    image = torch.rand(1, *registry.get("resnet18@production").manifest.input_shape[1:])
    with torch.no_grad():
        top = production(image).softmax(1).topk(3)
    categories = resnet.categories
    guesses = ", ".join(f"{categories[i]} {p:.2f}" for p, i in zip(top.values[0].tolist(), top.indices[0].tolist()))
    caveat = "" if resnet.pretrained else " (random weights offline: these guesses mean nothing)"
    print(f"   resnet18@production on a random 224x224 image: {guesses}{caveat}")

    classifier = load_model(registry, "resnet18@latest")
    scan, _ = make_images(2, seed=3)
    with torch.no_grad():
        probabilities = classifier(scan).softmax(1)
    for label, row in zip(("normal", "abnormal"), probabilities.tolist()):
        print(f"   resnet18@latest on a synthetic {label} image: P(abnormal) = {row[1]:.2f}")


# ------------------------------------------------------------------ a medical model, as a MONAI bundle


def radiographs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthetic 'chest radiographs': two bright ellipses ('lungs') of random size on noise,
    their masks, and the lung sizes."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    scale = 0.18 + 0.14 * torch.rand(count, 1, 1, generator=generator)
    masks = torch.zeros(count, SIZE, SIZE)
    for centre in (-0.4, 0.4):
        masks += (((x - centre) / scale) ** 2 + (y / (1.8 * scale)) ** 2 <= 1).float()
    images = 0.6 * masks + 0.3 * torch.rand(count, SIZE, SIZE, generator=generator)
    return images.unsqueeze(1), masks.clamp(max=1).long(), scale.flatten()


def train_lung_unet() -> tuple[torch.nn.Module, dict[str, float], ModelCard]:
    """40 steps of Adam on 64 synthetic radiographs; Dice on 32 held out, overall and by lung size.

    Returns the network, its metrics and what the bundle's metadata cannot say for the
    model card: the data (with digests), performance by subgroup, limitations.
    """
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    network = UNet(**{key: value for key, value in NETWORK_DEF.items() if key != "_target_"})
    (train_x, train_y, _), (val_x, val_y, val_scale) = radiographs(64, seed=1), radiographs(32, seed=2)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    for index in range(40):
        batch = slice(index % 8 * 8, index % 8 * 8 + 8)
        loss = loss_function(network(train_x[batch]), train_y[batch].unsqueeze(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = network.eval()(val_x).argmax(1)
    overlap = (predicted * val_y).sum((1, 2)).float()
    dice = 2 * overlap / (predicted.sum((1, 2)) + val_y.sum((1, 2))).clamp(min=1)
    small = val_scale < val_scale.median()
    metrics = {"mean_dice": round(dice.mean().item(), 4)}
    subgroups = {"small_lungs": {"mean_dice": round(dice[small].mean().item(), 4)},
                 "large_lungs": {"mean_dice": round(dice[~small].mean().item(), 4)}}  # fmt: skip
    print(f"   40 steps of 8 images: loss {loss.item():.3f}; Dice on 32 held-out synthetic images {metrics['mean_dice']:.3f} "
          f"(small lungs {subgroups['small_lungs']['mean_dice']:.3f}, large {subgroups['large_lungs']['mean_dice']:.3f})")
    digest = {name: "sha256:" + hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
              for name, x, y in (("train", train_x, train_y), ("val", val_x, val_y))}  # fmt: skip
    card = ModelCard(
        training_data=(Dataset("synthetic-radiographs-train-64", digest["train"]),),
        evaluation_data=(Dataset("synthetic-radiographs-val-32", digest["val"]),),
        subgroup_performance=subgroups,
        limitations="Trained and evaluated on synthetic images only; never use it on patients.",
    )
    return network, metrics, card


def write_bundle(directory: Path, network: torch.nn.Module, metrics: dict[str, float]) -> Path:
    """The bundle MONAI's init_bundle makes: metadata, inference config, weights, docs, LICENSE."""
    from monai.bundle import init_bundle
    from monai.bundle.utils import DEFAULT_INFERENCE, DEFAULT_METADATA

    image = {"type": "image", "format": "magnitude", "modality": "DX", "num_channels": 1,
             "spatial_shape": [SIZE, SIZE], "dtype": "float32", "value_range": [0, 1],
             "is_patch_data": False, "channel_def": {"0": "radiograph"}}  # fmt: skip
    metadata = {
        **DEFAULT_METADATA,
        "version": "1.0.0",
        "changelog": {"1.0.0": "first version, trained on synthetic radiographs"},
        "task": "Lung segmentation in 2-D chest radiographs",
        "description": "A small 2-D UNet that segments both lungs; a demonstration trained on synthetic images.",
        "authors": "mreg example",
        "copyright": "Copyright (c) mreg example",
        "intended_use": "Demonstration of mreg only; not for any clinical use.",
        "data_source": "synthetic radiographs generated by example.py",
        "eval_metrics": metrics,
        "network_data_format": {
            "inputs": {"image": image},
            "outputs": {"pred": {**image, "format": "labels", "num_channels": 2, "channel_def": {"0": "background", "1": "lung"}}},
        },
    }
    inference = {**DEFAULT_INFERENCE, "network_def": NETWORK_DEF}  # MONAI's template pipeline, this network
    init_bundle(directory, network=network, metadata_str=json.dumps(metadata, indent=4), inference_str=json.dumps(inference, indent=4))
    return directory


def add_bundle(registry: Registry, network: torch.nn.Module, metrics: dict[str, float], card: ModelCard) -> None:
    """Register the bundle: its metadata gives the version, framework, input shape, metrics and most of
    the card; the card written here adds what metadata cannot say."""
    with tempfile.TemporaryDirectory() as scratch:
        bundle = write_bundle(Path(scratch) / "chest_seg", network, metrics)
        print(f"   {bundle.name}/: " + ", ".join(sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())))
        try:
            result = registry.add(MEDICAL, [bundle], card=card)
        except VersionConflictError:
            print(f"   {MEDICAL}@1.0.0 already holds other content; keeping it (versions are immutable)")
            return
    state = "added" if result.created else "unchanged since the last run (same bytes): no-op"
    print(f"   {result.name}@{result.version:<11} {result.digest[:15]}  {state}")


def show_card(registry: Registry) -> None:
    view = registry.get(f"{MEDICAL}@1.0.0")
    print(f"   framework {view.framework}, architecture {view.manifest.architecture}, "
          f"input shape {list(view.manifest.input_shape or [])}, metrics {dict(view.metrics)}")
    for line in view.card.lines() if view.card else ["(no card)"]:
        print(f"   {line}")


def round_trip(registry: Registry, trained: torch.nn.Module) -> None:
    """MONAI loads the exported bundle unchanged; load_model builds the same network from the registry
    alone; a bundle whose network_def would run code is refused."""
    from monai.bundle import ConfigParser

    exported = subprocess.run([sys.executable, "-m", "mreg", "export", f"{MEDICAL}@1.0.0", str(EXPORT_DIR)],
                              check=True, capture_output=True, text=True)  # fmt: skip
    print(f"   {exported.stdout.strip()}")
    image = radiographs(1, seed=99)[0]
    with torch.no_grad():
        expected = trained.eval()(image)
        parser = ConfigParser()
        parser.read_meta(str(EXPORT_DIR / "configs/metadata.json"))
        parser.read_config(str(EXPORT_DIR / "configs/inference.json"))
        monai_network = parser.get_parsed_content("network_def")
        monai_network.load_state_dict(torch.load(EXPORT_DIR / "models/model.pt", weights_only=True))
        print(f"   MONAI's ConfigParser built {type(monai_network).__name__} (bundle {parser['_meta_::version']}) with the "
              f"registered weights; same output as the trained network: {torch.equal(monai_network.eval()(image), expected)}")
        loaded = load_model(registry, f"{MEDICAL}@1.0.0")  # network_def checked, then built by MONAI
        print(f"   load_model({MEDICAL}@1.0.0): {type(loaded).__name__}, same output: {torch.equal(loaded(image), expected)}")
    try:
        build_network({"network_def": {"_target_": "os.system", "command": "echo this never runs"}})
    except InvalidInputError as refused:
        print(f"   a network_def naming os.system is refused, not run: {refused}")


if __name__ == "__main__":
    main()
