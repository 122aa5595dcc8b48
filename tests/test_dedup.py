"""Tensor-level deduplication, diff and du: the acceptance list of the dedup issue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import assert_clean_failure, run_cli

from mreg.errors import CorruptObjectError
from mreg.pytorch import diff
from mreg.pytorch.models import TorchvisionBuilder, load_state_dict, register
from mreg.pytorch.tensors import safetensors_blocks
from mreg.registry import Registry


def store_bytes(registry: Registry) -> int:
    """Bytes of every object file (blobs and chunk indexes)."""
    return sum(p.stat().st_size for p in registry.objects.objects_dir.rglob("*") if p.is_file())


def resnet18(num_classes: int = 1000) -> torch.nn.Module:
    torch.manual_seed(0)
    return TorchvisionBuilder("resnet18", {"num_classes": num_classes}).build()


def with_new_head(model: torch.nn.Module, seed: int) -> None:
    """Change the values of the final fully connected layer only."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=generator))
        model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=generator))


def fc_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.fc.parameters())


def model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@pytest.fixture(scope="module")
def base_model() -> torch.nn.Module:
    return resnet18()


def test_safetensors_version_with_a_new_fc_costs_only_fc(registry: Registry, base_model: torch.nn.Module, tmp_path: Path) -> None:
    model = resnet18()
    first = tmp_path / "first.safetensors"
    first.write_bytes(b"".join(bytes(b) for b in safetensors_blocks(model.state_dict())))
    registry.add("resnet@1.0.0", [first])
    before = store_bytes(registry)
    with_new_head(model, seed=1)
    second = tmp_path / "second.safetensors"
    second.write_bytes(b"".join(bytes(b) for b in safetensors_blocks(model.state_dict())))
    registry.add("resnet@1.1.0", [second])
    growth = store_bytes(registry) - before
    assert growth <= fc_bytes(model) + 0.01 * model_bytes(model), growth
    assert registry.objects.is_chunked(registry.file_entry("resnet@1.1.0").digest)
    assert registry.path("resnet@1.0.0").read_bytes() == first.read_bytes()
    assert registry.path("resnet@1.1.0").read_bytes() == second.read_bytes()
    assert registry.fsck().ok


def test_pt_version_with_a_new_fc_costs_only_fc(registry: Registry, tmp_path: Path) -> None:
    model = resnet18()
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    torch.save(model.state_dict(), first)
    registry.add("resnet@1.0.0", [first])
    before = store_bytes(registry)
    with_new_head(model, seed=1)
    torch.save(model.state_dict(), second)
    registry.add("resnet@1.1.0", [second])
    growth = store_bytes(registry) - before
    assert growth <= fc_bytes(model) + 0.01 * model_bytes(model), growth
    assert registry.path("resnet@1.0.0").read_bytes() == first.read_bytes()
    assert registry.path("resnet@1.1.0").read_bytes() == second.read_bytes()
    loaded = load_state_dict(registry, "resnet@1.1.0")
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_ten_checkpoints_of_a_fine_tuned_head_stay_small(registry: Registry) -> None:
    # Fine-tuning a 2-class head: only the last two layers (layer4.1.bn2 and fc) change.
    model = resnet18(num_classes=2)
    register(registry, "finetune@0.1.0", model)
    first = store_bytes(registry)
    for step in range(1, 10):
        with torch.no_grad():
            model.layer4[1].bn2.weight.add_(0.01)
            model.fc.weight.add_(0.01)
        register(registry, f"finetune@0.1.{step}", model)
    assert store_bytes(registry) <= 1.3 * first, store_bytes(registry) / first
    usage = registry.disk_usage()
    assert usage.ratio > 7


def test_diff_names_exactly_the_changed_tensors(registry: Registry, base_model: torch.nn.Module) -> None:
    model = resnet18()
    register(registry, "resnet@1.0.0", model, metrics={"acc": 0.5})
    with_new_head(model, seed=2)
    register(registry, "resnet@1.1.0", model, metrics={"acc": 0.75}, parents=["resnet@1.0.0"])
    result = diff(registry, "resnet@1.0.0", "resnet@1.1.0")
    [weights] = result.files
    assert weights.status == "changed"
    assert [c.old.name for c in weights.tensors.changed] == ["fc.bias", "fc.weight"]
    assert all(c.kind == "values" and c.max_abs_diff > 0 for c in weights.tensors.changed)
    assert weights.tensors.unchanged == len(model.state_dict()) - 2
    assert weights.tensors.unchanged_bytes == model_bytes(model) - fc_bytes(model)
    [metric] = result.metrics
    assert (metric.name, metric.old, metric.new) == ("acc", 0.5, 0.75)
    assert metric.delta == pytest.approx(0.25)
    assert any(f.field == "lineage.parents" for f in result.fields)

    shown = run_cli("diff", "resnet@1.0.0", "resnet@1.1.0", registry=registry)
    assert shown.exit_code == 0, shown.stderr
    assert "2 changed" in shown.stdout and "fc.weight" in shown.stdout and "acc: 0.5 -> 0.75" in shown.stdout
    document = json.loads(run_cli("diff", "resnet@1.0.0", "resnet@1.1.0", "--json", registry=registry).stdout)
    assert [c["name"] for c in document["files"][0]["tensors"]["changed"]] == ["fc.bias", "fc.weight"]


def test_diff_reports_shape_changes_and_added_and_removed_tensors(registry: Registry) -> None:
    register(registry, "m@1.0.0", {"a": torch.zeros(2, 3), "b": torch.ones(4), "gone": torch.ones(1)})
    register(registry, "m@2.0.0", {"a": torch.zeros(3, 3), "b": torch.ones(4, dtype=torch.float16), "new": torch.ones(1)})
    [weights] = diff(registry, "m@1.0.0", "m@2.0.0").files
    kinds = {c.old.name: c.kind for c in weights.tensors.changed}
    assert kinds == {"a": "shape", "b": "dtype"}
    assert [t.name for t in weights.tensors.added] == ["new"]
    assert [t.name for t in weights.tensors.removed] == ["gone"]


def test_du_reports_logical_and_stored_bytes(registry: Registry) -> None:
    model = resnet18(num_classes=2)
    register(registry, "a@1.0.0", model)
    register(registry, "b@1.0.0", model)  # the same weights under another model
    report = registry.disk_usage()
    assert report.logical == 2 * registry.get("a").files[0].size
    assert report.stored < 0.55 * report.logical
    assert {m.name for m in report.models} == {"a", "b"}
    shown = run_cli("du", registry=registry)
    assert shown.exit_code == 0 and "total" in shown.stdout
    assert json.loads(run_cli("du", "--json", registry=registry).stdout)["ratio"] > 1.8


def flip_a_byte(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_chunk_is_found_and_never_read_as_good_bytes(registry: Registry) -> None:
    register(registry, "resnet@1.0.0", resnet18(num_classes=2))
    entry = registry.file_entry("resnet")
    chunks = registry.objects.chunks(entry.digest)
    biggest = max(chunks, key=lambda chunk: chunk[1])[0]
    flip_a_byte(registry.objects.object_path(biggest))
    report = registry.fsck()
    assert not report.ok
    assert any(biggest in problem for problem in report.problems)
    with pytest.raises(CorruptObjectError):
        registry.path("resnet")  # assembling the file checks every chunk
    assert not list(registry.objects.cached_files())
    assert_clean_failure(run_cli("path", "resnet", registry=registry), code=5)
    assert registry.objects.verify(entry.digest) is not None


def test_small_files_and_non_weight_files_are_not_split(registry: Registry, make_file) -> None:
    registry.add("small@1.0.0", [make_file("config.json", b'{"a": 1}' * 10_000)])
    assert not any(registry.objects.iter_chunked())
    register(registry, "tiny@1.0.0", {"w": torch.ones(8)})
    assert not any(registry.objects.iter_chunked())


def test_gc_keeps_shared_chunks_and_drops_unique_ones(registry: Registry) -> None:
    model = resnet18(num_classes=2)
    register(registry, "m@1.0.0", model)
    with_new_head(model, seed=3)
    register(registry, "m@1.1.0", model)
    before = store_bytes(registry)
    registry.remove("m@1.1.0")
    report = registry.gc()
    assert 0 < before - store_bytes(registry) < 0.05 * before
    assert report.objects
    assert registry.fsck().ok
    assert torch.equal(load_state_dict(registry, "m@1.0.0")["fc.bias"], resnet18(num_classes=2).state_dict()["fc.bias"])
