"""Weight files crafted as attacks, diffs that once broke, and `.pt` files without torch."""

from __future__ import annotations

import io
import json
import pickle
import re
import struct
import subprocess
import sys
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from conftest import assert_clean_failure, run_cli, store_snapshot

from mreg import Blob, InvalidInputError, Registry
from mreg.pytorch import load_checkpoint, load_object, load_state_dict
from mreg.records.manifest import Manifest


def write_zip_checkpoint(path: Path, payload: bytes, storages: dict[str, bytes]) -> Path:
    """A zip checkpoint laid out as torch.save lays it out, with our own pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


class _Storage:
    """Pickles as torch's persistent reference to a float storage of ``numel`` elements."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


def crafted_pickle(obj: object) -> bytes:
    """Pickle ``obj`` (protocol 2, as torch.save) with each _Storage as a persistent storage reference."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, value: object) -> object:
            if isinstance(value, _Storage):
                return ("storage", torch.FloatStorage, value.key, "cpu", value.numel)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def rebuild(storage: _Storage, shape: tuple[int, ...], stride: tuple[int, ...], offset: int = 0, requires_grad: bool = False) -> object:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, requires_grad, OrderedDict())``."""

    class Rebuild:
        def __reduce__(self) -> tuple:
            return (torch._utils._rebuild_tensor_v2, (storage, offset, shape, stride, requires_grad, OrderedDict()))

    return Rebuild()


def legit_pickle_with(replace: dict[str, object]) -> bytes:
    """A state dict pickle naming a global of our choice through a REDUCE."""

    class Call:
        def __init__(self, function: object, args: tuple) -> None:
            self.function, self.args = function, args

        def __reduce__(self) -> tuple:
            return (self.function, self.args)

    return pickle.dumps({k: Call(*v) for k, v in replace.items()}, protocol=2)  # type: ignore[misc]


# --------------------------------------------------------------------- attacks


def refused_cleanly(registry: Registry, path: Path, *words: str) -> str:
    before = store_snapshot(registry)
    result = run_cli("add", "evil@1.0.0", str(path), registry=registry)
    assert_clean_failure(result, code=2)
    assert result.stderr.count("\n") == 1, result.stderr  # one line: no torch warning before it
    for word in words:
        assert word in result.stderr
    assert store_snapshot(registry) == before
    with pytest.raises(InvalidInputError):
        load_checkpoint(path)
    with pytest.raises(InvalidInputError):  # the Python API checks as the CLI does
        registry.add("evil@1.0.0", [path])
    assert store_snapshot(registry) == before
    return result.stderr


def test_a_pickle_that_calls_a_function_is_refused_and_never_run(registry: Registry, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = legit_pickle_with({"w": (Path.write_text, (marker, "executed"))})
    path = write_zip_checkpoint(tmp_path / "in" / "evil.pt", payload, {})
    stderr = refused_cleanly(registry, path, "weights_only", "GLOBAL")
    assert not marker.exists(), stderr
    legacy = tmp_path / "in" / "legacy.pt"
    legacy.write_bytes(b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})) + payload)
    refused_cleanly(registry, legacy, "weights_only")
    assert not marker.exists()


def test_eval_and_system_are_refused(registry: Registry, tmp_path: Path) -> None:
    import os

    for function in (eval, os.system):
        payload = legit_pickle_with({"w": (function, ("1",))})
        refused_cleanly(registry, write_zip_checkpoint(tmp_path / "in" / "x.pt", payload, {}), "weights_only")


def test_a_tensor_reaching_past_its_storage_is_refused(registry: Registry, tmp_path: Path) -> None:
    valid = write_zip_checkpoint(tmp_path / "in" / "ok.pt", crafted_pickle({"w": rebuild(_Storage("0", 3), (3,), (1,))}), {"0": bytes(12)})
    assert torch.equal(load_checkpoint(valid)["w"], torch.zeros(3))  # the crafting itself is sound
    payload = crafted_pickle({"w": rebuild(_Storage("0", 3), (1000,), (1,))})
    path = write_zip_checkpoint(tmp_path / "in" / "oob.pt", payload, {"0": bytes(12)})
    refused_cleanly(registry, path, "past the end of storage")


def test_containers_nested_without_end_are_refused(registry: Registry, tmp_path: Path) -> None:
    deep: list = []
    for _ in range(300):
        deep = [deep]
    cycle: list = []
    cycle.append(cycle)
    for name, obj in (("deep", deep), ("cycle", cycle)):
        path = write_zip_checkpoint(tmp_path / "in" / f"{name}.pt", pickle.dumps({"x": obj, "w": 1}, protocol=2), {})
        refused_cleanly(registry, path, "deep")


def test_a_damaged_zip_directory_never_crashes(registry: Registry, tmp_path: Path) -> None:
    end_record = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, 46, 10, 0)  # a directory that is not there
    for name, head in (("data.bin", b""), ("model.pt", b"PK\x03\x04")):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(head + b"x" * 200 + end_record)
        result = run_cli("add", f"d{len(head)}@1.0.0", str(path), registry=registry)
        if name.endswith(".pt"):
            assert_clean_failure(result, code=2)
            assert "damaged zip archive" in result.stderr
        else:
            assert result.exit_code == 0, result.stderr
        written = run_cli("hash-object", "-w", str(path), registry=registry)
        assert written.exit_code == 0, written.stderr
    assert registry.fsck().ok


def test_metadata_describes_the_bytes_stored_not_a_first_read(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mreg.operations.register as registration

    path = tmp_path / "in" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(2)}, path)
    original_store = registration.store_file

    def store_after_a_change(store, item, progress, cuts):  # type: ignore[no-untyped-def]
        torch.save({"w": torch.zeros(5), "b": torch.zeros(1)}, path)  # the file changes after it was checked
        return original_store(store, item, progress, cuts)

    monkeypatch.setattr(registration, "store_file", store_after_a_change)
    registry.add("m@1.0.0", [path])
    properties = registry.get("m").manifest.properties
    assert properties["weights"]["tensors"] == 2 and properties["parameters"] == 6
    assert set(load_state_dict(registry, "m")) == {"w", "b"}


# ------------------------------------------------------------------------ diff


def two_versions(registry: Registry, tmp_path: Path, old: dict, new: dict, name: str = "m") -> dict:
    for version, content in (("1.0.0", old), ("2.0.0", new)):
        path = tmp_path / name / version / "model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(content, path)
        registry.add(f"{name}@{version}", [path])
    result = run_cli("diff", f"{name}@1.0.0", f"{name}@2.0.0", "--json", registry=registry)
    assert result.exit_code == 0, result.stderr
    text = run_cli("diff", f"{name}@1.0.0", f"{name}@2.0.0", registry=registry)
    assert text.exit_code == 0, text.stderr
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON: {c}"))
    return {c["name"]: c for c in report["files"][0]["tensors"]["changed"]} | {"_text": text.stdout}


def test_diff_compares_nan_and_inf_by_position(registry: Registry, tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    changed = two_versions(registry, tmp_path, {"w": torch.tensor([nan, inf, 1.0, 2.0])}, {"w": torch.tensor([nan, inf, 2.0, 2.0])})
    assert changed["w"]["max_abs_diff"] == 1.0 and changed["w"]["nonfinite_changed"] == 0
    moved = two_versions(registry, tmp_path, {"w": torch.tensor([nan, 1.0])}, {"w": torch.tensor([1.0, inf])}, name="moved")
    assert moved["w"]["max_abs_diff"] is None and moved["w"]["nonfinite_changed"] == 2
    assert "nan" not in moved["_text"].lower().replace("nan/inf", "")


def test_diff_compares_integers_exactly(registry: Registry, tmp_path: Path) -> None:
    big = 2**62
    old = {"i": torch.tensor([big, -big]), "u": torch.tensor([0], dtype=torch.int64)}
    changed = two_versions(registry, tmp_path, old, {"i": torch.tensor([big + 1, big]), "u": torch.tensor([7])})
    assert changed["i"]["max_abs_diff"] == 2 * big
    assert changed["u"]["max_abs_diff"] == 7


def test_diff_of_sparse_and_nested_checkpoints(registry: Registry, tmp_path: Path) -> None:
    coo = torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0], (4,))
    old = {"model": {"w": torch.ones(2), "s": coo}, "optimizer": {"state": {0: {"step": torch.tensor(1.0)}}}, "epoch": 3}
    new = {"model": {"w": torch.ones(2), "s": coo * 3}, "optimizer": {"state": {0: {"step": torch.tensor(2.0)}}}, "epoch": 4}
    changed = two_versions(registry, tmp_path, old, new)
    assert changed["model.s"]["max_abs_diff"] == 4.0
    assert changed["optimizer.state.0.step"]["max_abs_diff"] == 1.0
    assert changed["epoch"]["max_abs_diff"] == 1
    assert "model.w" not in changed


# --------------------------------------------------------------- without torch

NO_TORCH = """
import runpy, sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed (blocked by the test)")

sys.meta_path.insert(0, Blocker())
sys.argv = ["mreg", *sys.argv[1:]]
runpy.run_module("mreg", run_name="__main__")
"""


def run_without_torch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_pt_files_are_added_shown_and_diffed_without_torch(registry: Registry, tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2), "t": torch.arange(6.0).reshape(2, 3).t()}
    for version in ("1.0.0", "2.0.0"):
        path = tmp_path / version / "model.pt"
        path.parent.mkdir()
        torch.save({**state, "b": state["b"] + (version == "2.0.0")}, path, _use_new_zipfile_serialization=version == "1.0.0")
        added = run_without_torch(tmp_path, "add", f"m@{version}", str(path))
        assert added.returncode == 0, added.stderr
    shown = run_without_torch(tmp_path, "show", "m@1.0.0", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["properties"]["weights"] == {"tensors": 3, "bytes": 56, "dtypes": {"float32": 3}}
    diffed = run_without_torch(tmp_path, "diff", "m@1.0.0", "m@2.0.0", "--json")
    assert diffed.returncode == 0, diffed.stderr
    tensors = json.loads(diffed.stdout)["files"][0]["tensors"]
    assert [c["name"] for c in tensors["changed"]] == ["b"] and tensors["unchanged"] == 2
    assert tensors["changed"][0]["max_abs_diff"] == 1.0  # measured in Python for common dtypes
    evil = tmp_path / "evil.pt"
    write_zip_checkpoint(evil, legit_pickle_with({"w": (print, ("x",))}), {})
    refused = run_without_torch(tmp_path, "add", "evil@1.0.0", str(evil))
    assert refused.returncode == 2 and refused.stderr.startswith("mreg: error: refused"), refused.stderr


def test_adding_a_pt_file_does_not_import_torch(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, path)
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mreg", "add", "m@1.0.0", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import time:")]
    assert "mreg.formats.checkpoints" in imported and not any(m == "torch" or m.startswith("torch.") for m in imported)


def test_users_import_torchvision_after_the_opt_in_hook() -> None:
    code = "import mreg.pytorch; mreg.pytorch.install_import_hook(); import torchvision; print(torchvision.models.resnet18().fc.out_features)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and completed.stdout.strip() == "1000", completed.stderr


def test_importing_the_adapter_leaves_how_other_code_imports_alone() -> None:
    code = "import sys; before = list(sys.meta_path); import mreg.pytorch; print(sys.meta_path == before, 'torchvision' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and completed.stdout.split() == ["True", "False"], completed.stderr


def test_damaged_checkpoints_fail_only_with_mreg_errors(tmp_path: Path) -> None:
    """Seeded byte flips in the pickle, the local headers and the zip directory."""
    import random

    from mreg.formats.cuts import file_cuts

    original = tmp_path / "original.pt"
    views_and_more = {"w": torch.arange(6.0).reshape(2, 3), "n": {"t": (torch.ones(2).t(),), "x": [1, None]}, "p": torch.nn.Parameter(torch.ones(2))}
    torch.save(views_and_more, original)
    pristine = original.read_bytes()
    legacy = tmp_path / "legacy.pt"
    torch.save(views_and_more, legacy, _use_new_zipfile_serialization=False)
    flipped = tmp_path / "flipped.pt"
    generator = random.Random(0)
    for round_ in range(300):
        data = bytearray(pristine if round_ % 3 else legacy.read_bytes())
        for _ in range(generator.randint(1, 3)):
            where = len(data) - 1 - generator.randrange(min(len(data), 1200)) if round_ % 2 else generator.randrange(len(data))
            data[where] = generator.randrange(256)
        flipped.write_bytes(bytes(data))
        file_cuts(flipped, len(data))  # never raises: a damaged zip is merely not cut
        try:
            load_checkpoint(flipped)
        except InvalidInputError:
            pass


def test_diff_json_stays_valid_when_a_metric_delta_overflows(registry: Registry, make_file) -> None:
    registry.add("m@1.0.0", [make_file("a.txt", "a")], metrics={"loss": -1e308})
    registry.add("m@2.0.0", [make_file("b.txt", "b")], metrics={"loss": 1e308})
    result = run_cli("diff", "m@1.0.0", "m@2.0.0", "--json", registry=registry)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON: {c}"))
    assert report["metrics"] == [{"name": "loss", "old": -1e308, "new": 1e308, "delta": None}]


@pytest.mark.parametrize("options", [{}, {"_use_new_zipfile_serialization": False}])
def test_the_torch_free_comparer_agrees_with_the_torch_one(registry: Registry, tmp_path: Path, options: dict) -> None:
    from mreg.operations.raw_compare import compare_raw
    from mreg.pytorch.compare import compare_weight_files

    base = torch.arange(12.0).reshape(3, 4)
    old = {
        "w": base,
        "view": base[:, ::2],
        "i": torch.tensor([2**62, 0]),
        "h": torch.ones(3, dtype=torch.float16),
        "n": {"x": torch.tensor([float("nan"), 1.0]), "epoch": 3},
    }
    new = {
        "w": base + 0.5,
        "view": base[:, ::2],
        "i": torch.tensor([2**62 + 5, 0]),
        "h": torch.ones(3, dtype=torch.float16) * 3,
        "n": {"x": torch.tensor([float("nan"), float("inf")]), "epoch": 3},
    }
    for version, content in (("1.0.0", old), ("2.0.0", new)):
        path = tmp_path / version / "model.pt"
        path.parent.mkdir()
        torch.save(content, path, **options)
        registry.add(f"m@{version}", [path])
    entries = registry.file_entry("m@1.0.0"), registry.file_entry("m@2.0.0")
    with_torch, without = compare_weight_files(registry.store, *entries), compare_raw(registry.store, *entries)
    assert with_torch.to_dict() == without.to_dict()
    assert {c.old.name: c.max_abs_diff for c in without.changed} == {"w": 0.5, "i": 5, "h": 2.0, "n.x": None}


# ------------------------------------------------------- files built to hang or crash
# Each file once hung a reader, exhausted its memory, or crashed it (exit 70, or a
# segmentation fault). Whichever command or function reads it, the answer is one
# `mreg: error:` line, exit 2, within seconds.

LEGACY_HEADER = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


def within(seconds: float, function: Callable[[], Any]) -> Any:
    """``function()``, failing the test (not hanging it) if it runs longer than ``seconds``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def shared_tuples(depth: int, leaf: bytes = b"N") -> bytes:
    """A pickle of ``depth`` tuples, each holding the previous one twice: ``depth`` objects, 2**depth paths."""
    return b"\x80\x02" + leaf + b"q\x00h\x00\x86" * depth + b"."


def safetensors_file(path: Path, header: dict | bytes, body: bytes = b"") -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def long_storage(pickled: bytes) -> bytes:
    """The pickle with its float storages made int64 storages."""
    return pickled.replace(b"FloatStorage", b"LongStorage")


def huge_directory(path: Path) -> Path:
    """A zip checkpoint whose central directory holds 400 000 empty members (17 MiB)."""
    write_zip_checkpoint(path, pickle.dumps({}, protocol=2), {})
    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"x"
    (offset,) = struct.unpack_from("<L", data, end + 16)
    extra = 400_000
    directory = data[offset:end] + entry * extra
    record = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(directory), offset, 0)
    path.write_bytes(data[:offset] + directory + record)
    return path


def negative_offset(path: Path) -> Path:
    """A zip checkpoint whose directory puts the storage's local header 1000 bytes before the archive."""
    write_zip_checkpoint(path, crafted_pickle({"w": rebuild(_Storage("0", 1), (1,), (1,))}), {"0": bytes(4)})
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    (start,) = struct.unpack_from("<L", data, end + 16)
    struct.pack_into("<L", data, end + 16, start + 1000)  # zipfile subtracts the 1000 from every member
    entry = start
    while data[entry : entry + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<3H", data, entry + 28)
        name = bytes(data[entry + 46 : entry + 46 + name_length])
        (offset,) = struct.unpack_from("<L", data, entry + 42)
        struct.pack_into("<L", data, entry + 42, 0 if name == b"archive/data/0" else offset + 1000)
        entry += 46 + name_length + extra_length + comment_length
    path.write_bytes(bytes(data))
    return path


def craft(kind: str, path: Path) -> Path:
    """The hostile file ``kind`` at ``path``."""
    four = _Storage("0", 1)
    if kind == "long4-negative.pt":  # LONG4 with a length of -5: the reader stepped back forever
        return write_zip_checkpoint(path, b"\x80\x02\x8b" + struct.pack("<i", -5) + b".", {})
    if kind == "long4-negative-legacy.pt":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(LEGACY_HEADER + b"\x80\x02\x8b" + struct.pack("<i", -5) + b".")
        return path
    if kind == "shared-tensors.pt":  # 2**40 paths to one tensor
        tensor = crafted_pickle(rebuild(four, (1,), (1,)))[2:-1]
        return write_zip_checkpoint(path, shared_tuples(40, tensor), {"0": bytes(4)})
    if kind == "deep-key.pt":  # a dict key nested a million deep: hashing it overflowed the C stack
        return write_zip_checkpoint(path, b"\x80\x02}N" + b"\x85" * 1_000_000 + b"Ns.", {})
    if kind == "size-over-int64.pt":
        return write_zip_checkpoint(path, crafted_pickle({"w": rebuild(four, (0, 2**70), (1, 1))}), {"0": bytes(4)})
    if kind == "stride-over-int64.pt":
        return write_zip_checkpoint(path, crafted_pickle({"w": rebuild(four, (1, 1), (2**70, 1))}), {"0": bytes(4)})
    if kind == "elements-over-int64.pt":
        return write_zip_checkpoint(path, crafted_pickle({"w": rebuild(four, (2**40, 2**40), (0, 0))}), {"0": bytes(4)})
    if kind == "storage-over-int64.pt":
        return write_zip_checkpoint(path, crafted_pickle({"w": rebuild(_Storage("0", 2**62), (1,), (1,))}), {"0": bytes(4)})
    if kind == "integer-gradients.pt":
        payload = long_storage(crafted_pickle({"w": rebuild(four, (1,), (1,), requires_grad=True)}))
        return write_zip_checkpoint(path, payload, {"0": bytes(8)})
    if kind == "legacy-zero-elements.pt":  # a storage of 8 bytes announced as 0 elements: a division by zero
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
        data = path.read_bytes()
        path.write_bytes(data[:-16] + bytes(8) + data[-8:])
        return path
    if kind == "bad-deflate.pt":  # zlib's own error escaped the zip errors
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2), compress_type=zipfile.ZIP_DEFLATED)
        data = bytearray(path.read_bytes())
        data[30 + len("archive/data.pkl")] = 0xFF  # a deflate block of the reserved type
        path.write_bytes(bytes(data))
        return path
    if kind == "bzip2-pickle.pt":  # bzip2 members inflate without a bound
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2), compress_type=zipfile.ZIP_BZIP2)
        return path
    if kind == "negative-offset.pt":  # read from a store, the storage was mapped from before the file's start
        return negative_offset(path)
    if kind == "huge-directory.pt":
        return huge_directory(path)
    if kind == "deep.safetensors":  # json.loads raised RecursionError
        return safetensors_file(path, b"[" * 100_000 + b"]" * 100_000)
    if kind == "shape-over-int64.safetensors":
        return safetensors_file(path, {"w": {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}})
    if kind == "strides-over-int64.safetensors":  # no element, but torch's strides overflow
        return safetensors_file(path, {"w": {"dtype": "F32", "shape": [0, 2**62, 4], "data_offsets": [0, 0]}})
    if kind == "short.safetensors":  # shorter than its 8-byte length: the loader read past its last segment
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x10\0\0")
        return path
    if kind == "dtype-list.safetensors":
        return safetensors_file(path, {"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    raise AssertionError(kind)


HOSTILE = {
    "long4-negative.pt": "integer of -5 bytes",
    "long4-negative-legacy.pt": "integer of -5 bytes",
    "shared-tensors.pt": "expand to more than",
    "deep-key.pt": "dict key or set member",
    "size-over-int64.pt": "2**63-1",
    "stride-over-int64.pt": "2**63-1",
    "elements-over-int64.pt": "more than 2**63-1 bytes",
    "storage-over-int64.pt": "more bytes than 2**63-1",
    "integer-gradients.pt": "requires gradients",
    "legacy-zero-elements.pt": "announces 0 elements",
    "bzip2-pickle.pt": "compressed in a way",
    "bad-deflate.pt": "damaged zip archive",
    "huge-directory.pt": "central directory",
    "negative-offset.pt": "negative offset",
    "deep.safetensors": "nested more than",
    "shape-over-int64.safetensors": "2**63-1",
    "strides-over-int64.safetensors": "2**63-1",
    "dtype-list.safetensors": "unknown dtype",
    "short.safetensors": "shorter than 8 bytes",
}


@pytest.mark.parametrize("kind", sorted(set(HOSTILE) - {"short.safetensors"}))  # add always refused that one
def test_mreg_add_refuses_each_hostile_file_in_one_line(registry: Registry, tmp_path: Path, kind: str) -> None:
    path = craft(kind, tmp_path / "in" / kind)
    before = store_snapshot(registry)
    result = within(60, lambda: run_cli("add", "evil@1.0.0", str(path), registry=registry))
    assert_clean_failure(result, code=2)
    assert HOSTILE[kind] in result.stderr, result.stderr
    with pytest.raises(InvalidInputError, match=re.escape(HOSTILE[kind])):  # the Python API checks as the CLI does
        within(60, lambda: registry.add("evil@1.0.0", [path]))
    assert store_snapshot(registry) == before


def plant(registry: Registry, spec: str, path: Path) -> None:
    """Register ``path`` under its own name as ``spec`` without the checks of `add` (as a store
    written by another program, or pulled from one, would hold it)."""
    name, version = spec.split("@")
    registry.add(spec, [Blob("placeholder.bin", lambda: [path.read_bytes()])])
    manifest = registry.manifest(registry.resolve(spec))
    forged = Manifest(**{**manifest.__dict__, "files": (manifest.files[0]._replace(path=path.name),)})
    digest = registry.objects.add_bytes(forged.encode()).digest
    (registry.root / "models" / name / "_refs").write_text(f"# mreg refs 1\nversion {version} {digest}\nlatest {version}\n")


def good_twin(kind: str, path: Path) -> Path:
    """A valid file of the same kind and name, to diff the hostile one against."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind.endswith(".safetensors"):
        return safetensors_file(path, {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    torch.save({"w": torch.zeros(1)}, path)
    return path


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_stored_hostile_file_fails_diff_and_load_in_one_line(registry: Registry, tmp_path: Path, kind: str) -> None:
    from mreg.operations.raw_compare import compare_raw
    from mreg.web.pages import compare_page
    from mreg.web.reader import ReadOnlyRegistry

    plant(registry, "evil@1.0.0", craft(kind, tmp_path / "in" / kind))
    registry.add("good@1.0.0", [good_twin(kind, tmp_path / "good" / kind)])
    shown = run_cli("show", "evil@1.0.0", registry=registry)
    assert shown.exit_code == 0 and kind in shown.stdout, shown
    diffed = within(60, lambda: run_cli("diff", "good@1.0.0", "evil@1.0.0", registry=registry))
    assert_clean_failure(diffed, code=2)
    assert HOSTILE[kind] in diffed.stderr, diffed.stderr
    with pytest.raises(InvalidInputError, match=re.escape(HOSTILE[kind])):  # the diff without torch
        within(60, lambda: compare_raw(registry.store, registry.file_entry("good@1.0.0"), registry.file_entry("evil@1.0.0")))
    page = within(60, lambda: compare_page(ReadOnlyRegistry(registry.root), "good@1.0.0", "evil@1.0.0"))
    assert HOSTILE[kind] in page["note"]  # the web compare page shows the rest, and says why not tensors
    loading = "not a state dict" if kind == "shared-tensors.pt" else HOSTILE[kind]  # built once, it is a tuple
    with pytest.raises(InvalidInputError, match=re.escape(loading)):
        within(60, lambda: load_state_dict(registry, "evil"))


@pytest.mark.parametrize("kind", ["deep.safetensors", "long4-negative.pt", "huge-directory.pt"])
def test_pulling_a_hostile_file_stores_it_and_its_diff_fails_cleanly(registry: Registry, tmp_path: Path, kind: str) -> None:
    source = Registry.init(tmp_path / "source")
    plant(source, "evil@1.0.0", craft(kind, tmp_path / "in" / kind))
    pulled = within(60, lambda: run_cli("pull", str(source.root.parent), "evil", registry=registry))
    assert pulled.exit_code == 0, pulled  # a pull copies bytes; reading them is what refuses
    registry.add("good@1.0.0", [good_twin(kind, tmp_path / "good" / kind)])
    assert_clean_failure(within(60, lambda: run_cli("diff", "good@1.0.0", "evil@1.0.0", registry=registry)), code=2)


def test_a_checkpoint_of_shared_containers_is_read_in_linear_time(registry: Registry, tmp_path: Path) -> None:
    """torch.load reads 40 tuples that each hold the previous one twice at once; so does mreg (but no diff lists 2**40 paths)."""
    path = write_zip_checkpoint(tmp_path / "in" / "shared.pt", shared_tuples(40), {})
    assert within(60, lambda: run_cli("add", "shared@1.0.0", str(path), registry=registry)).exit_code == 0
    assert registry.get("shared").manifest.properties["weights"]["tensors"] == 0
    loaded = within(60, lambda: load_object(registry, "shared"))
    assert loaded[0] is loaded[1] and torch.load(path, weights_only=True)[0] is not None  # shared, as torch.load shares
    with pytest.raises(InvalidInputError, match="not a state dict"):
        within(60, lambda: load_state_dict(registry, "shared"))
    registry.add("other@1.0.0", [good_twin("x.pt", tmp_path / "good" / "shared.pt")])
    diffed = within(60, lambda: run_cli("diff", "other@1.0.0", "shared@1.0.0", registry=registry))
    assert_clean_failure(diffed, code=2)
    assert "expand to more than" in diffed.stderr


def test_a_view_repeating_its_storage_is_diffed_without_copying_it(registry: Registry, tmp_path: Path) -> None:
    """A stride-0 view of 2**36 elements over 4 bytes is valid (torch.load accepts it); the diff compares how it views, not 256 GiB."""
    for version, value in (("1.0.0", 0), ("2.0.0", 1)):
        payload = crafted_pickle({"w": rebuild(_Storage("0", 1), (2**36,), (0,)), "b": rebuild(_Storage("1", 1), (1,), (1,))})
        path = write_zip_checkpoint(tmp_path / version / "model.pt", payload, {"0": bytes(4), "1": struct.pack("<f", value)})
        registry.add(f"m@{version}", [path])
    assert load_state_dict(registry, "m")["w"].shape == (2**36,)
    diffed = within(60, lambda: run_cli("diff", "m@1.0.0", "m@2.0.0", "--json", registry=registry))
    assert diffed.exit_code == 0, diffed
    tensors = json.loads(diffed.stdout)["files"][0]["tensors"]
    assert [c["name"] for c in tensors["changed"]] == ["b"] and tensors["unchanged"] == 1


def test_views_whose_sizes_add_up_beyond_int64_are_refused_by_add(registry: Registry, tmp_path: Path) -> None:
    """64 views of 2**60 elements over one 4-byte storage: each valid, their sum beyond what a manifest stores."""
    payload = crafted_pickle({f"w{i}": rebuild(_Storage("0", 1), (2**30, 2**30), (0, 0)) for i in range(64)})
    path = write_zip_checkpoint(tmp_path / "in" / "views.pt", payload, {"0": bytes(4)})
    result = run_cli("add", "views@1.0.0", str(path), registry=registry)
    assert_clean_failure(result, code=2)
    assert "more than a manifest records" in result.stderr


def test_a_checkpoint_naming_an_unknown_device_fails_to_load_in_one_line(registry: Registry, tmp_path: Path) -> None:
    """Device names are kept as text when described (torch builds know different devices); building one fails cleanly."""

    class Device:
        def __reduce__(self) -> tuple:
            return (torch.device, ("nonsense",))

    path = write_zip_checkpoint(tmp_path / "in" / "device.pt", pickle.dumps({"where": Device()}, protocol=2), {})
    registry.add("dev@1.0.0", [path])
    registry.add("other@1.0.0", [good_twin("x.pt", tmp_path / "good" / "device.pt")])
    with pytest.raises(InvalidInputError, match="unknown device nonsense"):
        load_object(registry, "dev")
    diffed = run_cli("diff", "other@1.0.0", "dev@1.0.0", registry=registry)
    assert_clean_failure(diffed, code=2)
