"""The PyTorch adapter: round trips, rebuilding, refusing pickles, metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import assert_clean_failure, run_cli, store_snapshot

from mreg.errors import InvalidInputError, NotFoundError, ObjectNotFoundError
from mreg.pytorch.checkpoints import load_checkpoint
from mreg.pytorch.models import (
    TorchvisionBuilder,
    load_model,
    load_state_dict,
    register,
)
from mreg.pytorch.pretrained import fetch_pretrained
from mreg.pytorch.tensors import (
    SMALL_SEGMENT,
    describe,
)
from mreg.pytorch.torchvision_compat import import_torchvision
from mreg.registry import Registry


class TinyNet(torch.nn.Module):
    """A few KB of parameters and buffers of several dtypes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = torch.nn.BatchNorm2d(4)  # float buffers and an int64 counter
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x)).mean((2, 3)))


def mixed_state_dict() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=generator)
    return {
        "float32": base,
        "float16": base.to(torch.float16),
        "bfloat16": base.to(torch.bfloat16),
        "int64": torch.arange(7, dtype=torch.int64),
        "transposed": base.t(),  # not contiguous
        "sliced": base[1:4, ::2],  # not contiguous, with a storage offset
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(3.5),
        "mask": torch.tensor([True, False, True]),
    }


def test_state_dict_round_trip_is_bit_exact(registry: Registry) -> None:
    original = mixed_state_dict()
    register(registry, "mixed@1.0.0", original)
    loaded = load_state_dict(registry, "mixed")
    assert loaded.keys() == original.keys()
    for name, tensor in original.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name].view(-1).view(torch.uint8), tensor.contiguous().view(-1).view(torch.uint8)), name


def test_module_round_trip_and_recorded_metadata(registry: Registry) -> None:
    model = TinyNet()
    result = register(registry, "tiny@1.0.0", model, family="tiny", metrics={"acc": 0.5}, input_shape=(1, 3, 8, 8))
    manifest = registry.get("tiny").manifest
    assert manifest.framework is not None and manifest.framework.name == "pytorch"
    assert manifest.framework.version == torch.__version__
    assert manifest.architecture == "TinyNet"
    assert manifest.input_shape == (1, 3, 8, 8)
    state = model.state_dict()
    assert manifest.properties["parameters"] == sum(t.numel() for t in state.values())
    assert manifest.properties["weights"] == {
        "tensors": len(state),
        "bytes": sum(t.numel() * t.element_size() for t in state.values()),
        "dtypes": {"float32": len(state) - 1, "int64": 1},
    }
    assert [f.path for f in manifest.files] == ["model.safetensors"]
    rebuilt = load_model(registry, result.digest, model=TinyNet())
    assert not rebuilt.training
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    assert torch.equal(rebuilt(x), model(x))


def test_loaded_tensors_are_writable_without_changing_the_store(registry: Registry) -> None:
    register(registry, "tiny@1.0.0", TinyNet())
    before = store_snapshot(registry)
    loaded = load_state_dict(registry, "tiny")
    loaded["head.weight"].add_(1.0)
    assert store_snapshot(registry) == before
    assert registry.fsck().ok


def chunked_state_dict() -> dict[str, torch.Tensor]:
    """Tensors stored as chunks of both kinds: one read into memory, one memory-mapped."""
    generator = torch.Generator().manual_seed(1)
    return {
        "small": torch.randn(64, 128, generator=generator),  # 32 KiB: a chunk below SMALL_SEGMENT
        "large": torch.randn(256, 256, generator=generator),  # 256 KiB: a mapped chunk
        "bias": torch.randn(4, generator=generator),  # in a glue chunk
        "view": torch.arange(8192.0)[::2],  # not contiguous, in a checkpoint
    }


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_chunked_loads_are_private_copies(registry: Registry, tmp_path: Path, kind: str) -> None:
    original = chunked_state_dict()
    if kind == "pt":
        path = tmp_path / "weights.pt"
        torch.save(original, path)
        registry.add("m@1.0.0", [path])
    else:
        register(registry, "m@1.0.0", original)
    digest = registry.file_entry("m").digest
    sizes = [size for _, size in registry.objects.chunks(digest)]  # raises unless stored as chunks
    assert min(sizes) < SMALL_SEGMENT <= max(sizes)
    before = store_snapshot(registry)
    loaded = load_state_dict(registry, "m")
    for tensor in loaded.values():
        tensor.add_(1.0)
    assert store_snapshot(registry) == before
    again = load_state_dict(registry, "m")  # a second load never sees the first one's writes
    for name, tensor in original.items():
        assert torch.equal(again[name], tensor), name
        assert torch.equal(loaded[name], tensor + 1.0), name
    assert registry.fsck().ok


def test_a_missing_chunk_fails_the_load_cleanly(registry: Registry) -> None:
    register(registry, "m@1.0.0", chunked_state_dict())
    chunks = registry.objects.chunks(registry.file_entry("m").digest)
    missing = max(chunks, key=lambda chunk: chunk[1])[0]
    registry.objects.object_path(missing).unlink()
    with pytest.raises(ObjectNotFoundError, match=missing):
        load_state_dict(registry, "m")


def test_the_weight_file_to_load_is_named_when_there_are_several(registry: Registry, tmp_path: Path) -> None:
    torch.save({"w": torch.ones(2)}, tmp_path / "a.pt")
    torch.save({"w": torch.zeros(3)}, tmp_path / "b.pt")
    registry.add("two@1.0.0", [tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(InvalidInputError, match=r"two has 2 weight files \(a.pt, b.pt\): pass file="):
        load_state_dict(registry, "two")
    assert torch.equal(load_state_dict(registry, "two", file="b.pt")["w"], torch.zeros(3))
    with pytest.raises(NotFoundError, match="two@1.0.0 has no file 'c.pt'"):
        load_state_dict(registry, "two@1.0.0", file="c.pt")


def test_load_model_needs_an_architecture_when_none_is_recorded(registry: Registry) -> None:
    register(registry, "tiny@1.0.0", TinyNet())
    with pytest.raises(InvalidInputError, match="model= or builder="):
        load_model(registry, "tiny")
    assert isinstance(load_model(registry, "tiny", builder=TinyNet), TinyNet)


def test_load_model_rebuilds_a_torchvision_architecture(registry: Registry) -> None:
    builder = TorchvisionBuilder("squeezenet1_1", {"num_classes": 3})
    torch.manual_seed(0)
    original = builder.build().eval()
    register(registry, "squeeze@1.0.0", original, builder=builder)
    rebuilt = load_model(registry, "squeeze@1.0.0")  # from the registry alone
    assert type(rebuilt).__name__ == "SqueezeNet" and not rebuilt.training
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(rebuilt(x), original(x))


def test_recorded_builder_never_names_arbitrary_code(registry: Registry) -> None:
    register(registry, "tiny@1.0.0", TinyNet(), properties={"builder": {"library": "torchvision", "name": "os.system"}})
    with pytest.raises(InvalidInputError, match="no model named 'os.system'"):
        load_model(registry, "tiny")


class Exploit:
    """Unpickling this would write a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "executed"))


def test_pickled_objects_are_refused_not_executed(registry: Registry, make_file, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "inputs" / "evil.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.ones(2), "payload": Exploit(marker)}, checkpoint)
    before = store_snapshot(registry)
    result = run_cli("add", "evil@1.0.0", str(checkpoint), registry=registry)
    assert_clean_failure(result, code=2)
    assert "weights_only" in result.stderr
    assert not marker.exists()
    assert store_snapshot(registry) == before
    with pytest.raises(InvalidInputError, match="refused"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_pt_file_added_from_the_shell_loads_and_is_described(registry: Registry, tmp_path: Path) -> None:
    state = TinyNet().state_dict()
    checkpoint = tmp_path / "tiny.pt"
    torch.save(state, checkpoint)
    assert run_cli("add", "tiny@1.0.0", str(checkpoint), registry=registry).exit_code == 0
    shown = json.loads(run_cli("show", "tiny", "--json", registry=registry).stdout)
    assert shown["properties"] == describe(state)
    assert shown["framework"]["name"] == "pytorch"
    loaded = load_state_dict(registry, "tiny")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_safetensors_added_from_the_shell_is_described_like_the_api(registry: Registry, tmp_path: Path) -> None:
    register(registry, "api@1.0.0", mixed_state_dict())
    exported = tmp_path / "mixed.safetensors"
    exported.write_bytes(registry.path("api").read_bytes())
    assert run_cli("add", "shell@1.0.0", str(exported), registry=registry).exit_code == 0
    assert registry.get("shell").manifest.properties == registry.get("api").manifest.properties


def test_files_interoperate_with_the_safetensors_library(registry: Registry, tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    original = {k: v.contiguous() for k, v in mixed_state_dict().items()}
    register(registry, "ours@1.0.0", original)
    theirs = safetensors_torch.load_file(str(registry.path("ours")))
    assert all(torch.equal(theirs[k], v) for k, v in original.items())
    written = tmp_path / "theirs.safetensors"
    safetensors_torch.save_file(original, str(written))
    registry.add("theirs@1.0.0", [written])
    loaded = load_state_dict(registry, "theirs")
    assert all(torch.equal(loaded[k], v) for k, v in original.items())


def test_torchvision_imports_through_the_compatibility_step() -> None:
    torchvision = import_torchvision()
    assert import_torchvision() is torchvision  # a second call is harmless
    assert "resnet18" in torchvision.models.list_models()


def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No route to the download host, and an empty torch hub cache."""
    hub = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # the discard port: refused at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return hub


def test_pretrained_falls_back_honestly_when_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline(monkeypatch, tmp_path)
    with pytest.warns(RuntimeWarning, match="could not load the published checkpoint"):
        fetched = fetch_pretrained("squeezenet1_1")
    assert fetched.pretrained is False
    assert "could not load the published checkpoint" in (fetched.reason or "")
    assert fetched.metrics == {} and fetched.datasets == ()
    assert fetched.properties["pretrained"] is False
    assert fetched.properties["published_metrics"]["ImageNet-1K"]["acc@1"] > 50
    again = fetch_pretrained("squeezenet1_1")  # seeded: the same bytes every time
    assert all(torch.equal(a, b) for a, b in zip(fetched.model.state_dict().values(), again.model.state_dict().values()))


def test_pretrained_uses_a_checkpoint_already_in_the_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = offline(monkeypatch, tmp_path)
    weights = import_torchvision().models.get_model_weights("squeezenet1_1").DEFAULT
    cached = hub / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(TorchvisionBuilder("squeezenet1_1").build().state_dict(), cached)
    digest = registry_digest(cached)
    # Nobody can forge a file whose hash matches the published prefix: pretend ours is published.
    monkeypatch.setattr("mreg.pytorch.pretrained._hash_prefix", lambda url: digest.removeprefix("sha256:")[:8])
    fetched = fetch_pretrained("squeezenet1_1")
    assert fetched.pretrained is True
    assert fetched.properties["checkpoint"]["sha256"] == digest
    assert fetched.metrics["acc@1"] == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert [d.name for d in fetched.datasets] == ["ImageNet-1K"]
    assert fetched.properties["checkpoint"]["sha256"].startswith("sha256:")
    assert fetched.input_shape == (1, 3, 224, 224)


def registry_digest(path: Path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_planted_checkpoint_whose_hash_does_not_match_is_not_pretrained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = offline(monkeypatch, tmp_path)
    weights = import_torchvision().models.get_model_weights("squeezenet1_1").DEFAULT
    cached = hub / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(TorchvisionBuilder("squeezenet1_1").build().state_dict(), cached)
    with pytest.warns(RuntimeWarning, match="pretrained: false"):
        fetched = fetch_pretrained("squeezenet1_1")
    assert fetched.pretrained is False and fetched.metrics == {} and fetched.datasets == ()
    assert "does not start with" in fetched.properties["pretrained_reason"]


def test_pretrained_metadata_keeps_the_tensor_summary(registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline(monkeypatch, tmp_path)
    fetched = fetch_pretrained("squeezenet1_1")
    register(registry, "squeeze@1.0.0", fetched.model, **fetched.registration())
    properties = registry.get("squeeze").manifest.properties
    assert properties["weights"] == describe(fetched.model.state_dict())["weights"]
    assert properties["torchvision_weights"] == "SqueezeNet1_1_Weights.IMAGENET1K_V1"
