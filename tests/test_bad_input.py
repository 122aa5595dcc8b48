"""Bad input through the real CLI: one ``mreg: error:`` line, the right exit code, the store untouched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import (
    assert_clean_failure,
    colliding_pair,
    flip_byte,
    object_file,
    run_cli,
    run_mreg,
    store_snapshot,
)

from mreg.registry import Registry

USAGE, NOT_FOUND, CONFLICT, CORRUPT = 2, 3, 4, 5


@pytest.fixture
def values(registry: Registry, make_file, tmp_path: Path) -> dict[str, str]:
    """A store with demo@1.0.0 (tag prod) and demo@2.0.0, and the strings the cases use."""
    registry.add("demo@1.0.0", [make_file("orig/w.dat", "one")], metrics={"acc": 0.9}, tags=["prod"])
    registry.add("demo@2.0.0", [make_file("orig2/w.dat", "two")])
    (tmp_path / "emptydir").mkdir()
    digest = registry.resolve("demo@1.0.0")
    return {
        "file": str(make_file("new/w.dat", "new content")),
        "same": str(make_file("same/w.dat", "one")),
        "missing": str(tmp_path / "no-such-file.dat"),
        "emptydir": str(tmp_path / "emptydir"),
        "digest": digest,
        "blob": registry.get(digest).files[0].digest,
        "unknown": "sha256:" + next(p for p in ("00000000", "ffffffff") if not digest[7:].startswith(p)),
    }


CASES = [
    # names
    ("name ..", ["add", "../evil@1.0.0", "{file}"], USAGE),
    ("name a/../b", ["add", "a/../b@1.0.0", "{file}"], USAGE),
    ("name leading /", ["add", "/abs@1.0.0", "{file}"], USAGE),
    ("name trailing /", ["add", "trail/@1.0.0", "{file}"], USAGE),
    ("name //", ["add", "a//b@1.0.0", "{file}"], USAGE),
    ("name NUL", ["add", "de\x00mo@1.0.0", "{file}"], USAGE),
    ("name control char", ["add", "de\x01mo@1.0.0", "{file}"], USAGE),
    ("name tab", ["show", "de\tmo"], USAGE),
    ("name 201 chars", ["add", "a" * 201 + "@1.0.0", "{file}"], USAGE),
    ("name unicode", ["add", "modèle@1.0.0", "{file}"], USAGE),
    ("name trailing newline", ["add", "demo\n@3.0.0", "{file}"], USAGE),
    # versions
    ("version 1.0", ["add", "demo@1.0", "{file}"], USAGE),
    ("version 01.0.0", ["add", "demo@01.0.0", "{file}"], USAGE),
    ("version 1.0.0-", ["add", "demo@1.0.0-", "{file}"], USAGE),
    ("version v1.0.0", ["add", "demo@v1.0.0", "{file}"], USAGE),
    ("version in show", ["show", "demo@1.0"], USAGE),
    ("version trailing newline", ["add", "demo@3.0.0\n", "{file}"], USAGE),
    ("version non-ASCII digit", ["add", "demo@3\u0660.0.0", "{file}"], USAGE),
    # tags and latest
    ("tag looks like a version", ["tag", "demo@1.0.0", "1.2.3"], USAGE),
    ("tag v2", ["tag", "demo@1.0.0", "v2"], USAGE),
    ("tag latest by hand", ["tag", "demo@1.0.0", "latest"], USAGE),
    ("untag latest", ["tag", "-d", "demo", "latest"], USAGE),
    ("add @latest", ["add", "demo@latest", "{file}"], USAGE),
    ("add @tag", ["add", "demo@prod", "{file}"], USAGE),
    ("add --tag latest", ["add", "demo@3.0.0", "{file}", "--tag", "latest"], USAGE),
    ("tag trailing newline", ["tag", "demo@1.0.0", "prod\n"], USAGE),
    # unknown things
    ("unknown model", ["show", "nosuch"], NOT_FOUND),
    ("unknown version", ["show", "demo@9.9.9"], NOT_FOUND),
    ("unknown tag", ["resolve", "demo@staging"], NOT_FOUND),
    ("unknown model log", ["log", "nosuch"], NOT_FOUND),
    ("unknown model ls", ["ls", "nosuch"], NOT_FOUND),
    ("rm unknown version", ["rm", "demo@9.9.9"], NOT_FOUND),
    ("untag unknown tag", ["tag", "-d", "demo", "staging"], NOT_FOUND),
    ("tag unknown version", ["tag", "demo@9.9.9", "prod"], NOT_FOUND),
    ("unknown parent", ["add", "demo@3.0.0", "{file}", "--parent", "nosuch@1.0.0"], NOT_FOUND),
    ("unknown file in version", ["path", "demo@1.0.0", "nosuch.dat"], NOT_FOUND),
    # digests
    ("digest prefix 7 hex", ["resolve", "sha256:abcdef1"], USAGE),
    ("digest prefix non-hex", ["show", "sha256:abcdefgz"], USAGE),
    ("digest prefix unknown", ["resolve", "{unknown}"], NOT_FOUND),
    ("cat-file unknown", ["cat-file", "-t", "{unknown}"], NOT_FOUND),
    ("cat-file short", ["cat-file", "-p", "sha256:1234"], USAGE),
    ("show a blob digest", ["show", "{blob}"], NOT_FOUND),
    # input files
    ("missing input file", ["add", "demo@3.0.0", "{missing}"], NOT_FOUND),
    ("empty directory", ["add", "demo@3.0.0", "{emptydir}"], NOT_FOUND),
    ("hash-object missing", ["hash-object", "-w", "{missing}"], NOT_FOUND),
    ("no input file", ["add", "demo@3.0.0"], USAGE),
    # metadata
    ("metric not a number", ["add", "demo@3.0.0", "{file}", "--metric", "acc=high"], USAGE),
    ("metric nan", ["add", "demo@3.0.0", "{file}", "--metric", "acc=nan"], USAGE),
    ("metric inf", ["add", "demo@3.0.0", "{file}", "--metric", "acc=inf"], USAGE),
    ("metric without value", ["add", "demo@3.0.0", "{file}", "--metric", "acc"], USAGE),
    ("meta bad key", ["add", "demo@3.0.0", "{file}", "--meta", "=x"], USAGE),
    ("input shape letters", ["add", "demo@3.0.0", "{file}", "--input-shape", "1,x,224"], USAGE),
    ("input shape zero", ["add", "demo@3.0.0", "{file}", "--input-shape", "0,3"], USAGE),
    ("input shape empty", ["add", "demo@3.0.0", "{file}", "--input-shape", ""], USAGE),
    ("dataset bad digest", ["add", "demo@3.0.0", "{file}", "--dataset", "imagenet@sha256:1234"], USAGE),
    ("family control char", ["add", "demo@3.0.0", "{file}", "--family", "res\x07net"], USAGE),
    ("ls bad metric filter", ["ls", "--metric", "acc>>1"], USAGE),
    # usage
    ("rm without version", ["rm", "demo"], USAGE),
    ("cat-file without mode", ["cat-file", "{digest}"], USAGE),
    ("bump with a version", ["add", "demo@3.0.0", "{file}", "--bump", "patch"], USAGE),
    ("bump bad part", ["add", "demo", "{file}", "--bump", "build"], USAGE),
    ("unknown option", ["ls", "--bogus"], USAGE),
    ("unknown command", ["frobnicate"], USAGE),
    # immutability
    ("re-add other files", ["add", "demo@1.0.0", "{file}", "--metric", "acc=0.9"], CONFLICT),
    ("re-add other metrics", ["add", "demo@1.0.0", "{same}", "--metric", "acc=0.5"], CONFLICT),
    ("re-add without metrics", ["add", "demo@1.0.0", "{same}"], CONFLICT),
    pytest.param(
        "build-metadata twin", ["add", "demo@1.0.0+build.2", "{file}"], CONFLICT,
    ),
    pytest.param(
        "case twin", ["add", "Demo@3.0.0", "{file}"], USAGE,
    ),
]


def _as_params(cases: list) -> list:
    """``(id, args, code)`` tuples and marked params as pytest params with ids."""
    params = []
    for case in cases:
        if hasattr(case, "marks"):  # a pytest.param (itself a named tuple)
            params.append(pytest.param(case.values[1], case.values[2], id=case.values[0], marks=case.marks))
        else:
            params.append(pytest.param(case[1], case[2], id=case[0]))
    return params


@pytest.mark.parametrize("args, code", _as_params(CASES))
def test_bad_input_fails_cleanly_and_changes_nothing(registry: Registry, values: dict[str, str], args: list[str], code: int) -> None:
    before = store_snapshot(registry)
    result = run_cli(*[arg.format(**values) for arg in args])
    assert_clean_failure(result, code=code)
    assert store_snapshot(registry) == before


SUBPROCESS_CASES = [
    pytest.param(["add", "../evil@1.0.0", "{file}"], USAGE, id="bad name"),
    pytest.param(["add", "demo@01.0.0", "{file}"], USAGE, id="bad version"),
    pytest.param(["show", "demo@staging"], NOT_FOUND, id="unknown tag"),
    pytest.param(["add", "demo@3.0.0", "{missing}"], NOT_FOUND, id="missing file"),
    pytest.param(["add", "demo@1.0.0", "{file}", "--metric", "acc=0.9"], CONFLICT, id="conflicting re-add"),
    pytest.param(["tag", "demo@1.0.0", "--no-such-option", "x"], USAGE, id="unknown option"),
]


@pytest.mark.parametrize("args, code", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(registry: Registry, values: dict[str, str], tmp_path: Path, args: list[str], code: int) -> None:
    before = store_snapshot(registry)
    result = run_mreg(*[arg.format(**values) for arg in args], cwd=tmp_path)
    assert_clean_failure(result, code=code)
    assert result.stdout == ""
    assert store_snapshot(registry) == before


def test_no_registry_in_a_real_process(tmp_path_factory) -> None:
    result = run_mreg("ls", cwd=tmp_path_factory.mktemp("none"))
    assert_clean_failure(result, code=NOT_FOUND)
    assert "mreg init" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file with mode 000")
def test_unreadable_input_file(registry: Registry, values: dict[str, str]) -> None:
    Path(values["file"]).chmod(0)
    before = store_snapshot(registry)
    assert_clean_failure(run_cli("add", "demo@3.0.0", values["file"]), code=NOT_FOUND)
    assert store_snapshot(registry) == before


@pytest.mark.parametrize("damage", ["flip", "truncate"])
@pytest.mark.parametrize("command", [["show", "demo@1.0.0"], ["show", "demo@1.0.0", "--json"], ["path", "demo@1.0.0"], ["cat-file", "-p", "{digest}"]])
def test_corrupt_manifest_fails_cleanly(registry: Registry, values: dict[str, str], damage: str, command: list[str]) -> None:
    path = object_file(registry, values["digest"])
    if damage == "flip":
        flip_byte(path, 10)
    else:
        path.chmod(0o644)
        path.write_bytes(path.read_bytes()[:-5])
    before = store_snapshot(registry)
    result = run_cli(*[arg.format(**values) for arg in command])
    assert_clean_failure(result, code=CORRUPT)
    assert values["digest"] in result.stderr and "corrupt" in result.stderr
    assert store_snapshot(registry) == before


def test_corrupt_refs_fail_cleanly(registry: Registry, values: dict[str, str]) -> None:
    (registry.refs.model_dir("demo") / "_refs").write_text("not a ref table\n")
    before = store_snapshot(registry)
    for args in (["show", "demo"], ["ls", "demo"], ["tag", "demo@1.0.0", "x"], ["add", "demo@3.0.0", values["file"]]):
        assert_clean_failure(run_cli(*args), code=CORRUPT)
    assert store_snapshot(registry) == before


def test_ambiguous_digest_prefix(registry: Registry, values: dict[str, str]) -> None:
    # Two real blobs whose digests share 8 hex digits (a birthday search), stored with hash-object -w.
    first, second = colliding_pair(lambda i: b"blob %d" % i)
    for i, data in enumerate((first, second)):
        path = Path(values["missing"]).with_name(f"collide{i}")
        path.write_bytes(data)
        assert run_cli("hash-object", "-w", str(path)).exit_code == 0
    prefix = "sha256:" + hashlib.sha256(first).hexdigest()[:8]
    before = store_snapshot(registry)
    result = run_cli("cat-file", "-t", prefix)
    assert_clean_failure(result, code=CONFLICT)
    assert "ambiguous" in result.stderr
    assert_clean_failure(run_cli("resolve", prefix), code=NOT_FOUND)  # blobs are not manifests
    assert store_snapshot(registry) == before
