"""`mreg show REF` wall time vs `python -c "import click, msgpack"` (target: ratio <= 1.5),
and push and pull commands that move nothing (three models, already transferred) between
directories and from `mreg serve` (target: < 200 ms, as for buckets in bench_bucket.py).

All are whole processes, timed alternately with the baseline so that machine noise hits
both alike.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import compile_package, mreg, report, scratch, show_startup, startup_pairs

PAIRS = 51
TRANSFER_PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", 15))


def main() -> None:
    compile_package()
    with scratch("cli") as root:
        (root / "weights.bin").write_bytes(b"weights" * 1000)
        mreg("init", cwd=root)
        mreg("add", "demo@1.0.0", "weights.bin", "--metric", "acc=0.9", "--family", "demo", cwd=root)
        ours, base, ratio = show_startup(root, "demo", PAIRS)
        report("mreg show REF (process wall time)", ours, base, "<= 1.5", ratio=ratio)
        transfers_that_move_nothing(root / "transfers")


def transfers_that_move_nothing(root: Path) -> None:
    """A second push and pull of three models between directories, and from `mreg serve`."""
    root.mkdir()
    for name in ("team", "shared", "laptop", "web"):
        mreg("init", name, cwd=root)
    for i in range(3):
        (root / f"w{i}.bin").write_bytes(os.urandom(256 << 10))
        mreg("--registry", "team", "add", f"small{i}@1.0.0", f"w{i}.bin", cwd=root)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mreg", "--registry", "team", "serve", "--port", str(port)], cwd=root, stdout=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/info/models")
        command = [sys.executable, "-m", "mreg", "--registry"]
        transfers = {
            "push to a directory": [*command, "team", "push", "shared"],
            "pull from a directory": [*command, "laptop", "pull", "shared"],
            "pull from mreg serve": [*command, "web", "pull", url],
        }
        for args in transfers.values():  # the first time, they move the models
            subprocess.run(args, cwd=root, check=True, stdout=subprocess.DEVNULL)
        for name, (ours, base, ratio) in startup_pairs(transfers, root, TRANSFER_PAIRS).items():
            report(f"second {name}, three models (command)", ours, base, "< 200 ms", ratio=ratio)
    finally:
        server.terminate()
        server.wait()


def _wait_for(url: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


if __name__ == "__main__":
    main()
