"""`mreg add` of a 1 GiB file vs `sha256sum FILE && cp FILE DEST` (target: ratio <= 1.0).

mreg reads each byte once, hashing it while a writer thread writes the previous
block, then fsyncs; the baseline reads the file twice and does not fsync. The store
is created before each timed add, as it exists before a user adds to it.
"""

from __future__ import annotations

import os
import shutil

from common import mreg, paired, report, run, scratch

SIZE = int(os.environ.get("MREG_BENCH_SIZE", 1 << 30))
PAIRS = int(os.environ.get("MREG_BENCH_PAIRS", 5))


def main() -> None:
    with scratch("add") as root:
        source = root / "model.bin"
        with open(source, "wb") as stream:
            for _ in range(max(1, SIZE // (64 << 20))):
                stream.write(os.urandom(min(SIZE, 64 << 20)))
        os.sync()
        destination = root / "copy.bin"
        store = root / "store"

        def baseline() -> None:
            run(["sh", "-c", f"sha256sum '{source}' && cp '{source}' '{destination}'"])
            destination.unlink()

        def fresh_store() -> None:
            shutil.rmtree(store, ignore_errors=True)
            mreg("init", str(store), cwd=root)

        def add() -> None:
            mreg("--registry", str(store), "add", "big@1.0.0", str(source), cwd=root)

        ours, base, ratio = paired(baseline, add, PAIRS, prepare=fresh_store)
        report(f"add {source.stat().st_size >> 20} MiB file vs sha256sum && cp", ours, base, "<= 1.0", ratio=ratio)


if __name__ == "__main__":
    main()
