"""Queries over many versions: `log -n 20`, `ls --metric`, `ls --sort`, `ls`, `du` (target: < 100 ms in-process, < 250 ms as a command).

Two stores: 10,000 versions of one model, and 1,000 models of 3 versions each. They
are built with the real object store and ref tables (one manifest per version, every
version with an `acc` metric spread over 0..1), as adds would leave them. The first
query after building fills the metadata index (`.mreg/index.sqlite`) from the
manifests; that one-off cost is printed too, and so is the same query with the
index deleted before each run (what every query cost before the index existed).
Commands run as real processes, with mreg's bytecode compiled as pip would; the
start of a bare Python that imports click and msgpack is printed as a reference.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

from common import absolute, best_of, compile_package, scratch

from mreg.records.manifest import FileEntry, Lineage, Manifest
from mreg.records.refs import RefTable
from mreg.registry import Registry

VERSIONS = int(os.environ.get("MREG_BENCH_VERSIONS", 10_000))
MODELS = int(os.environ.get("MREG_BENCH_MODELS", 1_000))
LINEAGE = Lineage(created="2026-01-01T00:00:00Z", author="bench")


def version_of(i: int) -> str:
    return f"{i // 1000}.{(i // 10) % 100}.{i % 10}"


def build_model(registry: Registry, name: str, count: int, blob: FileEntry) -> None:
    """Write ``count`` manifests of ``name`` and a ref table (and log) that lists them all."""
    versions = {}
    for i in range(count):
        manifest = Manifest(name, version_of(i), (blob,), family="bench", metrics={"acc": i / count}, lineage=LINEAGE)
        versions[manifest.version] = registry.objects.add_bytes(manifest.encode()).digest
    with registry.refs.update(name, author="bench", message="", time="2026-01-01T00:00:00Z") as update:
        update.table = RefTable(versions, {"production": version_of(count // 2)}, version_of(count - 1))


HAS_MAX_COUNT = "limit" in inspect.signature(Registry.log).parameters  # False before -n existed


def newest_log(registry: Registry, name: str) -> list:
    """The newest 20 log entries (before ``-n`` existed: the whole log, cut)."""
    return registry.log(name, 20) if HAS_MAX_COUNT else registry.log(name)[:20]


def command_ms(root: Path, *args: str, repeat: int = 11) -> float:
    """The median wall time of ``mreg ARGS`` as a process, in ms."""
    command = [sys.executable, "-m", "mreg", "--registry", str(root), *args]
    return 1000 * best_of(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL), repeat)


def measure(label: str, root: Path, name: str, metric: str) -> None:
    fresh = lambda: Registry.open(root)  # noqa: E731 - nothing cached between runs
    started = time.perf_counter()
    fresh().query(name=name, metrics=[metric])
    fresh().disk_usage()
    print(f"   {label}: first queries fill the index: {1000 * (time.perf_counter() - started):.0f} ms (once)")
    queries = {
        f"log {name} -n 20": (lambda: newest_log(fresh(), name), ("log", name, "-n", "20") if HAS_MAX_COUNT else ("log", name)),
        f"ls {name} --metric {metric}": (lambda: fresh().query(name=name, metrics=[metric]), ("ls", name, "--metric", metric)),
        f"ls {name} --sort acc --limit 20": (lambda: fresh().query(name=name, sort="acc", limit=20), ("ls", name, "--sort", "acc", "--limit", "20")),
        "ls (every model's latest, no filter)": (lambda: fresh().models(), ("ls",)),
        "ls --metric (every model's latest)": (lambda: fresh().query(latest_only=True, metrics=[metric]), ("ls", "--metric", metric)),
        "du": (lambda: fresh().disk_usage(), ("du",)),
    }
    for query, (in_process, command) in queries.items():
        absolute(f"{label}: {query}", 1000 * best_of(in_process, 11), "< 100 ms")
        absolute(f"{label}: mreg {' '.join(command)} (command)", command_ms(root, *command), "< 250 ms")
    index = root / ".mreg" / "index.sqlite"

    def without_index() -> None:
        index.unlink(missing_ok=True)
        fresh().query(name=name, metrics=[metric])
        fresh().query(latest_only=True, metrics=[metric])

    absolute(f"{label}: both ls --metric without the index (every manifest)", 1000 * best_of(without_index, 3), "none")
    startup = [sys.executable, "-c", "import click, msgpack"]
    started = 1000 * best_of(lambda: subprocess.run(startup, check=True), 11)
    absolute(f"{label}: reference: python -c 'import click, msgpack'", started, "none")


def main() -> None:
    compile_package()
    with scratch("versions") as base:
        for label, models, count in (("10,000 versions", 1, VERSIONS), ("1,000 models", MODELS, 3)):
            root = base / label.replace(",", "").replace(" ", "-")
            registry = Registry.init(root)
            (root / "w.bin").write_bytes(b"w")
            stored = registry.objects.add_file(root / "w.bin")
            blob = FileEntry("w.bin", stored.digest, stored.size)
            started = time.perf_counter()
            for m in range(models):
                build_model(registry, f"team/model-{m:04d}" if models > 1 else "big/model", count, blob)
            print(f"   built {label} in {time.perf_counter() - started:.1f} s")
            measure(label, root, "big/model" if models == 1 else "team/model-0000", "acc>=0.5")


if __name__ == "__main__":
    main()
