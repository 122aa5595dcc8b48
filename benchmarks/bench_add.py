"""`mreg add` of a 1 GiB file vs `sha256sum FILE && cp FILE DEST` (target: ratio <= 1.0).

mreg reads each byte once, hashing while it copies, then fsyncs; the baseline reads
the file twice and does not fsync.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from common import best_of, mreg, report, run, scratch

SIZE = int(os.environ.get("MREG_BENCH_SIZE", 1 << 30))


def main() -> None:
    with scratch("add") as root:
        source = root / "model.bin"
        with open(source, "wb") as stream:
            for _ in range(SIZE // (64 << 20)):
                stream.write(os.urandom(64 << 20))
        os.sync()
        destination = root / "copy.bin"

        def baseline() -> None:
            run(["sh", "-c", f"sha256sum '{source}' && cp '{source}' '{destination}'"])
            destination.unlink()

        def add() -> None:
            store = root / "store"
            mreg("init", str(store), cwd=root)
            mreg("--registry", str(store), "add", "big@1.0.0", str(source), cwd=root)
            shutil.rmtree(store)

        base = best_of(baseline, repeat=3)
        ours = best_of(add, repeat=3)
        report(f"add {SIZE >> 20} MiB file", ours, base, "<= 1.0")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
