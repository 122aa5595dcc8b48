"""`mreg serve`: server time of the models page with 1,000 models and of a model page with
1,000 versions (target: < 200 ms each), and `mreg show` start-up without the web stack.

Pages are timed inside the server process: the ASGI application is called directly, so
the figure is the server's own time (routing, reading refs and manifests, rendering),
without a client or the network. "cold" is the first request of a fresh process (every
manifest read from disk and verified); "warm" the median of later ones (manifests are
cached in memory: they never change).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import absolute, compile_package, paired, report, scratch

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
    from mreg import Registry
    from mreg.objects import FileEntry, Lineage, Manifest

    registry = Registry.init(root)
    lineage = Lineage(created="2026-01-01T00:00:00Z", author="bench", message="benchmark version")

    def manifest(name: str, version: str, **details: object) -> str:
        blob = registry.objects.add_bytes(f"{name}@{version}".encode())
        files = (FileEntry("weights.bin", blob.digest, blob.size),)
        return registry.objects.add_bytes(Manifest(name, version, files, lineage=lineage, **details).encode()).digest  # type: ignore[arg-type]

    def commit(name: str, versions: dict[str, str], tags: dict[str, str]) -> None:
        with registry.updating(name, author="bench", message="benchmark") as update:
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


def time_page(root: Path, path: str) -> tuple[float, float]:
    """(cold, warm) server time of one page, in seconds."""
    from mreg.web import create_app

    app = create_app(root)

    def once() -> float:
        started = time.perf_counter()
        assert asyncio.run(get(app, path)) == 200, path
        return time.perf_counter() - started

    cold = once()
    return cold, statistics.median(once() for _ in range(REPEAT))


def show_imports(root: Path) -> list[str]:
    """The web modules `mreg show` imports (there must be none)."""
    code = (
        "import runpy, sys; sys.argv = ['mreg', 'show', 'big@production']\n"
        "try: runpy.run_module('mreg', run_name='__main__')\n"
        "except SystemExit: pass\n"
        f"print(','.join(m for m in sys.modules if m.startswith({WEB_MODULES!r})), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=root.parent, capture_output=True, text=True, check=True)
    return [m for m in done.stderr.strip().splitlines()[-1].split(",") if m]


def main() -> None:
    compile_package()
    with scratch("web") as directory:
        directory = Path(sys.argv[1]) if len(sys.argv) > 1 else directory  # keep a registry to profile
        started = time.perf_counter()
        root = build(directory)
        print(f"built {MODELS} models and {VERSIONS} versions of one in {time.perf_counter() - started:.0f} s")
        for label, path in (("models page, 1,000 models", "/"), ("model page, 1,000 versions", "/m/big")):
            cold, warm = time_page(root, path)
            absolute(f"{label} (cold, first request)", cold * 1000, "< 200 ms")
            absolute(f"{label} (warm)", warm * 1000, "< 200 ms")
        imported = show_imports(root)
        print(f"web modules imported by 'mreg show': {', '.join(imported) or 'none'}")
        baseline = [sys.executable, "-c", "import click, msgpack"]
        show = [sys.executable, "-m", "mreg", "show", "big@production"]
        ours, base, ratio = paired(
            lambda: subprocess.run(baseline, cwd=directory, check=True, stdout=subprocess.DEVNULL),
            lambda: subprocess.run(show, cwd=directory, check=True, stdout=subprocess.DEVNULL),
            PAIRS,
        )
        report("mreg show REF (process wall time)", ours, base, "<= 1.5, as before", ratio=ratio)


if __name__ == "__main__":
    main()
