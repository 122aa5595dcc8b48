"""Property-based fuzzing of the grammar and of the CLI (hypothesis, derandomized).

The grammar: every parser and validator either accepts its input or raises an
``MregError``; nothing else escapes. The CLI: a random argument list either
succeeds, or prints one ``mreg: error:`` line and exits 1-7 (1: a check failed,
2-7: the error classes), never 70, never a traceback, and a failed command leaves
the store byte-identical.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_cli, store_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mreg import Blob
from mreg.errors import MregError
from mreg.registry import Registry

FUZZ = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------------- the grammar

ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))
PIECES = st.sampled_from(["@", "/", ".", "..", "-", "+", "sha256:", "latest", "v1", "1.0.0", "0", "x", "=", ">=", "\x00", "\x1b", " "])
TEXT = st.one_of(st.text(ALPHABET, max_size=40), st.lists(PIECES, max_size=8).map("".join))
ANYTHING = st.one_of(TEXT, st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.lists(st.integers(), max_size=3))


def grammar() -> dict[str, Callable[[Any], object]]:
    from mreg.operations import inputs as registration
    from mreg.records import manifest as objects
    from mreg.records import names, refs, versions

    return {
        "parse_ref": names.parse_ref,
        "parse_name_version": names.parse_name_version,
        "validate_name": names.validate_name,
        "validate_tag": names.validate_tag,
        "validate_key": names.validate_key,
        "validate_file_path": names.validate_file_path,
        "parse_digest_prefix": names.parse_digest_prefix,
        "parse_condition": names.parse_condition,
        "parse_assignment": lambda v: names.parse_assignment(v, "metadata"),
        "parse_number": lambda v: names.parse_number(v, "metric"),
        "parse_version": versions.parse_version,
        "parse_input_shape": registration.parse_input_shape,
        "parse_dataset": registration.parse_dataset,
        "parse_framework": registration.parse_framework,
        "ref table": lambda v: refs.RefTable.parse(v if isinstance(v, str) else repr(v)).problems(),
        "log": lambda v: refs.parse_log(v if isinstance(v, str) else repr(v), "log"),
        "input shape list": lambda v: objects.validate_input_shape([v]),
        "metrics": lambda v: objects.validate_metrics({"m": v}),
        "metadata": lambda v: objects.validate_properties({"k": v}),
    }


@FUZZ
@given(function=st.sampled_from(sorted(grammar())), value=ANYTHING)
def test_the_grammar_accepts_or_raises_an_mreg_error(function: str, value: Any) -> None:
    try:
        grammar()[function](value)
    except MregError:
        pass


@FUZZ
@given(text=TEXT)
def test_an_accepted_reference_reads_back_as_itself(text: str) -> None:
    from mreg.records.names import format_ref, parse_ref

    try:
        ref = parse_ref(text)
    except MregError:
        return
    assert parse_ref(format_ref(ref)) == ref


MSGPACK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


@FUZZ
@given(value=MSGPACK, raw=st.binary(max_size=64))
def test_stored_objects_decode_or_raise_an_mreg_error(value: Any, raw: bytes) -> None:
    from mreg.records.manifest import Manifest
    from mreg.storage.chunk_index import decode_chunk_index

    for data in (msgpack.packb(value), raw, msgpack.packb({"kind": "mreg.chunks", "size": 0, "chunks": value})):
        for decode in (Manifest.decode, decode_chunk_index):
            try:
                decode(data, "sha256:" + "0" * 64)
            except MregError:
                pass


# ----------------------------------------------------------------------------- the CLI

COMMANDS = "add tag rm show ls log resolve path cat-file hash-object fsck gc du config pull push clone update-server-info diff bogus".split()
TOKENS = [
    "m", "m@1.0.0", "m@2.0.0-rc.1", "m@prod", "m@latest", "m@9.9.9", "n", "team/vision/cls@1.0.0", "sha256:", "sha256:00000000",
    "", "@", "..", "../x", "a//b", "-", "--", "-x", "\x1b[31m", "é", "9" * 30, "1e999", "nan", "-1",
    "a=b", "acc=0.9", "acc>=0.9", "k=v", "prod", "latest", "v1", "1.0.0", "f.bin", "dir", "/dev/null", "/nonexistent", "x" * 300,
    "--json", "--tag", "--metric", "--meta", "--family", "--framework", "--input-shape", "--bump", "major", "-m", "-d", "-t", "-s", "-p",
    "-w", "--dry-run", "--force", "--repair", "--add", "--unset", "--get-all", "--list", "--help", "fallback.url", "http.timeout",
    "http://[::1", "http://a b", "http://127.0.0.1:1/x", "file:///etc/passwd",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a few models, versions, tags and files, copied for every example."""
    root = tmp_path_factory.mktemp("fuzz") / "template"
    registry = Registry.init(root)
    data = {"m@1.0.0": b"one" * 100, "m@2.0.0-rc.1": b"rc" * 100, "n@0.1.0": b"n" * 10, "team/vision/cls@1.0.0": b"cls"}
    for spec, content in data.items():
        registry.add(spec, [Blob("model.bin", lambda content=content: [content])], tags=["prod"] if spec == "m@1.0.0" else ())
    (root / "f.bin").write_bytes(b"file")
    (root / "dir").mkdir()
    (root / "dir" / "a.bin").write_bytes(b"a")
    return root


@FUZZ
@given(command=st.sampled_from(COMMANDS), args=st.lists(st.sampled_from(TOKENS), max_size=5))
def test_random_command_lines_succeed_or_fail_cleanly_leaving_the_store_as_it_was(
    template: Path, tmp_path: Path, command: str, args: list[str]
) -> None:
    work = tmp_path / f"example{len(list(tmp_path.iterdir()))}"
    shutil.copytree(template, work / "project")
    os.chdir(work / "project")
    registry = Registry(work / "project" / ".mreg")
    before = store_snapshot(registry)
    result = run_cli(command, *args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and result.exit_code != 70, (command, args, result)
    if result.exit_code != 0:
        assert 1 <= result.exit_code <= 7, (command, args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mreg: error: "), (command, args, result)
        assert store_snapshot(registry) == before, (command, args, result)
    shutil.rmtree(work)


# ------------------------------------------------ dates, durations, paths, and the commands they reach

MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1)


def iso(moment: Any, offset: int) -> str:
    sign = "+" if offset >= 0 else "-"
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    return f"{date}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


@FUZZ
@given(first=MOMENTS, second=MOMENTS, offset=OFFSETS)
def test_times_order_as_text_exactly_as_moments_do(first: Any, second: Any, offset: int) -> None:
    """Any time in any offset reads as fixed-width UTC text that orders as the moments do, or is refused."""
    from mreg.errors import InvalidRefError
    from mreg.records.names import is_log_time, parse_time

    texts = []
    for moment in (first, second):
        try:
            texts.append(parse_time(iso(moment, offset)))
        except InvalidRefError:
            return  # past the years 1-9999 once in UTC: refused, never a crash
    assert all(is_log_time(text) for text in texts)
    assert (texts[0] < texts[1]) == (first < second) and (texts[0] == texts[1]) == (first == second)


@FUZZ
@given(value=ANYTHING, function=st.sampled_from(["parse_seconds", "parse_time", "protected_segment", "path_clashes", "similar"]))
def test_the_new_grammar_accepts_or_raises_an_mreg_error(value: Any, function: str) -> None:
    from mreg.records import names, paths, suggestions

    calls: dict[str, Callable[[Any], object]] = {
        "parse_seconds": lambda v: names.parse_seconds(v, "a duration", maximum=3600),
        "parse_time": names.parse_time,
        "protected_segment": lambda v: paths.protected_segment(v if isinstance(v, str) else repr(v)),
        "path_clashes": lambda v: paths.path_clashes([v if isinstance(v, str) else repr(v), "a/b"]),
        "similar": lambda v: suggestions.similar(v if isinstance(v, str) else repr(v), ["resnet18", "a/b", ""]),
    }
    try:
        calls[function](value)
    except MregError:
        pass


TOUCHED = ["export", "fsck", "add", "show", "resolve", "ls", "log", "tag", "gc", "config"]
POSITIONALS = [
    "m", "m@1.0.0", "m@prod", "M", "mm", "n@0.1.0", "out", "f.bin", "dir", ".git", "out/.git/hooks", ".mreg", "s3://bucket/x",
    "m@prod@{0999-12-31}", "m@{0001-01-01T00:00:00+23:59}", "m@{9999-12-31T23:59:59-23:59}", "m@prod@{2026-13-01}",
    "m@latest@{0500-01-01T00:00:00-00:30}", "http.timeout", "cache.maxsize", "fallback.url", "nan", "1e300", "9" * 30,
]
NUMBERS = ["nan", "inf", "-inf", "1e300", "-1", "0", "24", "9" * 30, "\uff15", "x"]
OPTIONS = st.one_of(
    st.sampled_from([["--repair"], ["--json"], ["--copy"], ["--no-inherit"], ["--inherit"], ["--dry-run"], ["-m", "x"]]),
    st.tuples(st.just("--grace"), st.sampled_from(NUMBERS)).map(list),
    st.tuples(st.sampled_from(["--bump"]), st.sampled_from(["minor", "major", "patch", "x"])).map(list),
    st.tuples(st.sampled_from(["--meta", "--metric"]), st.sampled_from(["site=A", "acc=nan", "acc=1e999", "k"])).map(list),
    st.tuples(st.just("--parent"), st.sampled_from(POSITIONALS)).map(list),
    st.tuples(st.sampled_from(["--limit", "-n"]), st.sampled_from(NUMBERS)).map(list),
)
TOUCHED_ARGS = st.tuples(st.lists(st.sampled_from(POSITIONALS), max_size=2), st.lists(OPTIONS, max_size=3)).map(
    lambda parts: [*parts[0], *(token for option in parts[1] for token in option)]
)


@settings(FUZZ, max_examples=300)
@given(command=st.sampled_from(TOUCHED), args=TOUCHED_ARGS)
def test_the_commands_issue_22_touched_never_reach_an_internal_error(template: Path, tmp_path: Path, command: str, args: list[str]) -> None:
    work = tmp_path / f"example{len(list(tmp_path.iterdir()))}"
    shutil.copytree(template, work / "project")
    os.chdir(work / "project")
    result = run_cli(command, *args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and result.exit_code != 70, (command, args, result)
    if result.exit_code != 0:
        assert 1 <= result.exit_code <= 7, (command, args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mreg: error: "), (command, args, result)
    shutil.rmtree(work)
