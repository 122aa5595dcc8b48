"""Packs end to end: `mreg pack` of full fine-tunes, their loads, and pushes.

ResNet-18 and 9 successive full fine-tunes (common.resnet_fine_tunes: SGD lr 1e-4,
momentum 0.9, 10 steps each on random 64x64 batches; every tensor changes, so chunk
dedup stores 1.00x) are registered with ``mreg.pytorch.register`` as ``resnet@1.N.0``.
Each target is printed with the baseline measured in the same run:

- ``mreg pack``: stored <= 0.6x of the registered bytes (the newest version raw), and
  <= 0.55x after ``mreg pack --all``; every version reads back bit for bit. Baselines:
  chunk dedup alone (1.00x) and zstd -1 of each whole file.
- a bf16 ResNet-18 with no parent, ``pack --all``: <= 0.75x.
- ``mreg pack`` (the command, a process) of the 10 versions: >= 150 MB/s of raw bytes
  packed, with plain zstd -1 of the same files on one thread alongside.
- ``load_state_dict`` of a packed version <= 2x ``torch.load`` of the same state dict
  from a file, paired run by run: the newest packed version (one delta against the raw
  newest), a standalone record (``--all``'s newest), and the oldest (the deepest chain);
  for the codec's ``min_plane_saving`` knob at its default (1/32) and at 1/6.
- push of the packed registry to an empty directory and to a bucket (moto's S3 server,
  its own process): bytes written <= 0.6x of the registered bytes.

Set ``MREG_BENCH_PACK_STATES`` to a directory to keep the fine-tunes as safetensors files
there between runs (building them takes minutes); ``MREG_BENCH_PAIRS`` sets the pairs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
import zstandard
from bench_bucket import BUCKET, start_server
from common import compile_package, paired, resnet_fine_tunes, scratch

from mreg.operations import packing
from mreg.pytorch import load_state_dict, register
from mreg.registry import Registry

VERSIONS = 10
PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", "15"))
MIB = 2**20


def states() -> list[dict[str, torch.Tensor]]:
    """The fine-tunes: built, or read back from ``MREG_BENCH_PACK_STATES``."""
    from safetensors.torch import load_file, save_file

    cache = os.environ.get("MREG_BENCH_PACK_STATES")
    files = [Path(cache) / f"resnet18-{n}.safetensors" for n in range(VERSIONS)] if cache else []
    if files and all(f.is_file() for f in files):
        return [load_file(str(f)) for f in files]
    started = time.perf_counter()
    built = resnet_fine_tunes(VERSIONS)
    print(f"built {VERSIONS} versions in {time.perf_counter() - started:.0f} s")
    for file, state in zip(files, built):
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(file))
    return built


def mreg(*args: str, registry: Path) -> dict:
    """Run an mreg command with --json as a process; its report."""
    done = subprocess.run([sys.executable, "-m", "mreg", "--registry", str(registry), *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def object_bytes(root: Path) -> int:
    """Bytes of every file under a store's objects/."""
    return sum(path.stat().st_size for path in (root / "objects").rglob("*") if path.is_file())


def bit_exact(registry: Registry, states: list[dict[str, torch.Tensor]]) -> bool:
    fresh = Registry(registry.root)
    for number, state in enumerate(states):
        loaded = load_state_dict(fresh, f"resnet@1.{number}.0")
        if loaded.keys() != state.keys() or not all(torch.equal(_bytes(loaded[k]), _bytes(state[k])) for k in state):
            return False
    return True


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)


def sizes(root: Path, states: list[dict[str, torch.Tensor]]) -> tuple[Registry, int]:
    """A registry of the versions (under ``root``), and its registered bytes."""
    registry = Registry.init(root)
    for number, state in enumerate(states):
        register(registry, f"resnet@1.{number}.0", state)
    return registry, registry.disk_usage().logical


def zstd_files(registry: Registry, versions: range) -> tuple[int, int]:
    """zstd -1 of each version's whole file, one thread: (raw bytes, compressed bytes)."""
    compressor = zstandard.ZstdCompressor(level=1)
    raw = packed = 0
    for number in versions:
        data = registry.path(f"resnet@1.{number}.0").read_bytes()
        raw += len(data)
        packed += len(compressor.compress(data))
    return raw, packed


def pack_speed(base: Path, registered: int) -> Path:
    """``mreg pack`` on fresh copies of the raw registry, paired with zstd -1 of the same files."""
    runs, zstd_runs, reports = [], [], []
    cold = range(VERSIONS - 1)
    for run in range(3):
        copy = base.parent / f"speed{run}"
        shutil.copytree(base, copy)
        subprocess.run(["sync"], check=True)
        started = time.perf_counter()
        raw, compressed = zstd_files(Registry(copy / ".mreg"), cold)
        zstd_runs.append((time.perf_counter() - started, raw, compressed))
        started = time.perf_counter()
        reports.append(mreg("pack", registry=copy / ".mreg"))
        runs.append(time.perf_counter() - started)
        if run < 2:
            shutil.rmtree(copy)
    packed_raw = reports[-1]["raw_bytes"]
    seconds = statistics.median(runs)
    zstd_seconds, raw, compressed = sorted(zstd_runs)[1]
    print(f"\nmreg pack (the command) of {VERSIONS} versions, 3 runs on fresh copies, load average {os.getloadavg()[0]:.1f}")
    print(f"  packed {packed_raw / MIB:.1f} MiB of raw chunks in {seconds:.2f} s (runs {', '.join(f'{r:.2f}' for r in runs)}): "
          f"{packed_raw / seconds / 1e6:.0f} MB/s  (target >= 150 MB/s)")
    print(f"  baseline zstd -1 of the same {raw / MIB:.1f} MiB of files, one thread: {raw / zstd_seconds / 1e6:.0f} MB/s, {compressed / raw:.3f}x")
    return base.parent / "speed2" / ".mreg"


def loads(label: str, registry: Registry, state: dict[str, torch.Tensor], refs: list[tuple[str, str]], plain: Path) -> None:
    """load_state_dict of each ref against torch.load of ``plain``, paired."""
    torch.save(state, plain)
    for name, ref in refs:
        ours, base, ratio = paired(partial(torch.load, plain, weights_only=True), partial(load_state_dict, registry, ref), PAIRS)
        print(f"  {label:<22} {name:<44} {ours * 1000:7.1f} ms vs torch.load {base * 1000:6.1f} ms  ratio {ratio:5.2f}  (target <= 2)")


def pushes(registry: Registry, registered: int, root: Path) -> None:
    target = Registry.init(root / "pushed")
    started = time.perf_counter()
    mreg("push", str(target.root.parent), registry=registry.root)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    shutil.copytree(registry.root / "objects", root / "copied")
    copy_seconds = time.perf_counter() - started
    written = object_bytes(target.root)
    print(f"\npush of the packed registry to an empty directory: {written / MIB:.1f} MiB written, {written / registered:.3f}x of registered (target <= 0.6x)")
    print(f"  {seconds:.2f} s; baseline: a copy of the objects directory {copy_seconds:.2f} s")
    import obstore
    from obstore.store import S3Store

    server, endpoint = start_server()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true")
    try:
        started = time.perf_counter()
        mreg("push", f"s3://{BUCKET}/packs", registry=registry.root)
        seconds = time.perf_counter() - started
        store = S3Store(BUCKET, client_options={"allow_http": True, "timeout": "600s"})
        listed = [meta for batch in obstore.list(store, "packs/objects/") for meta in batch]
        written = sum(int(meta["size"]) for meta in listed)
        print(f"push of the packed registry to a bucket (moto): {written / MIB:.1f} MiB in {len(listed)} objects, "
              f"{written / registered:.3f}x of registered (target <= 0.6x), {seconds:.1f} s")
    finally:
        server.kill()
        server.wait()


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    compile_package()
    versions = states()
    with scratch("pack") as root:
        raw_registry, registered = sizes(root / "raw", versions)
        print(f"\nregistered {VERSIONS} versions: {registered / MIB:.1f} MiB; stored {raw_registry.disk_usage().stored / MIB:.1f} MiB by chunk dedup alone "
              f"({raw_registry.disk_usage().stored / registered:.3f}x, the baseline)")
        raw, compressed = zstd_files(raw_registry, range(VERSIONS))
        print(f"baseline: zstd -1 of each whole file {compressed / raw:.3f}x")
        packed_root = pack_speed(raw_registry.root.parent, registered)
        packed = Registry(packed_root)
        usage = packed.disk_usage()
        print(f"\nafter mreg pack: stored {usage.stored / MIB:.1f} MiB = {usage.stored / registered:.3f}x of registered (target <= 0.6x); "
              f"every version bit-exact: {bit_exact(packed, versions)}")
        shutil.copytree(packed_root.parent, root / "all")
        everything = Registry(root / "all" / ".mreg")
        everything.pack(all=True)
        usage = everything.disk_usage()
        print(f"after mreg pack --all: stored {usage.stored / MIB:.1f} MiB = {usage.stored / registered:.3f}x (target <= 0.55x); "
              f"bit-exact: {bit_exact(everything, versions)}")

        variants = {}
        print("min_plane_saving (a byte plane zstd shrinks less is stored; default: 1/6 for deltas against a raw chunk, else 1/32):")
        for label, compact, fast in (("1/32 for every record", 1 / 32, 1 / 32), ("1/6 for every record", 1 / 6, 1 / 6)):
            shutil.copytree(raw_registry.root.parent, root / label.replace("/", "-").replace(" ", "_"))
            variants[label] = Registry(root / label.replace("/", "-").replace(" ", "_") / ".mreg")
            packing.MIN_PLANE_SAVING, packing.FAST_PLANE_SAVING = compact, fast
            variants[label].pack()
            usage = variants[label].disk_usage()
            print(f"  {label}: stored {usage.stored / registered:.3f}x; bit-exact: {bit_exact(variants[label], versions)}")
        packing.MIN_PLANE_SAVING, packing.FAST_PLANE_SAVING = 1 / 32, 1 / 6

        bf16 = Registry.init(root / "bf16")
        register(bf16, "resnet-bf16@1.0.0", {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in versions[-1].items()})
        bf16.pack(all=True)
        usage = bf16.disk_usage()
        print(f"bf16 ResNet-18, no parent, pack --all: {usage.stored / usage.logical:.3f}x (target <= 0.75x)")

        print(f"\nloads, paired with torch.load(weights_only=True) of the same state dict from a file ({PAIRS} pairs; load average {os.getloadavg()[0]:.1f})")
        plain = root / "plain.pt"
        newest = [("newest packed (1 delta, raw base)", "resnet@1.8.0")]
        loads("raw (the newest)", packed, versions[9], [("memory-mapped chunks", "resnet@1.9.0")], plain)
        loads("default", packed, versions[8], newest, plain)
        for label, registry in variants.items():
            loads(label[:22], registry, versions[8], newest, plain)
        loads("--all", everything, versions[9], [("standalone record (the newest)", "resnet@1.9.0")], plain)
        loads("default", packed, versions[5], [("a chain of 4 deltas", "resnet@1.5.0")], plain)
        loads("default", packed, versions[0], [("the oldest: a chain of 9 deltas", "resnet@1.0.0")], plain)
        pushes(packed, registered, root)
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
