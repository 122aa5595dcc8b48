"""Concurrent mreg processes on one store: no lost update, latest right, fsck clean."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import run_mreg

from mreg import Blob
from mreg.errors import InvalidNameError
from mreg.registry import Registry

# Each worker is a real process that runs the real CLI entry point several times,
# so that the processes overlap instead of spending their time starting Python.
WORKER = """
import json, sys
from mreg.cli import cli
print("ready", flush=True)
sys.stdin.readline()
codes = []
for args in json.loads(sys.argv[1]):
    try:
        cli.main(args, prog_name="mreg")
    except SystemExit as exc:
        codes.append(exc.code or 0)
print(json.dumps(codes), flush=True)
"""


def run_together(jobs: list[list[list[str]]], cwd: Path) -> list[list[int]]:
    """Start one process per job, release them at once, return each invocation's exit code."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(job)],
            cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for job in jobs
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:
        process.stdin.write("go\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_concurrent_adds_tag_moves_and_gc(registry: Registry, make_file, tmp_path: Path) -> None:
    registry.add("demo@0.0.1", [make_file("base1/w.dat", "base 1")])
    registry.add("demo@0.0.2", [make_file("base2/w.dat", "base 2")])
    adders = [
        [["add", f"demo@1.{p}.{v}", str(make_file(f"p{p}v{v}/w.dat", f"weights {p} {v}")), "-m", f"p{p}"] for v in range(3)]
        for p in range(6)
    ]
    movers = [[["tag", f"demo@0.0.{1 + (i + m) % 2}", "prod"] for i in range(20)] for m in range(2)]
    collector = [["gc"] for _ in range(5)]
    started = time.monotonic()
    results = run_together([*adders, *movers, collector], tmp_path)
    assert time.monotonic() - started < 30
    assert results == [[0, 0, 0]] * 6 + [[0] * 20] * 2 + [[0] * 5], results

    expected = {"0.0.1", "0.0.2"} | {f"1.{p}.{v}" for p in range(6) for v in range(3)}
    listed = json.loads(run_mreg("ls", "demo", "--json", cwd=tmp_path).stdout)
    assert {entry["version"] for entry in listed} == expected
    assert listed[0]["version"] == "1.5.2" and registry.refs.read("demo").latest == "1.5.2"
    assert run_mreg("resolve", "demo", cwd=tmp_path).stdout.strip() == registry.resolve("demo@1.5.2")
    assert registry.refs.read("demo").tags["prod"] in {"0.0.1", "0.0.2"}

    entries, problems = registry.refs.log("demo")
    assert problems == []
    added = [e.ref for e in entries if e.ref.startswith("versions/")]
    assert sorted(added) == sorted(f"versions/{v}" for v in expected)
    tag_moves = [e for e in entries if e.ref == "tags/prod"]
    assert len(tag_moves) >= 2 and tag_moves[0].old is None
    for before, after in zip(tag_moves, tag_moves[1:]):
        assert after.old == before.new  # no move was lost or interleaved
    for p in range(6):
        for v in range(3):
            assert registry.path(f"demo@1.{p}.{v}").read_text() == f"weights {p} {v}"
    fsck = run_mreg("fsck", cwd=tmp_path)
    assert fsck.exit_code == 0, fsck.stdout + fsck.stderr


def test_gc_never_deletes_what_an_add_is_writing(registry: Registry, make_file) -> None:
    registry.add("old@1.0.0", [make_file("old/w.dat", "old")])
    registry.remove("old@1.0.0")
    inside, proceed = threading.Event(), threading.Event()

    def blocks():
        yield b"fresh "
        inside.set()
        proceed.wait(10)
        yield b"weights"

    adder = threading.Thread(target=lambda: registry.add("new@1.0.0", [Blob("w.dat", blocks)]))
    adder.start()
    assert inside.wait(10)
    reports = []
    collector = threading.Thread(target=lambda: reports.append(registry.gc()))
    collector.start()
    time.sleep(0.2)
    assert reports == [], "gc ran while an add was writing"
    proceed.set()
    adder.join(10)
    collector.join(10)
    assert len(reports[0].objects) == 2  # the removed version's manifest and blob only
    assert registry.path("new").read_bytes() == b"fresh weights"
    assert registry.fsck().ok and registry.fsck().notes == []


def test_re_add_racing_a_remove_never_registers_missing_files(registry: Registry, make_file) -> None:
    registry.add("demo@1.0.0", [make_file("w.dat", "original")])
    hashing, proceed = threading.Event(), threading.Event()

    def blocks():
        hashing.set()
        proceed.wait(10)
        yield b"different content"

    errors: list[Exception] = []

    def re_add() -> None:
        try:
            registry.add("demo@1.0.0", [Blob("w.dat", blocks)])
        except Exception as exc:  # noqa: BLE001 - a conflict error would be a fine outcome
            errors.append(exc)

    thread = threading.Thread(target=re_add)
    thread.start()
    assert hashing.wait(10)
    registry.remove("demo@1.0.0")  # another process removes the version meanwhile
    proceed.set()
    thread.join(10)
    report = registry.fsck()
    assert report.ok, report.problems


def wait_until_opened_twice(path: Path) -> None:
    """Wait until this process holds two descriptors on ``path`` (ours, and a waiting thread's)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        opened = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                opened += os.readlink(f"/proc/self/fd/{fd}") == str(path)
            except OSError:
                continue
        if opened >= 2:
            return
        time.sleep(0.005)
    raise AssertionError(f"nobody opened {path}")


def test_case_twins_added_at_once_are_not_both_registered(registry: Registry, make_file) -> None:
    directory = registry.refs.model_dir("Demo")
    directory.mkdir(parents=True)
    fd = os.open(directory / "_lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # 'Demo' waits for its lock after its case check has passed
    stored = threading.Event()

    def blocks():
        yield b"upper"
        stored.set()

    def add_upper() -> None:
        try:
            registry.add("Demo@1.0.0", [Blob("w.dat", blocks)])
        except InvalidNameError:
            pass  # refusing this one is correct too

    upper = threading.Thread(target=add_upper)
    upper.start()
    try:
        assert stored.wait(10)
        wait_until_opened_twice(directory / "_lock")  # 'Demo' is past its check, at its lock
        try:
            registry.add("demo@1.0.0", [make_file("w.dat", "lower")])
        except Exception:  # noqa: BLE001 - refusing either one is correct
            pass
    finally:
        os.close(fd)
        upper.join(10)
    assert len([n for n in registry.refs.names() if n.lower() == "demo"]) == 1
