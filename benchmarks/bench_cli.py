"""`mreg show REF` wall time vs `python -c "import click, msgpack"` (target: ratio <= 1.5).

Both are whole processes, timed alternately so that machine noise hits both alike.
"""

from __future__ import annotations

import subprocess
import sys

from common import compile_package, mreg, paired, report, scratch

PAIRS = 51


def main() -> None:
    compile_package()
    with scratch("cli") as root:
        (root / "weights.bin").write_bytes(b"weights" * 1000)
        mreg("init", cwd=root)
        mreg("add", "demo@1.0.0", "weights.bin", "--metric", "acc=0.9", "--family", "demo", cwd=root)
        baseline = [sys.executable, "-c", "import click, msgpack"]
        show = [sys.executable, "-m", "mreg", "show", "demo"]
        ours, base, ratio = paired(
            lambda: subprocess.run(baseline, cwd=root, check=True, stdout=subprocess.DEVNULL),
            lambda: subprocess.run(show, cwd=root, check=True, stdout=subprocess.DEVNULL),
            PAIRS,
        )
        report("mreg show REF (process wall time)", ours, base, "<= 1.5", ratio=ratio)


if __name__ == "__main__":
    main()
