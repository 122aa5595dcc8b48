"""`mreg add` of a 500 MB `.safetensors` and `mreg path` of it (chunked), vs the floor (target: ratio <= 1.3).

The floor is a process that SHA-256s every byte once with hashlib and copies the
file (`common.hash_and_copy`: the kernel's copy), without fsync as the issue states
it, and with one fsync of the copy (what durability alone costs on this disk). mreg cuts the file into
tensor chunks, so it must hash each byte twice (each chunk's digest and the file's:
neither follows from the other), on two threads, write it, and make it durable before
it counts as stored; the second floor does what that needs at least, one read feeding
two hashlib hashes on two threads, then the copy (`common.hash_twice_and_copy`).
`mreg path` of a chunked file assembles it once into `.mreg/cache/`, hashing each byte once.

Runs are paired (floor, then mreg) and the ratio shown is the median per-pair ratio;
the CPU seconds of both are printed too, since on a shared machine wall time depends
on what else runs. The store is created before each timed add, untimed, as it exists
before a user adds to it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    children_cpu,
    compile_package,
    floor_command,
    mreg,
    report,
    run,
    safetensors_file,
    scratch,
)

SIZE = int(os.environ.get("MREG_BENCH_SIZE", 500 << 20))
PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", 7))


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one process."""
    cpu = children_cpu()
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, children_cpu() - cpu


def paired_commands(label: str, floor: list[str], ours: list[str], prepare, cwd: Path) -> None:  # type: ignore[no-untyped-def]
    """Run floor and mreg alternately; print wall medians, the per-pair ratio and CPU seconds."""
    floor_copy = Path(floor[4])
    rows: dict[str, list[float]] = {"floor": [], "ours": [], "ratio": [], "floor_cpu": [], "ours_cpu": []}
    for _ in range(PAIRS):
        wall, cpu = timed(floor, cwd)
        rows["floor"].append(wall)
        rows["floor_cpu"].append(cpu)
        floor_copy.unlink()  # its dirty pages are dropped, not written while mreg runs
        prepare()
        wall, cpu = timed(ours, cwd)
        rows["ours"].append(wall)
        rows["ours_cpu"].append(cpu)
        rows["ratio"].append(rows["ours"][-1] / rows["floor"][-1])
    median = {key: statistics.median(values) for key, values in rows.items()}
    report(label, median["ours"], median["floor"], "<= 1.3", ratio=median["ratio"])
    print(f"{'  ... CPU seconds, mreg vs floor':<52} mreg {median['ours_cpu']:8.3f} s   floor {median['floor_cpu']:8.3f} s")


def main() -> None:
    compile_package()
    with scratch("add") as root:
        source = safetensors_file(root / "model.safetensors", SIZE)
        plain = root / "model.bin"
        with open(plain, "wb") as stream:
            for _ in range(max(1, round(SIZE / (64 << 20)))):
                stream.write(os.urandom(min(SIZE, 64 << 20)))
        os.sync()
        destination = root / "copy.bin"
        store = root / "store"

        def fresh_store() -> None:
            shutil.rmtree(store, ignore_errors=True)
            mreg("init", str(store), cwd=root)

        megabytes = source.stat().st_size >> 20
        python = [sys.executable, "-m", "mreg"]
        add = [*python, "--registry", str(store), "add"]
        for passes, durable in ((1, False), (1, True), (2, False), (2, True)):
            floor = floor_command(source, destination, durable, passes)
            what = ("hash" if passes == 1 else "hash twice") + " + copy" + (" + fsync" if durable else "")
            paired_commands(f"add {megabytes} MB .safetensors vs {what}", floor, [*add, "big@1.0.0", str(source)], fresh_store, root)
        for durable in (False, True):
            what = "hash + copy" + (" + fsync" if durable else "")
            floor = floor_command(plain, destination, durable)
            paired_commands(f"add {plain.stat().st_size >> 20} MB .bin (one blob) vs {what}", floor, [*add, "plain@1.0.0", str(plain)], fresh_store, root)

        fresh_store()
        run([*add, "big@1.0.0", str(source)], cwd=root, stderr=subprocess.DEVNULL)
        cache = store / ".mreg" / "cache"
        for durable in (False, True):
            paired_commands(
                f"path of the chunked {megabytes} MB file, first time, vs {'hash + copy + fsync' if durable else 'hash + copy'}",
                floor_command(source, destination, durable),
                [*python, "--registry", str(store), "path", "big"],
                lambda: shutil.rmtree(cache, ignore_errors=True),
                root,
            )


if __name__ == "__main__":
    main()
