"""Fault injection: a kill, ENOSPC or EIO at the N-th write or rename of each writing command.

Each command runs in a forked child whose ``os.write``, ``os.replace`` and
``os.rename`` (and for kills ``os.unlink`` and ``os.rmdir``) fail at call N (every
N until the command completes): ``kill`` ends
the process on the spot (``os._exit``, as kill -9 would), ``ENOSPC`` and ``EIO``
raise the error a full or failing disk gives. After each run, ``fsck`` is clean,
every version acknowledged before reads back byte-identical, ``info/models``
matches the refs, and a command that failed with an error left the refs and logs
exactly as they were.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mreg import Blob
from mreg.registry import Registry
from mreg.storage.server_info import read_server_info

KILLED = 99  # the child's exit status when the fault killed it
FILES = {"base@1.0.0": b"base weights" * 1000, "base@1.1.0": b"second" * 5000, "other@1.0.0": b"other" * 300}


def fault_child(argv: list[str], mode: str, n: int) -> None:
    """In the child: make call ``n`` of os.write/replace/rename fail, then run the CLI."""
    from mreg.cli.app import cli

    counter = itertools.count(1)

    def failing(real: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            if next(counter) == n:
                if mode == "kill":
                    os._exit(KILLED)
                code = errno.ENOSPC if mode == "enospc" else errno.EIO
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        return call

    # A kill may also land between the deletions of gc; a full disk only fails writes.
    for name in ("write", "replace", "rename", *(("unlink", "rmdir") if mode == "kill" else ())):
        setattr(os, name, failing(getattr(os, name)))
    try:
        cli.main(args=argv, prog_name="mreg")
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    os._exit(0)


def run_with_fault(argv: list[str], mode: str, n: int) -> tuple[int, str]:
    """Fork, run ``mreg argv`` with the fault at call ``n``; return (exit status, stderr)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns
        try:
            os.close(read_end)
            sys.stdout = open(os.devnull, "w")
            sys.stderr = os.fdopen(write_end, "w")
            fault_child(argv, mode, n)
        finally:
            os._exit(70)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        stderr = stream.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


def safetensors_bytes() -> bytes:
    """A small weight file of three 16 KiB tensors, which mreg stores as chunks."""
    numpy = pytest.importorskip("numpy")
    from safetensors.numpy import save

    return save({f"t{i}": numpy.full(4096, i, dtype=numpy.float32) for i in range(3)})


def make_store(path: Path) -> Registry:
    registry = Registry.init(path)
    for spec, data in FILES.items():
        registry.add(spec, [Blob("model.bin", lambda data=data: [data])], tags=["prod"] if spec == "base@1.0.0" else ())
    return registry


def refs_and_logs(registry: Registry) -> dict[str, bytes]:
    models = registry.root / "models"
    return {
        str(p.relative_to(models)): p.read_bytes()
        for p in sorted(models.rglob("*"))
        if p.is_file() and p.name in ("_refs", "_log")
    }


def assert_sound(registry: Registry, acknowledged: dict[str, bytes]) -> None:
    report = Registry(registry.root).fsck()
    assert report.ok, report.problems
    fresh = Registry(registry.root)
    for spec, data in acknowledged.items():
        assert fresh.path(spec).read_bytes() == data, spec
    with_versions = {name for name in fresh.refs.names() if fresh.refs.read(name).versions}
    assert with_versions <= set(read_server_info(fresh) or ())


# Each scenario: the command line (with {src} for another store, {new} for a file), what
# a success acknowledges, and what must then be gone.
SCENARIOS: dict[str, tuple[list[str], dict[str, bytes], list[str]]] = {
    "add a new model": (["add", "fresh@1.0.0", "{new}", "--tag", "prod"], {"fresh@1.0.0": b"new file" * 100}, []),
    "add a version": (["add", "base@2.0.0", "{new}", "-m", "why"], {"base@2.0.0": b"new file" * 100}, []),
    "tag": (["tag", "base@1.1.0", "prod"], {}, []),
    "rm": (["rm", "base@1.1.0"], {}, ["base@1.1.0"]),
    "rm the last version": (["rm", "other@1.0.0"], {}, ["other@1.0.0"]),
    "pull": (["pull", "{src}"], {"pulled@1.0.0": b""}, []),  # the source's weight file (below)
    "hash-object -w": (["hash-object", "-w", "{new}"], {}, []),
    "gc": (["gc"], {}, []),
}


@pytest.mark.parametrize(
    ("scenario", "mode"),
    [(s, m) for s in sorted(SCENARIOS) for m in ("kill", "enospc") if (s, m) != ("gc", "enospc")]  # gc only deletes
    + [("add a new model", "eio"), ("pull", "eio")],
)
def test_a_fault_at_every_write_leaves_a_sound_store(tmp_path: Path, scenario: str, mode: str) -> None:
    template = make_store(tmp_path / "template")
    template.remove("base@1.0.0") if scenario == "gc" else None  # something to collect
    source = Registry.init(tmp_path / "source")
    weights = safetensors_bytes()  # stored as chunks: a pull fetches them in one ordered pass
    source.add("pulled@1.0.0", [Blob("model.safetensors", lambda: [weights])])
    new_file = tmp_path / "new.bin"
    new_file.write_bytes(b"new file" * 100)
    argv, gained, lost = SCENARIOS[scenario]
    gained = {spec: weights if spec == "pulled@1.0.0" else data for spec, data in gained.items()}
    before = {spec: data for spec, data in FILES.items() if template.refs.read(spec.split("@")[0]).versions.get(spec.split("@")[1])}
    for n in range(1, 60):
        store = tmp_path / f"run{n}"
        shutil.copytree(template.root.parent, store, symlinks=True)
        registry = Registry(store / ".mreg")
        original = refs_and_logs(registry)
        args = [a.format(src=str(source.root), new=str(new_file)) for a in argv]
        code, stderr = run_with_fault(["--registry", str(registry.root), *args], mode, n)
        assert code != 70 and "Traceback" not in stderr, (n, stderr)
        kept = {spec: data for spec, data in before.items() if spec not in lost}
        if code == 0:
            assert_sound(registry, {**kept, **gained})
            assert n > 1  # the command met at least one fault
            shutil.rmtree(store)
            break
        if mode == "kill":
            assert code == KILLED, (n, stderr)
            # Killed: either done or not done, never half; acknowledged versions stay.
            assert_sound(registry, {spec: data for spec, data in kept.items() if spec in before})
        else:
            assert stderr.startswith("mreg: error: ") and stderr.count("\n") == 1, (n, stderr)
            assert refs_and_logs(registry) == original, (n, stderr)  # failed: as before
            assert_sound(registry, before)
        shutil.rmtree(store)
    else:
        raise AssertionError("the command never completed")


def test_a_failed_clone_leaves_no_registry(tmp_path: Path) -> None:
    source = Registry.init(tmp_path / "source")
    source.add("m@1.0.0", [Blob("model.bin", lambda: [b"weights"])])
    for n in range(1, 40):
        target = tmp_path / f"clone{n}"
        code, stderr = run_with_fault(["clone", str(source.root.parent), str(target)], "enospc", n)
        if code == 0:
            assert Registry(target / ".mreg").fsck().ok
            break
        assert stderr.startswith("mreg: error: ") and code != 70, stderr
        assert not (target / ".mreg").exists(), n


def test_rm_racing_add_never_leaves_info_models_behind_the_refs(tmp_path: Path) -> None:
    """rm of a model's last version against an add of a new version of it, in two processes."""
    registry = Registry.init(tmp_path)
    new_file = tmp_path / "v.bin"
    new_file.write_bytes(b"v")
    for round_ in range(6):
        registry.add(f"m@1.0.{round_}", [Blob("model.bin", lambda: [b"x"])])
        pids = []
        for argv in (["rm", f"m@1.0.{round_}"], ["add", f"m@2.0.{round_}", str(new_file)]):
            pid = os.fork()
            if pid == 0:
                sys.stdout = sys.stderr = open(os.devnull, "w")
                fault_child(["--registry", str(registry.root), *argv], "none", 0)
            pids.append(pid)
        assert all(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in pids)
        assert_sound(registry, {f"m@2.0.{round_}": b"v"})
        registry.remove(f"m@2.0.{round_}")
        assert "m" not in (read_server_info(registry) or [])
