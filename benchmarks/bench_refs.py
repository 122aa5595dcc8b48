"""`resolve` and `ls NAME` with 10,000 versions of one model, in-process (target: < 50 ms each).

The store is built with the real object store and ref table, one manifest per
version; building it through 10,000 `add` calls would only take longer. The last
line also times one real `add` on top of the 10,000 versions.
"""

from __future__ import annotations

import time

from common import absolute, best_of, scratch

from mreg.records.manifest import FileEntry, Lineage, Manifest
from mreg.records.refs import RefTable
from mreg.registry import Registry

VERSIONS = 10_000


def build(registry: Registry, blob: FileEntry) -> None:
    """Write 10,000 manifests and a ref table that lists them all, as adds would."""
    versions = {}
    for i in range(VERSIONS):
        version = f"{i // 1000}.{(i // 10) % 100}.{i % 10}"
        manifest = Manifest("big/model", version, (blob,), lineage=Lineage(created="2026-01-01T00:00:00Z", author="bench"))
        versions[version] = registry.objects.add_bytes(manifest.encode()).digest
    latest = max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))
    with registry.refs.update("big/model", author="bench", message="", time="2026-01-01T00:00:00Z") as update:
        update.table = RefTable(versions, {"production": "5.5.5"}, latest)


def main() -> None:
    with scratch("refs") as root:
        registry = Registry.init(root)
        (root / "w.bin").write_bytes(b"w")
        stored = registry.objects.add_file(root / "w.bin")
        started = time.perf_counter()
        build(registry, FileEntry("w.bin", stored.digest, stored.size))
        print(f"   built {VERSIONS} versions in {time.perf_counter() - started:.1f} s")
        fresh = lambda: Registry.open(root)  # noqa: E731 - nothing cached between runs
        absolute("resolve big/model@latest", 1000 * best_of(lambda: fresh().resolve("big/model"), 21), "< 50 ms")
        absolute("resolve big/model@3.4.5", 1000 * best_of(lambda: fresh().resolve("big/model@3.4.5"), 21), "< 50 ms")
        absolute("resolve big/model@production", 1000 * best_of(lambda: fresh().resolve("big/model@production"), 21), "< 50 ms")
        absolute("ls big/model (10,000 versions)", 1000 * best_of(lambda: fresh().versions("big/model"), 21), "< 50 ms")
        absolute("get big/model (manifest and tags)", 1000 * best_of(lambda: fresh().get("big/model"), 21), "< 50 ms")
        absolute("add one more version (rewrites the table)", 1000 * best_of(
            lambda: registry.add("big/model", [root / "w.bin"], bump="patch"), 5), "none")


if __name__ == "__main__":
    main()
