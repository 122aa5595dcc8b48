"""mreg export against hostile versions and hostile conditions.

A version's file paths come from whoever registered it: none may enter or name a
repository's own directory (.git, .mreg, ...), however spelt. Every target is
checked before a byte is written (f and f/g, links out). A killed export leaves no
partial file, a full disk is reported as a full disk, and what was written is kept.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli

from mreg import Blob
from mreg.errors import ConflictError, InvalidInputError, OutputFileError
from mreg.operations import export as export_module
from mreg.operations import export_files
from mreg.records.manifest import FileEntry, Manifest
from mreg.registry import Registry


def blob(path: str, data: bytes = b"hook") -> Blob:
    return Blob(path, lambda: [data])


def listing(directory: Path) -> list[str]:
    """Every entry under ``directory`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


def plant_version(registry: Registry, name: str, files: dict[str, bytes]) -> None:
    """Register a manifest as another tool (or an older mreg) could have written it, bypassing add's checks."""
    entries = tuple(FileEntry(path, registry.objects.add_bytes(data).digest, len(data)) for path, data in sorted(files.items()))
    digest = registry.objects.add_bytes(Manifest(name=name, version="1.0.0", files=entries).encode()).digest
    with registry.store.updating(name, author="someone", message="") as update:
        update.table = update.table.with_version("1.0.0", digest)


@pytest.mark.parametrize(
    "path",
    [".git/hooks/pre-commit", "sub/.git/config", ".mreg/models/x/_refs", ".GIT/hooks/post-checkout", ".git. /config",
     "GIT~1/config", ".g\u200cit/hooks/pre-commit", ".git", "a/.hg/hgrc", ".svn/entries"],
)
def test_a_path_into_a_repositorys_own_directory_is_refused_before_anything_is_written(registry: Registry, tmp_path: Path, path: str) -> None:
    registry.add("evil@1.0.0", [blob("README.md", b"hello"), blob(path)])
    out = tmp_path / "out"
    with pytest.raises(ConflictError, match="repository"):
        registry.export("evil@1.0.0", out)
    assert listing(out) == []
    result = run_cli("export", "evil@1.0.0", str(out), registry=registry)
    assert_clean_failure(result, code=4)
    assert listing(out) == []


def test_names_that_only_look_alike_are_exported(registry: Registry, tmp_path: Path) -> None:
    paths = [".gitignore", ".github/workflows/ci.yml", "git/x", "mreg.txt", ".mregignore", "a.git/b"]
    registry.add("fine@1.0.0", [blob(path) for path in paths])
    registry.export("fine@1.0.0", tmp_path / "out")
    assert [p for p in listing(tmp_path / "out") if (tmp_path / "out" / p).is_file()] == sorted(paths)


def test_an_export_into_a_repositorys_directory_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.add("m@1.0.0", [blob("pre-commit", b"#!/bin/sh\necho owned\n")])
    hooks = tmp_path / "project" / ".git" / "hooks"
    hooks.mkdir(parents=True)
    for target in (hooks, tmp_path / "project" / ".git", registry.root / "models"):
        with pytest.raises(ConflictError, match="inside a"):
            registry.export("m@1.0.0", target)
    assert listing(hooks) == []


def test_a_link_into_a_repositorys_directory_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.add("m@1.0.0", [blob("models/hooks/pre-commit")])
    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / "models").symlink_to(out / ".git")
    with pytest.raises(ConflictError, match="leads into a repository"):
        registry.export("m@1.0.0", out)
    assert listing(out / ".git") == []


def test_a_file_and_a_path_below_it_are_refused_before_writing(registry: Registry, tmp_path: Path) -> None:
    plant_version(registry, "clash", {"a.txt": b"first", "f": b"file", "f/g": b"below"})
    out = tmp_path / "out"
    with pytest.raises(ConflictError, match="'f' and 'f/g'"):
        registry.export("clash@1.0.0", out)
    assert listing(out) == []  # not even a.txt, which sorts first
    assert run_cli("show", "clash@1.0.0", registry=registry).exit_code == 0  # the stored version stays readable
    assert registry.path("clash@1.0.0", "f/g").read_bytes() == b"below"
    assert registry.fsck().ok


def test_add_refuses_a_file_and_a_path_below_it(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="both a file and the directory"):
        registry.add("m@1.0.0", [blob("f"), blob("f/g")])
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "f").write_bytes(b"file")
    (tmp_path / "two" / "f").mkdir(parents=True)
    (tmp_path / "two" / "f" / "g").write_bytes(b"below")
    result = run_cli("add", "m@1.0.0", str(tmp_path / "one" / "f"), str(tmp_path / "two"), registry=registry)
    assert_clean_failure(result, code=2)
    assert registry.refs.names() == [] and registry.objects.temp_files() == []


def test_case_twins_are_refused_only_where_the_file_system_folds_case(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.add("m@1.0.0", [blob("Model.bin", b"upper"), blob("model.bin", b"lower")])
    registry.export("m@1.0.0", tmp_path / "sensitive")  # this file system tells them apart
    assert (tmp_path / "sensitive" / "Model.bin").read_bytes() == b"upper"
    from mreg.operations import export_targets

    monkeypatch.setattr(export_targets, "folds_case", lambda directory: True)
    with pytest.raises(ConflictError, match="does not tell them apart"):
        registry.export("m@1.0.0", tmp_path / "folding")
    assert listing(tmp_path / "folding") == []


def test_disk_full_is_reported_as_such_not_as_not_found(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.add("m@1.0.0", [blob("a.bin", b"a" * 1000), blob("b.bin", b"b" * 1000)])
    real = export_module.write_all
    calls = []

    def full(fd: int, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) > 1:  # the first file fits, the second does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(export_module, "write_all", full)
    monkeypatch.setattr(export_module, "permissions_protect", lambda: False)  # copies, as for root
    with pytest.raises(OutputFileError) as caught:
        registry.export("m@1.0.0", tmp_path / "out")
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert listing(tmp_path / "out") == ["a.bin"]  # the whole first file is kept; no partial second one
    calls.clear()
    result = run_cli("export", "m@1.0.0", str(tmp_path / "again"), registry=registry)
    assert_clean_failure(result, code=1)
    assert "No space left on device" in result.stderr and "free some space" in result.stderr


def test_a_read_only_destination_is_reported_as_such(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.add("m@1.0.0", [blob("sub/a.bin")])

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = run_cli("export", "m@1.0.0", str(tmp_path / "out"), registry=registry)
    assert_clean_failure(result, code=1)
    assert "Read-only file system" in result.stderr


@pytest.fixture
def tiny_disk(tmp_path: Path) -> object:
    """A real 1 MiB tmpfs (root only, where mounting is allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root and a system that allows it")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_keeps_whole_files_and_no_partial_one(registry: Registry, tmp_path: Path, tiny_disk: Path) -> None:
    registry.add("m@1.0.0", [blob("a.bin", b"a" * (600 << 10)), blob("b.bin", b"b" * (600 << 10))])
    result = run_cli("export", "m@1.0.0", str(tiny_disk / "out"), "--copy", registry=registry)
    assert_clean_failure(result, code=1)
    assert "No space left on device" in result.stderr
    assert listing(tiny_disk / "out") == ["a.bin"] and (tiny_disk / "out" / "a.bin").stat().st_size == 600 << 10


def test_stale_temporary_files_of_killed_exports_are_swept_and_live_ones_kept(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there are no anonymous files, a copy is written under a locked hidden name."""
    monkeypatch.setattr(export_files.PendingFile, "_anonymous", lambda self: None)
    registry.add("m@1.0.0", [blob("a.bin", b"a" * 100)])
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".mreg-export-1-dead-0.tmp"
    stale.write_bytes(b"half")
    live = out / ".mreg-export-2-live-0.tmp"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        registry.export("m@1.0.0", out, link=False)
        assert not stale.exists() and live.exists()
    assert listing(out) == [".mreg-export-2-live-0.tmp", "a.bin"]


KILLED_EXPORT = """
import sys
from mreg.registry import Registry
Registry.open(sys.argv[1]).export("big@1.0.0", sys.argv[2], link=False)
"""


def writing_into(pid: int, directory: Path) -> bool:
    """True when process ``pid`` has a file open in ``directory`` (an export's copy in progress)."""
    try:
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return any(target.startswith(str(directory) + "/") for target in targets)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watching an export's open files needs /proc")
def test_an_export_killed_while_copying_leaves_no_partial_file(registry: Registry, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as stream:
        for i in range(48):
            stream.write(os.urandom(1 << 20) if i == 0 else bytes([i]) * (1 << 20))
    small = tmp_path / "small.txt"
    small.write_text("done first")
    registry.add("big@1.0.0", [small, big])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for _ in range(5):
        shutil.rmtree(out, ignore_errors=True)
        process = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(registry.root), str(out)], env=env)
        deadline = time.monotonic() + 30
        while process.poll() is None and not writing_into(process.pid, out) and time.monotonic() < deadline:
            time.sleep(0.001)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
    else:
        pytest.skip("the export finished before it could be killed")
    left = listing(out)
    assert not [name for name in left if Path(name).name.startswith(".")], left  # nothing hidden
    for name in left:
        if (out / name).is_file():  # only whole files have names
            assert (out / name).read_bytes() == (tmp_path / name).read_bytes()
    report = registry.export("big@1.0.0", out, link=False)  # running it again finishes it
    assert sorted(report.copied + report.unchanged) == ["big.bin", "small.txt"]
    assert (out / "big.bin").read_bytes() == big.read_bytes()
