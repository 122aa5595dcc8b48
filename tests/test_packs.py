"""mreg pack: cold chunks stored packed, every version read back bit for bit.

A model's successive full fine-tunes change every tensor slightly: chunk dedup saves
nothing, and packing stores each old version as deltas against the next. These tests
drive it through the public API and the CLI on small models (four 80 KB tensors a
version), and check what the store holds: records where the plan says, raw chunks for
hot versions, chains within ``pack.depth``, the format version, and that loads, paths,
exports, du, fsck and gc all see the same bytes as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_failure, modules_loaded_by, run_cli
from conftest import store_snapshot as snapshot_with_locks

from mreg.errors import MregError
from mreg.pytorch import load_model, load_state_dict, register
from mreg.registry import Registry

VERSIONS = 5


def fine_tunes(count: int = VERSIONS, seed: int = 0, size: int = 20_000) -> list[dict[str, torch.Tensor]]:
    """A model and its successive full fine-tunes: every value moves a little each time."""
    generator = torch.Generator().manual_seed(seed)
    states = [{f"layer{i}.weight": torch.randn(size, generator=generator) * 0.05 for i in range(4)}]
    for _ in range(count - 1):
        states.append({name: value + torch.randn(size, generator=generator) * 1e-5 for name, value in states[-1].items()})
    return states


@pytest.fixture
def model(registry: Registry) -> tuple[Registry, list[dict[str, torch.Tensor]]]:
    """``m@1.0.0`` .. ``m@1.4.0``, successive full fine-tunes."""
    states = fine_tunes()
    for number, state in enumerate(states):
        register(registry, f"m@1.{number}.0", state)
    return registry, states


def store_snapshot(registry: Registry) -> dict[str, str]:
    """Every file of the store with its content's hash, lock files aside."""
    return {path: digest for path, digest in snapshot_with_locks(registry).items() if path != "pack.lock"}


def packed_chunks(registry: Registry, spec: str) -> list[bool]:
    """For each chunk of a version's weights: is it stored packed (its raw form gone)?"""
    entry = registry.get(spec).files[0]
    return [registry.objects.is_packed(chunk) for chunk, _ in registry.objects.chunks(entry.digest)]


def tensor_chunks(registry: Registry, spec: str) -> list[bool]:
    """Like :func:`packed_chunks`, for the tensors' chunks only (the header's glue chunk is too small to pack)."""
    entry = registry.get(spec).files[0]
    return [registry.objects.is_packed(chunk) for chunk, size in registry.objects.chunks(entry.digest) if size >= 4096]


def assert_bit_exact(registry: Registry, states: list[dict[str, torch.Tensor]]) -> None:
    for number, state in enumerate(states):
        loaded = load_state_dict(Registry(registry.root), f"m@1.{number}.0")
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[name].view(torch.uint8), state[name].view(torch.uint8)) for name in state), number


def test_pack_stores_old_versions_as_deltas_and_every_version_reads_back(model) -> None:
    registry, states = model
    before = registry.disk_usage()
    report = registry.pack()
    assert report.deltas == 4 * (VERSIONS - 1) and report.standalone == 0 and not report.problems
    assert report.packed_bytes < 0.6 * report.raw_bytes and report.freed > 0
    assert report.deepest == VERSIONS - 1  # m@1.0.0 decodes through every newer version
    for number in range(VERSIONS - 1):
        assert all(tensor_chunks(registry, f"m@1.{number}.0")), number
    assert not any(packed_chunks(registry, "m@1.4.0"))  # the newest stays raw: memory-mapped at load
    after = registry.disk_usage()
    assert after.stored < 0.7 * before.stored and after.logical == before.logical
    assert after.packed_raw == report.raw_bytes and after.packed_stored == report.packed_bytes
    assert registry.fsck().ok, registry.fsck().problems
    assert_bit_exact(registry, states)
    assert "formatversion = 2" in (registry.root / "config").read_text()


def test_paths_exports_and_cat_file_give_the_registered_bytes(model, tmp_path: Path) -> None:
    registry, _ = model
    digests = {number: registry.get(f"m@1.{number}.0").files[0].digest for number in range(VERSIONS)}
    registry.pack()
    for number, digest in digests.items():
        assert "sha256:" + hashlib.sha256(registry.path(f"m@1.{number}.0").read_bytes()).hexdigest() == digest
    registry.export("m@1.0.0", tmp_path / "out")
    assert "sha256:" + hashlib.sha256((tmp_path / "out" / "model.safetensors").read_bytes()).hexdigest() == digests[0]
    chunk = registry.objects.chunks(digests[0])[1][0]
    assert "sha256:" + hashlib.sha256(b"".join(registry.object_bytes(chunk))).hexdigest() == chunk


def test_load_model_of_a_packed_version(registry: Registry) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(200, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    register(registry, "net@1.0.0", net)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter += 1e-5
    register(registry, "net@1.1.0", net)
    assert registry.pack().packed > 0
    loaded = load_model(registry, "net@1.0.0", model=torch.nn.Sequential(torch.nn.Linear(200, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)))
    assert torch.equal(loaded[0].weight, net[0].weight - 1e-5) is False  # packed, not the newer one
    first = load_state_dict(registry, "net@1.0.0")
    assert all(torch.equal(first[name], loaded.state_dict()[name]) for name in first)


def test_tagged_versions_stay_raw_and_all_packs_them_too(model) -> None:
    registry, states = model
    registry.tag("m@1.1.0", "prod")
    registry.pack()
    assert not any(packed_chunks(registry, "m@1.1.0")) and not any(packed_chunks(registry, "m@1.4.0"))
    assert all(tensor_chunks(registry, "m@1.2.0"))
    report = registry.pack(all=True)
    assert report.packed == 8 and report.standalone >= 4  # the newest has no successor: alone
    assert all(tensor_chunks(registry, "m@1.4.0")) and all(tensor_chunks(registry, "m@1.1.0"))
    assert registry.fsck().ok
    assert_bit_exact(registry, states)
    back = registry.pack()  # without --all, hot chunks get their raw form back
    assert back.unpacked == 8 and not any(packed_chunks(registry, "m@1.4.0"))
    assert_bit_exact(registry, states)


def test_a_second_pack_changes_nothing_and_a_new_version_packs_its_predecessor(model) -> None:
    registry, states = model
    registry.pack()
    snapshot = store_snapshot(registry)
    again = registry.pack()
    assert (again.packed, again.unpacked, again.kept) == (0, 0, 4 * (VERSIONS - 1))
    assert store_snapshot(registry) == snapshot
    newer = {name: value + 1e-5 for name, value in states[-1].items()}
    register(registry, "m@1.5.0", newer)
    report = registry.pack()
    assert report.packed == 4 and all(tensor_chunks(registry, "m@1.4.0"))  # only the new predecessor
    assert_bit_exact(registry, [*states, newer])


def test_chains_stay_within_pack_depth(model) -> None:
    registry, states = model
    registry.set_config("pack.depth", "2")
    report = registry.pack()
    assert report.deepest == 2 and report.standalone == 4  # m@1.1.0 is a keyframe
    assert registry.fsck().ok
    assert_bit_exact(registry, states)
    registry.set_config("pack.depth", "1")
    assert registry.pack().deepest == 1
    assert_bit_exact(registry, states)
    registry.set_config("pack.depth", "0")
    with pytest.raises(MregError, match="pack.depth"):
        registry.pack()


def test_dry_run_changes_nothing_and_estimates(model) -> None:
    registry, _ = model
    snapshot = store_snapshot(registry)
    estimate = registry.pack(dry_run=True)
    assert store_snapshot(registry) == snapshot
    report = registry.pack()
    assert (estimate.deltas, estimate.raw_bytes) == (report.deltas, report.raw_bytes)
    assert abs(estimate.packed_bytes - report.packed_bytes) < 0.1 * report.packed_bytes


def test_rm_then_gc_keeps_bases_until_pack_reencodes(model) -> None:
    registry, states = model
    registry.pack()
    registry.remove("m@1.4.0")
    gc = registry.gc()
    assert not gc.objects or all(not registry.objects.is_packed(d) for d in gc.objects)
    usage = registry.disk_usage()
    assert usage.bases > 0 and usage.unreachable == 0  # the removed version's chunks: bases now
    assert any("kept as bases" in note for note in registry.fsck().notes)
    assert_bit_exact(registry, states[:-1])
    collected = registry.gc(pack=True)
    assert collected.packed is not None and collected.packed.unpacked == 4  # m@1.3.0 is newest now
    assert registry.disk_usage().bases == 0 and len(collected.objects) == 4
    assert registry.fsck().ok
    assert_bit_exact(registry, states[:-1])


def test_gc_deletes_unreachable_records_before_their_bases(model, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    registry, _ = model
    registry.pack()
    for number in range(VERSIONS):
        registry.remove(f"m@1.{number}.0")
    order = []
    real = os.unlink


    def unlink(path: str, *args: object, **kwargs: object) -> None:
        if os.path.exists(path) and "objects" in str(path):
            order.append(str(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    registry.gc()
    records = [n for n, path in enumerate(order) if path.endswith(".pack")]
    raw = [n for n, path in enumerate(order) if not path.endswith((".pack", ".chunks"))]
    assert len(records) == 16 and max(records) < min(raw)  # every record goes before the raw chunks it needs


def test_cli_pack_du_and_gc_pack(model) -> None:
    registry, _ = model
    dry = run_cli("pack", "--dry-run", registry=registry)
    assert dry.exit_code == 0 and "would pack 16 chunks (16 as deltas, 0 alone)" in dry.stdout and "(estimated)" in dry.stdout
    done = run_cli("pack", "--json", registry=registry)
    document = json.loads(done.stdout)
    assert done.exit_code == 0 and document["packed"] == 16 and document["deepest"] == 4 and document["ratio"] < 0.6
    du = run_cli("du", registry=registry)
    assert "packed: " in du.stdout and "packing saved" in du.stdout
    assert json.loads(run_cli("du", "--json", registry=registry).stdout)["packing_saved"] > 0
    gc = run_cli("gc", "--pack", registry=registry)
    assert gc.exit_code == 0 and "packed 0 chunks" in gc.stdout and "16 already packed" in gc.stdout
    assert_clean_failure(run_cli("gc", "s3://bucket/x", "--pack", registry=registry), 2)
    assert run_cli("fsck", registry=registry).exit_code == 0


def test_a_store_newer_than_this_mreg_is_refused_on_open(model) -> None:
    registry, _ = model
    registry.pack()
    config = registry.root / "config"
    config.write_text(config.read_text().replace("formatversion = 2", "formatversion = 3"))
    with pytest.raises(MregError, match="format version 3, and this mreg reads versions up to 2: upgrade mreg"):
        Registry.open(registry.root)
    result = run_cli("show", "m", registry=registry)
    assert_clean_failure(result)
    assert "upgrade mreg" in result.stderr


def test_show_and_ls_of_a_packed_store_import_neither_numpy_nor_zstandard(model) -> None:
    registry, _ = model
    registry.pack()
    for args in (["show", "m@1.0.0"], ["ls"], ["log", "m"]):
        result, loaded = modules_loaded_by("--registry", str(registry.root), *args, cwd=registry.root.parent, prefixes=["numpy", "zstandard", "torch"])
        assert result.exit_code == 0, result.stderr
        assert loaded == [], (args, loaded)
