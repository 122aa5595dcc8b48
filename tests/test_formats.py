"""Weight files the real libraries write, round-tripped: add, path, show, load, diff, fsck.

Every file here is written by safetensors or torch.save itself (then, for the
compressed case, re-zipped with deflate as a user's tool might do), never by mreg.
"""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from conftest import run_cli

from mreg.formats.containers import DTYPES
from mreg.pytorch.models import load_object, load_state_dict
from mreg.pytorch.tensors import TORCH_TO_SAFETENSORS
from mreg.registry import Registry


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_same(ours: Any, theirs: Any, path: str = "") -> None:
    """Exactly what torch.load returned: types, dtypes, shapes, strides, bits, containers."""
    assert type(ours) is type(theirs), path
    if isinstance(theirs, torch.Tensor):
        assert (ours.dtype, ours.shape, ours.layout, ours.requires_grad) == (theirs.dtype, theirs.shape, theirs.layout, theirs.requires_grad), path
        if theirs.layout == torch.strided:
            assert ours.stride() == theirs.stride(), path
            assert torch.equal(bits(ours), bits(theirs)), path
        else:
            assert torch.equal(bits(ours.to_dense()), bits(theirs.to_dense())), path
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs), path
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}.{i}")
    else:
        assert ours == theirs, path


def tensor_leaves(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in tensor_leaves(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in tensor_leaves(v, f"{prefix}.{i}" if prefix else str(i))]
    return []


# ------------------------------------------------------------------ safetensors


def every_dtype() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for dtype, code in TORCH_TO_SAFETENSORS.items():
        raw = torch.randint(0, 256, (2, 6), dtype=torch.uint8, generator=generator)
        if dtype.itemsize > 1:
            raw = torch.randint(0, 256, (2, 3 * dtype.itemsize), dtype=torch.uint8, generator=generator)
        tensors[f"{code}.matrix"] = raw.view(dtype) if dtype != torch.bool else raw % 2 == 1
        tensors[f"{code}.empty"] = torch.empty((0, 4), dtype=dtype)
        if DTYPES[code][0] >= 8:  # a packed 4-bit scalar has no whole byte
            tensors[f"{code}.scalar"] = tensors[f"{code}.matrix"].reshape(-1)[0].clone()
    return tensors


def test_every_safetensors_dtype_round_trips(registry: Registry, tmp_path: Path) -> None:
    original = every_dtype()
    assert {code for code in DTYPES} == set(TORCH_TO_SAFETENSORS.values())  # nothing torch has is left out
    written = tmp_path / "every.safetensors"
    safetensors_torch.save_file(original, str(written))
    assert run_cli("add", "every@1.0.0", str(written), registry=registry).exit_code == 0
    assert registry.path("every").read_bytes() == written.read_bytes()
    shown = json.loads(run_cli("show", "every", "--json", registry=registry).stdout)["properties"]
    assert shown["weights"]["tensors"] == len(original)
    assert shown["weights"]["bytes"] == sum(t.numel() * t.element_size() for t in original.values())
    assert shown["parameters"] == sum(t.numel() for t in original.values())
    loaded, theirs = load_state_dict(registry, "every"), safetensors_torch.load_file(str(written))
    assert_same(dict(sorted(loaded.items())), dict(sorted(theirs.items())))
    # and mreg's own writer produces files safetensors reads back identically
    from mreg.pytorch.models import register

    register(registry, "ours@1.0.0", original)
    assert registry.get("ours").manifest.properties == registry.get("every").manifest.properties
    back = safetensors_torch.load_file(str(registry.path("ours")))
    assert_same(dict(sorted(back.items())), dict(sorted(original.items())))
    changed = dict(original, **{"I64.matrix": original["I64.matrix"] ^ 1})  # every value moves by exactly 1
    safetensors_torch.save_file(changed, str(written))
    assert run_cli("add", "every@2.0.0", str(written), registry=registry).exit_code == 0
    result = run_cli("diff", "every@1.0.0", "every@2.0.0", "--json", registry=registry)
    tensors = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON: {c}"))["files"][0]["tensors"]
    assert [(c["name"], c["max_abs_diff"]) for c in tensors["changed"]] == [("I64.matrix", 1)]
    assert tensors["unchanged"] == len(original) - 1
    assert registry.fsck().ok


def test_safetensors_header_limit_is_the_libraries_own(registry: Registry, tmp_path: Path) -> None:
    import struct

    from mreg.formats.containers import MAX_HEADER_SIZE, FormatError, header_length

    assert MAX_HEADER_SIZE == 100_000_000
    assert header_length(struct.pack("<Q", 100_000_000)) == 100_000_000
    with pytest.raises(FormatError):
        header_length(struct.pack("<Q", 100_000_001))


# --------------------------------------------------------------- torch.save files


def deflate(path: Path) -> None:
    """Re-zip a checkpoint with every member deflated (torch.load reads that too)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)


def flat() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(64, 80, generator=generator)  # 20 KiB: stored as a chunk of its own
    return OrderedDict(
        weight=base,
        half=base[:4].to(torch.float16),
        ids=torch.arange(5) * (2**40),
        mask=torch.tensor([True, False]),
        scalar=torch.tensor(1.5),
        empty=torch.empty(0, 2),
    )


def nested() -> dict[str, Any]:
    return {"model": flat(), "epoch": 3, "lr": 0.01, "history": [0.5, (1, "x", None)], "note": b"bytes"}


def optimizer() -> dict[str, Any]:
    """What Adam's state_dict() holds after a step (built by hand: stepping imports torch._dynamo, 5 s)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    params = list(model.parameters())
    state = {i: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)} for i, p in enumerate(params)}
    group = {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": False, "foreach": None, "params": list(range(len(params)))}
    return {"model": model.state_dict(), "optimizer": {"state": state, "param_groups": [group]}, "step": 1}


def sparse() -> dict[str, torch.Tensor]:
    return {
        "coo": torch.sparse_coo_tensor([[0, 2, 3]], [1.0, -2.0, 3.0], (5,)),
        "csr": torch.tensor([[0.0, 1.0], [2.0, 0.0]]).to_sparse_csr(),
        "dense": torch.ones(3),
    }


def views() -> dict[str, torch.Tensor]:
    base = torch.arange(24.0).reshape(4, 6)
    return {"base": base, "rows": base[1:3], "transposed": base.t(), "strided": base[:, ::2], "param": torch.nn.Parameter(base[0])}


def new_dtypes() -> dict[str, torch.Tensor]:
    raw = torch.arange(16, dtype=torch.uint8)
    return {
        "e4m3fnuz": raw.view(torch.float8_e4m3fnuz),
        "e5m2fnuz": raw.view(torch.float8_e5m2fnuz),
        "e8m0": raw.view(torch.float8_e8m0fnu),
        "f4": raw.view(torch.float4_e2m1fn_x2),
        "u16": raw.view(torch.uint16),
        "u64": raw.view(torch.uint64),
        "f32": torch.ones(2),
    }


Case = tuple[Callable[[], Any], dict[str, Any], bool]  # (content, torch.save options, deflate)
CASES: dict[str, Case] = {
    "zip": (flat, {}, False),
    "legacy": (flat, {"_use_new_zipfile_serialization": False}, False),
    "compressed": (flat, {}, True),
    "nested": (nested, {}, False),
    "nested-legacy": (nested, {"_use_new_zipfile_serialization": False}, False),
    "optimizer": (optimizer, {}, False),
    "sparse": (sparse, {}, False),
    "views": (views, {}, False),
    "views-legacy": (views, {"_use_new_zipfile_serialization": False}, False),
    "new-dtypes": (new_dtypes, {}, False),
}


def save(content: Any, path: Path, options: dict[str, Any], compressed: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path, **options)
    if compressed:
        deflate(path)


def perturbed(content: Any) -> tuple[Any, str]:
    """A copy with one float tensor changed by exactly 1.0 (a new tensor: views keep the old bytes)."""
    found: list[str] = []

    def eligible(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.is_floating_point() and t.layout == torch.strided and t.numel() > 0 and t.dtype.itemsize >= 2

    def walk(value: Any, prefix: str) -> Any:
        if not found and eligible(value):
            found.append(prefix)
            return value.detach() + 1
        if isinstance(value, dict):
            return type(value)((k, walk(v, f"{prefix}.{k}" if prefix else str(k))) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(walk(v, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(value))
        return value

    changed = walk(content, "")
    return changed, found[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_save_files_round_trip(registry: Registry, tmp_path: Path, case: str) -> None:
    make, options, compressed = CASES[case]
    content = make()
    first, second = tmp_path / "in" / "v1" / "model.pt", tmp_path / "in" / "v2" / "model.pt"
    save(content, first, options, compressed)
    changed, changed_name = perturbed(content)
    save(changed, second, options, compressed)

    assert run_cli("add", "m@1.0.0", str(first), registry=registry).exit_code == 0
    assert run_cli("add", "m@1.1.0", str(second), registry=registry).exit_code == 0
    assert registry.path("m@1.0.0").read_bytes() == first.read_bytes()

    theirs = torch.load(first, weights_only=True)
    tensors = tensor_leaves(theirs)
    shown = json.loads(run_cli("show", "m@1.0.0", "--json", registry=registry).stdout)
    assert shown["framework"]["name"] == "pytorch"
    assert shown["properties"]["weights"]["tensors"] == len(tensors)
    dense = [t for _, t in tensors if t.layout == torch.strided]
    if len(dense) == len(tensors):
        assert shown["properties"]["weights"]["bytes"] == sum(t.numel() * t.element_size() for t in dense)
        assert shown["properties"]["parameters"] == sum(t.numel() for t in dense)

    assert_same(load_object(registry, "m@1.0.0"), theirs)
    if all(isinstance(v, torch.Tensor) for v in theirs.values()):
        assert_same(load_state_dict(registry, "m@1.0.0"), dict(theirs))

    result = run_cli("diff", "m@1.0.0", "m@1.1.0", "--json", registry=registry)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    tensor_diff = report["files"][0]["tensors"]
    assert [c["name"] for c in tensor_diff["changed"]] == [changed_name]
    assert tensor_diff["changed"][0]["max_abs_diff"] == pytest.approx(1.0, abs=1e-2)
    assert tensor_diff["added"] == tensor_diff["removed"] == []
    assert registry.fsck().ok


def test_views_that_shared_storage_share_it_again(registry: Registry, tmp_path: Path) -> None:
    checkpoint = tmp_path / "views.pt"
    torch.save(views(), checkpoint)
    registry.add("v@1.0.0", [checkpoint])
    loaded = load_state_dict(registry, "v")
    loaded["base"][1, 0] = -1.0
    assert loaded["rows"][0, 0] == -1.0 and loaded["transposed"][0, 1] == -1.0
    assert registry.path("v").read_bytes() == checkpoint.read_bytes()  # the store never changes


def test_compressed_members_are_bounded_by_what_the_checkpoint_declares(registry: Registry, tmp_path: Path) -> None:
    from conftest import assert_clean_failure, store_snapshot

    checkpoint = tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(3)}, checkpoint)
    with zipfile.ZipFile(checkpoint) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(checkpoint, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, bytes(16 << 20) if name.endswith("/data/0") else data)  # inflates to 16 MiB
    before = store_snapshot(registry)
    result = run_cli("add", "bomb@1.0.0", str(checkpoint), registry=registry)
    assert_clean_failure(result, code=2)
    assert "should hold 12 bytes" in result.stderr
    assert store_snapshot(registry) == before
