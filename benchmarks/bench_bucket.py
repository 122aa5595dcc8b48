"""Push and pull of a 1 GiB model to and from a local S3 server (moto, its own process)
vs obstore uploading / downloading the same bytes as one object (target: ratio <= 1.3
each, paired runs), and a second push and pull of three models (target: < 200 ms), as
commands paired with Python's start-up (``python bench_bucket.py second``: only those).

The server is the bottleneck of both sides (moto is Python), so the ratios say what
mreg adds to moving the bytes: hashing, HEAD checks, one object per tensor, refs.
The baseline download is fsynced, as every object a pull stores is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
import torch
from common import (
    SecondHash,
    absolute,
    best_of,
    compile_package,
    mreg,
    paired,
    report,
    scratch,
    startup_pairs,
)
from obstore.store import S3Store

from mreg.pytorch.models import register
from mreg.registry import Registry

SIZE = int(os.environ.get("MREG_BENCH_SIZE", 1 << 30))
TENSOR = 16 << 20
BUCKET = "bench"
PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", 15))


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=1).close()
            return server, endpoint
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto server did not start")


def clear(store: S3Store, prefix: str) -> None:
    """Delete every key under ``prefix`` (the server keeps objects in memory)."""
    paths = [meta["path"] for batch in obstore.list(store, prefix) for meta in batch]
    for start in range(0, len(paths), 1000):
        obstore.delete(store, paths[start : start + 1000])


def main() -> None:
    server, endpoint = start_server()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true"
    )
    store = S3Store(BUCKET, client_options={"allow_http": True, "timeout": "600s"})  # moto completes 1 GiB slowly
    compile_package()
    try:
        with scratch("bucket") as root:
            if sys.argv[1:] != ["second"]:  # `python bench_bucket.py second`: only the transfers that move nothing
                run(root, store)
            second_transfers(root)
    finally:
        server.terminate()
        server.wait()


def run(root: Path, store: S3Store) -> None:
    team = Registry.init(root / "team")
    generator = torch.Generator().manual_seed(0)
    weights = {f"layer{i}.weight": torch.randn(TENSOR // 4, generator=generator) for i in range(SIZE // TENSOR)}
    register(team, "big@1.0.0", weights)
    whole = root / "whole.safetensors"
    shutil.copyfile(team.path("big@1.0.0"), whole)
    size = whole.stat().st_size
    print(f"   model: {size / 2**20:.0f} MiB in {len(weights)} tensors")
    url = f"s3://{BUCKET}/push"

    def upload_one() -> None:
        obstore.put(store, "baseline/whole", whole, chunk_size=16 << 20)  # mreg's part size

    def push() -> None:
        mreg("--registry", str(team.root), "push", url, cwd=root)

    def fresh_bucket() -> None:
        for prefix in ("push/", "baseline/", "blobs/"):
            clear(store, prefix)

    ours, base, ratio = paired(upload_one, push, 3, prepare=fresh_bucket)
    report(f"push {size >> 20} MiB model to S3 vs one obstore put", ours, base, "<= 1.3", ratio=ratio)
    blobs = [p for p in team.objects.objects_dir.rglob("*") if p.is_file()]

    def upload_blobs() -> None:
        """The same bytes as the objects mreg stores, 8 puts in flight, nothing else."""
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda blob: obstore.put(store, f"blobs/{blob.name}", blob, use_multipart=False), blobs))

    ours, base, ratio = paired(upload_blobs, push, 3, prepare=fresh_bucket)
    report(f"  (vs obstore putting its {len(blobs)} objects, 8 at once)", ours, base, "-", ratio=ratio)

    def download_one() -> None:
        result = obstore.get(store, "baseline/whole")
        with open(root / "downloaded", "wb") as out:
            for block in result.stream(min_chunk_size=4 << 20):
                out.write(block)
            os.fsync(out.fileno())  # durable, as every object a pull stores

    laptop = root / "laptop"

    def fresh_registry() -> None:
        shutil.rmtree(laptop, ignore_errors=True)
        Registry.init(laptop)

    def pull() -> None:
        mreg("--registry", str(laptop), "pull", url, cwd=root)

    def download_one_hashed_twice() -> None:
        """The same get, every byte also through the two SHA-256 a chunked file needs
        (its chunks' and its whole's), the second on another thread: what a verified pull needs at least."""
        result = obstore.get(store, "baseline/whole")
        second, first = SecondHash(), hashlib.sha256()
        with open(root / "downloaded", "wb") as out:
            for block in result.stream(min_chunk_size=4 << 20):
                first.update(block)
                second.feed(block)
                out.write(block)
            second.finish()
            os.fsync(out.fileno())

    upload_one()
    ours, base, ratio = paired(download_one, pull, 3, prepare=fresh_registry)
    report(f"pull {size >> 20} MiB model from S3 vs one obstore get", ours, base, "<= 1.3", ratio=ratio)
    ours, base, ratio = paired(download_one_hashed_twice, pull, 3, prepare=fresh_registry)
    report("  (vs the same get hashed twice, on two threads)", ours, base, "-", ratio=ratio)
    upload_blobs()
    (root / "blobs").mkdir()

    def download_blobs() -> None:
        """The same objects, 8 gets in flight, each written and fsynced, nothing else."""

        def get(blob: Path) -> None:
            with open(root / "blobs" / blob.name, "wb") as out:
                for block in obstore.get(store, f"blobs/{blob.name}").stream(min_chunk_size=4 << 20):
                    out.write(block)
                os.fsync(out.fileno())

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(get, blobs))

    ours, base, ratio = paired(download_blobs, pull, 3, prepare=fresh_registry)
    report(f"  (vs obstore getting its {len(blobs)} objects, 8 at once)", ours, base, "-", ratio=ratio)



def second_transfers(root: Path) -> None:
    """A push and a pull of three models that moves nothing (target: < 200 ms), in-process
    and as commands, the commands paired with Python's start-up (``import click, msgpack``)."""
    team, laptop = Registry.init(root / "noop-team"), Registry.init(root / "noop-laptop")
    generator = torch.Generator().manual_seed(1)
    for i in range(3):
        register(team, f"small{i}@1.0.0", {"w": torch.randn(256, 256, generator=generator)})
    url = f"s3://{BUCKET}/noop"
    team.push(url)
    laptop.pull(url)
    in_process = {
        "push": best_of(lambda: Registry.open(team.root).push(url), 7),
        "pull": best_of(lambda: Registry.open(laptop.root).pull(url), 7),
    }
    command = [sys.executable, "-m", "mreg", "--registry"]
    timed = startup_pairs(
        {
            "push": [*command, str(team.root), "push", url],
            "pull": [*command, str(laptop.root), "pull", url],
            "show": [*command, str(laptop.root), "show", "small0"],
        },
        root,
        PAIRS,
    )
    for verb in ("push", "pull"):
        absolute(f"second {verb} of three models, in-process", 1000 * in_process[verb], "< 200 ms")
        ours, base, ratio = timed[verb]
        report(f"second {verb} of three models, command", ours, base, "< 200 ms", ratio=ratio)
    ours, base, ratio = timed["show"]
    report("  (mreg show, command, for reference)", ours, base, "-", ratio=ratio)
    print(f"   load average {os.getloadavg()[0]:.1f}; baseline: python -c 'import click, msgpack'")


if __name__ == "__main__":
    sys.exit(main())
