"""`mreg show REF` wall time vs `python -c "import click, msgpack"` (target: ratio <= 1.5).

Both are whole processes, timed alternately so that machine noise hits both alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import compile_package, mreg, report, scratch

RUNS = 31


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    compile_package()
    with scratch("cli") as root:
        (root / "weights.bin").write_bytes(b"weights" * 1000)
        mreg("init", cwd=root)
        mreg("add", "demo@1.0.0", "weights.bin", "--metric", "acc=0.9", "--family", "demo", cwd=root)
        baseline_command = [sys.executable, "-c", "import click, msgpack"]
        show_command = [sys.executable, "-m", "mreg", "show", "demo"]
        base, show = [], []
        for _ in range(RUNS):
            base.append(timed(baseline_command, root))
            show.append(timed(show_command, root))
        report("mreg show REF (process wall time)", statistics.median(show), statistics.median(base), "<= 1.5")


if __name__ == "__main__":
    main()
