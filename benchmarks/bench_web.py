"""`mreg serve`: server time of the models page with 1,000 models and of a model page with
1,000 versions (targets: < 200 ms and < 100 ms), and `mreg show` start-up without the web stack.

Pages are timed inside the server process: the ASGI application is called directly, so
the figure is the server's own time (routing, reading refs and manifests, rendering),
without a client or the network. `mreg serve` reads every manifest once in a background
thread at start-up (manifests never change, so they stay cached); the first request of
a server without that warm-up reads and verifies each manifest it shows.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import absolute, compile_package, report, scratch, show_startup

MODELS = 1000
VERSIONS = 1000
REPEAT = 7
PAIRS = 31
WEB_MODULES = ("starlette", "uvicorn", "jinja2", "mreg.web")


def build(root: Path) -> Path:
    """A registry with MODELS one-version models and one model with VERSIONS versions.

    Manifests are written straight into the object store and each model's refs in one
    update: a thousand separate `add`s would spend minutes in fsync, which the pages
    being timed do not depend on.
    """
    from mreg.records.manifest import FileEntry, Lineage, Manifest
    from mreg.registry import Registry

    registry = Registry.init(root)
    lineage = Lineage(created="2026-01-01T00:00:00Z", author="bench", message="benchmark version")

    def manifest(name: str, version: str, **details: object) -> str:
        blob = registry.objects.add_bytes(f"{name}@{version}".encode())
        files = (FileEntry("weights.bin", blob.digest, blob.size),)
        return registry.objects.add_bytes(Manifest(name, version, files, lineage=lineage, **details).encode()).digest  # type: ignore[arg-type]

    def commit(name: str, versions: dict[str, str], tags: dict[str, str]) -> None:
        with registry.store.updating(name, author="bench", message="benchmark") as update:
            table = update.table
            for version, digest in versions.items():
                table = table.with_version(version, digest)  # type: ignore[arg-type]
            for tag, version in tags.items():
                table = table.with_tag(tag, version)
            update.table = table

    for i in range(MODELS):
        name = f"team/model-{i:04d}"
        commit(name, {"1.0.0": manifest(name, "1.0.0", family=f"family-{i % 7}", metrics={"acc": i / MODELS})}, {"production": "1.0.0"})
    metrics = lambda i: {"acc": (i % 97) / 97, "loss": 1 - (i % 89) / 89, "f1": i / VERSIONS}  # noqa: E731
    commit("big", {f"1.{i}.0": manifest("big", f"1.{i}.0", family="big", metrics=metrics(i)) for i in range(VERSIONS)}, {"production": "1.500.0"})
    registry.update_server_info()
    return registry.root


async def get(app, path: str) -> int:  # type: ignore[no-untyped-def]
    """Call the ASGI app for one GET; return the status (the body is consumed and dropped)."""
    status = 0
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080),
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def time_page(root: Path, path: str) -> dict[str, float]:
    """Server times of one page, in seconds: the first request of a server that skipped
    its start-up warm-up ("cold"), the warm-up itself, the first request after it, and
    the median of later requests ("warm")."""
    from mreg.web.app import Site, application
    from mreg.web.reader import ReadOnlyRegistry

    def once(app) -> float:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        assert asyncio.run(get(app, path)) == 200, path
        return time.perf_counter() - started

    cold = once(application(Site(ReadOnlyRegistry(root))))
    site = Site(ReadOnlyRegistry(root))
    started = time.perf_counter()
    site.warm_up()
    warm_up = time.perf_counter() - started
    app = application(site)
    first = once(app)
    return {"cold": cold, "warm-up": warm_up, "first": first, "warm": statistics.median(once(app) for _ in range(REPEAT))}


def show_imports(root: Path) -> list[str]:
    """The web modules `mreg show` imports (there must be none)."""
    code = (
        "import runpy, sys; sys.argv = ['mreg', 'show', 'big@production']\n"
        "try: runpy.run_module('mreg', run_name='__main__')\n"
        "except SystemExit: pass\n"
        f"print('WEB:' + ','.join(m for m in sys.modules if m.startswith({WEB_MODULES!r})), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=root.parent, capture_output=True, text=True, check=True)
    return [m for m in done.stderr.strip().splitlines()[-1].removeprefix("WEB:").split(",") if m]


def measure(directory: Path) -> None:
    """Build the registry in ``directory`` unless it is there already, and time it."""
    if not (directory / ".mreg").is_dir():
        started = time.perf_counter()
        build(directory)
        print(f"built {MODELS} models and {VERSIONS} versions of one in {time.perf_counter() - started:.0f} s")
    root = directory / ".mreg"
    for label, path, target in (("models page, 1,000 models", "/", "< 200 ms"), ("model page, 1,000 versions", "/m/big", "< 100 ms")):
        times = time_page(root, path)
        absolute(f"{label}: first request, no warm-up", times["cold"] * 1000, "none")
        absolute("  start-up warm-up (background thread)", times["warm-up"] * 1000, "none")
        absolute("  first request after the warm-up", times["first"] * 1000, target)
        absolute("  later requests (median)", times["warm"] * 1000, target)
    imported = show_imports(root)
    print(f"web modules imported by 'mreg show': {', '.join(imported) or 'none'}")
    ours, base, ratio = show_startup(directory, "big@production", PAIRS)
    report("mreg show REF (process wall time)", ours, base, "<= 1.5, as before", ratio=ratio)


def main() -> None:
    """``python bench_web.py [DIR]``: DIR keeps the registry between runs (building it takes minutes)."""
    compile_package()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        measure(Path(sys.argv[1]))
        return
    with scratch("web") as directory:
        measure(directory)


if __name__ == "__main__":
    main()
