"""push, pull and clone of a 1 GiB model between directories vs the floor measured in
the same run: hashing every byte once with hashlib while copying it (target: ratio
<= 1.3 each), and a second pull of the same refs (target: transfers nothing, < 100 ms).

A transfer verifies every byte it copies (each chunk against its digest, the file
against its own: two SHA-256 passes, neither derivable from the other) and makes every
object durable (fsync) before its refs point at it. The second floor is what that
needs at least: each object hashed, the whole file hashed again on another thread
(both cores), and copied. ``cp -r`` and SHA-256 alone are printed too, for reference.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import SecondHash, absolute, best_of, mreg, paired, report, run, scratch

from mreg.pytorch.models import register
from mreg.registry import Registry

SIZE = int(os.environ.get("MREG_BENCH_SIZE", 1 << 30))
TENSOR = 16 << 20  # bytes per tensor: a model of 64 large tensors for 1 GiB


def hash_and_copy(blobs: list[Path], target: Path, passes: int = 1) -> None:
    """The floor: read each object once, hash it with hashlib, write it to a new file;
    with ``passes=2`` every byte also feeds one more hash on another thread (the whole file's)."""
    whole = SecondHash()
    target.mkdir()
    for number, blob in enumerate(blobs):
        hasher = hashlib.sha256()
        with open(blob, "rb") as stream, open(target / str(number), "wb") as out:
            while block := stream.read(4 << 20):
                hasher.update(block)
                if passes == 2:
                    whole.feed(block)
                out.write(block)
    whole.finish()
    shutil.rmtree(target)


def paired_floors(
    floors: dict[str, Callable[[], object]], ours: Callable[[], object], pairs: int, prepare: Callable[[], object]
) -> tuple[float, dict[str, tuple[float, float]]]:
    """Each floor, then mreg, ``pairs`` times: mreg's median, and per floor its median and the median per-round ratio."""
    times: dict[str, list[float]] = {name: [] for name in (*floors, "ours")}
    for _ in range(pairs):
        for name, floor in floors.items():
            started = time.perf_counter()
            floor()
            times[name].append(time.perf_counter() - started)
        prepare()
        started = time.perf_counter()
        ours()
        times["ours"].append(time.perf_counter() - started)
    ratios = {name: statistics.median(o / b for o, b in zip(times["ours"], times[name])) for name in floors}
    return statistics.median(times["ours"]), {name: (statistics.median(times[name]), ratios[name]) for name in floors}


def main() -> None:
    with scratch("pull") as root:
        source = Registry.init(root / "team")
        generator = torch.Generator().manual_seed(0)
        weights = {f"layer{i}.weight": torch.randn(TENSOR // 4, generator=generator) for i in range(SIZE // TENSOR)}
        register(source, "big@1.0.0", weights)
        blobs = [p for p in source.objects.objects_dir.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in blobs)
        print(f"   source: {len(blobs)} objects, {total / 2**20:.0f} MiB")
        os.sync()

        def floor() -> None:
            hash_and_copy(blobs, root / "floor")

        def fresh_store() -> None:
            shutil.rmtree(root / "laptop", ignore_errors=True)
            shutil.rmtree(root / "clone", ignore_errors=True)
            mreg("init", str(root / "laptop"), cwd=root)

        commands = {
            "pull": lambda: mreg("--registry", str(root / "laptop"), "pull", str(root / "team"), cwd=root),
            "push": lambda: mreg("--registry", str(root / "team"), "push", str(root / "laptop"), cwd=root),
            "clone": lambda: mreg("clone", str(root / "team"), str(root / "clone"), cwd=root),
        }
        floors = {"hash+copy": floor, "hash twice+copy": lambda: hash_and_copy(blobs, root / "floor", passes=2)}
        for verb, command in commands.items():
            ours, bases = paired_floors(floors, command, 3, prepare=fresh_store)
            for name, (base, ratio) in bases.items():
                report(f"{verb} {total >> 20} MiB model between directories vs {name}", ours, base, "<= 1.3", ratio=ratio)

        def copy() -> None:
            run(["cp", "-r", str(source.objects.objects_dir), str(root / "copy")])
            shutil.rmtree(root / "copy")

        def sha256_only() -> None:
            for blob in blobs:
                with open(blob, "rb") as stream:
                    hasher = hashlib.sha256()
                    while block := stream.read(4 << 20):
                        hasher.update(block)

        for name, function in (("cp -r", copy), ("sha256 alone", sha256_only)):
            mine, base, ratio = paired(floor, function, 3)
            report(f"  ({name} vs hash+copy, for reference)", mine, base, "-", ratio=ratio)
        shutil.rmtree(root / "laptop", ignore_errors=True)

        laptop = Registry.init(root / "laptop")
        laptop.pull(str(root / "team"))
        again = best_of(lambda: Registry.open(root / "laptop").pull(str(root / "team")), 11)
        transferred = laptop.pull(str(root / "team")).objects
        absolute(f"second pull, in-process ({transferred} objects copied)", 1000 * again, "< 100 ms")


if __name__ == "__main__":
    sys.exit(main())
