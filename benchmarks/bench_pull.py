"""Pull of a 1 GiB model from a directory vs `cp` of the same bytes (target: ratio <= 1.3),
and a second pull of the same refs (target: transfers nothing, under 100 ms).

A pull verifies every byte it copies: each chunk against its digest and the file
against its own. SHA-256 of the same bytes is timed too, as the floor any verified
copy has on this machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

import torch

from common import absolute, best_of, mreg, paired, report, run, scratch

from mreg import Registry
from mreg.pytorch import register
from mreg.transfer import pull

SIZE = int(os.environ.get("MREG_BENCH_SIZE", 1 << 30))
TENSOR = 16 << 20  # bytes per tensor: a model of 64 large tensors for 1 GiB


def main() -> None:
    with scratch("pull") as root:
        source = Registry.init(root / "team")
        generator = torch.Generator().manual_seed(0)
        weights = {f"layer{i}.weight": torch.randn(TENSOR // 4, generator=generator) for i in range(SIZE // TENSOR)}
        register(source, "big@1.0.0", weights)
        blobs = [p for p in source.objects.objects_dir.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in blobs)
        print(f"   source: {len(blobs)} objects, {total / 2**20:.0f} MiB")
        os.sync()

        def copy() -> None:
            run(["cp", "-r", str(source.objects.objects_dir), str(root / "copy")])
            shutil.rmtree(root / "copy")

        def sha256_only() -> None:
            for blob in blobs:
                with open(blob, "rb") as stream:
                    hasher = hashlib.sha256()
                    while block := stream.read(4 << 20):
                        hasher.update(block)

        def fresh_store() -> None:
            shutil.rmtree(root / "laptop", ignore_errors=True)
            mreg("init", str(root / "laptop"), cwd=root)

        def first_pull() -> None:
            mreg("--registry", str(root / "laptop"), "pull", str(root / "team"), cwd=root)

        ours, base, ratio = paired(copy, first_pull, 3, prepare=fresh_store)
        report(f"pull {total >> 20} MiB model from a directory vs cp", ours, base, "<= 1.3", ratio=ratio)
        hashing, base, ratio = paired(copy, sha256_only, 3)
        report("  (sha256 of the same bytes vs cp, for reference)", hashing, base, "-", ratio=ratio)
        shutil.rmtree(root / "laptop")

        laptop = Registry.init(root / "laptop")
        pull(laptop, str(root / "team"))
        again = best_of(lambda: pull(Registry.open(root / "laptop"), str(root / "team")), 11)
        transferred = pull(laptop, str(root / "team")).objects
        absolute(f"second pull, in-process ({transferred} objects copied)", 1000 * again, "< 100 ms")


if __name__ == "__main__":
    sys.exit(main())
