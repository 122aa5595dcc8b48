"""mreg pack is crash-safe and concurrent like every writer.

A kill at every write, rename and unlink of a pack (as ``kill -9`` would land: the
child ends on the spot, see test_faults) leaves a store fsck calls clean, every version
reading back bit for bit; a full disk fails the pack with one error and loses nothing.
A pack shares the store with add and pull and keeps gc out; two packs never run at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli
from test_faults import KILLED, run_with_fault
from test_packs import assert_bit_exact, fine_tunes

from mreg.pytorch import register
from mreg.registry import Registry
from mreg.storage.locks import FileLock


def small_model(path: Path, versions: int = 3) -> tuple[Registry, list]:
    registry = Registry.init(path)
    states = fine_tunes(versions, size=8_000)
    for number, state in enumerate(states):
        register(registry, f"m@1.{number}.0", state)
    return registry, states


@pytest.mark.parametrize("argv", [["pack"], ["pack", "--all"], ["gc", "--pack"]])
@pytest.mark.parametrize("mode", ["kill", "enospc"])
def test_a_fault_at_every_step_of_a_pack_leaves_a_sound_store(tmp_path: Path, argv: list[str], mode: str) -> None:
    template, states = small_model(tmp_path / "template")
    if argv == ["pack", "--all"]:
        template.pack()  # then --all packs the hot version too, against a store with records already
    faults = 0
    for n in range(1, 200):
        store = tmp_path / f"run{n}"
        shutil.copytree(template.root.parent, store, symlinks=True)
        registry = Registry(store / ".mreg")
        code, stderr = run_with_fault(["--registry", str(registry.root), *argv], mode, n)
        assert code != 70 and "Traceback" not in stderr, (n, stderr)
        report = Registry(registry.root).fsck()
        assert report.ok, (n, report.problems)
        assert_bit_exact(registry, states)
        if code == 0:
            assert faults > 2  # the pack met faults at several points before it could finish
            break
        faults += 1
        if mode == "kill":
            assert code == KILLED, (n, stderr)
        else:
            assert stderr.startswith("mreg: error: ") and stderr.count("\n") == 1, (n, stderr)
        again = Registry(registry.root).pack(all=argv == ["pack", "--all"])  # a later pack finishes the job
        assert not again.problems and Registry(registry.root).fsck().ok
        assert_bit_exact(registry, states)
        shutil.rmtree(store)
    else:
        raise AssertionError("the pack never completed")


def test_kill_9_of_a_real_pack_process_loses_nothing(tmp_path: Path) -> None:
    registry, states = small_model(tmp_path / "store", versions=6)
    for delay in (0.05, 0.2, 0.5):
        command = [sys.executable, "-m", "mreg", "--registry", str(registry.root), "pack"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
        process.wait(timeout=30)
        assert Registry(registry.root).fsck().ok
        assert_bit_exact(registry, states)
    assert not Registry(registry.root).pack().problems
    assert_bit_exact(registry, states)


def test_a_second_pack_waits_for_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, _ = small_model(tmp_path / "store")
    monkeypatch.setenv("MREG_LOCK_TIMEOUT", "0.2")
    with FileLock(registry.root / "pack.lock", what="a test"):
        result = run_cli("pack", registry=registry)
    assert_clean_failure(result, 6)
    assert "another 'mreg pack' is running" in result.stderr
    assert run_cli("pack", registry=registry).exit_code == 0


def test_gc_waits_for_a_pack_and_a_pack_for_gc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, _ = small_model(tmp_path / "store")
    monkeypatch.setenv("MREG_LOCK_TIMEOUT", "0.2")
    with registry.store.writing():  # as a pack (or an add) holds the store
        assert_clean_failure(run_cli("gc", registry=registry), 6)
    with registry.store.exclusive():  # as gc holds it
        assert_clean_failure(run_cli("pack", registry=registry), 6)


def test_pack_runs_alongside_adds_and_pulls(tmp_path: Path) -> None:
    registry, states = small_model(tmp_path / "store", versions=4)
    source = Registry.init(tmp_path / "source")
    register(source, "other@1.0.0", fine_tunes(1, seed=3, size=8_000)[0])
    newer = {name: value + 1e-5 for name, value in states[-1].items()}
    errors: list[BaseException] = []

    def run(work) -> None:  # type: ignore[no-untyped-def]
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    env = {**os.environ, "MREG_LOCK_TIMEOUT": "60"}
    jobs = [
        lambda: subprocess.run([sys.executable, "-m", "mreg", "--registry", str(registry.root), "pack"], check=True, env=env, capture_output=True),
        lambda: register(Registry(registry.root), "m@1.4.0", newer),
        lambda: Registry(registry.root).pull(str(source.root.parent)),
    ]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert Registry(registry.root).fsck().ok
    assert_bit_exact(registry, [*states, newer])
    assert not Registry(registry.root).pack().problems
    assert_bit_exact(registry, [*states, newer])
