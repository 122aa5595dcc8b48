"""`mreg show REF` wall time vs `python -c "import click, msgpack"` (target: ratio <= 1.5).

Both are whole processes, timed alternately so that machine noise hits both alike.
"""

from __future__ import annotations


from common import compile_package, mreg, report, scratch, show_startup

PAIRS = 51


def main() -> None:
    compile_package()
    with scratch("cli") as root:
        (root / "weights.bin").write_bytes(b"weights" * 1000)
        mreg("init", cwd=root)
        mreg("add", "demo@1.0.0", "weights.bin", "--metric", "acc=0.9", "--family", "demo", cwd=root)
        ours, base, ratio = show_startup(root, "demo", PAIRS)
        report("mreg show REF (process wall time)", ours, base, "<= 1.5", ratio=ratio)


if __name__ == "__main__":
    main()
