"""Ref tables (versions, tags, latest), their text form, the reflog and the model lock."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli

from mreg.errors import CorruptRefsError, LockTimeoutError
from mreg.records.refs import RefTable, changes
from mreg.registry import Registry
from mreg.storage.refs import RefStore


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def table_of(*versions: str) -> RefTable:
    table = RefTable()
    for i, version in enumerate(versions):
        table = table.with_version(version, digest(i))
    return table


def test_with_version_keeps_ascending_precedence() -> None:
    table = table_of("1.0.0", "2.0.0-rc.1", "0.1.0", "1.10.0", "1.9.0", "2.0.0", "1.0.0-alpha")
    assert list(table.versions) == ["0.1.0", "1.0.0-alpha", "1.0.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]
    assert table.versions["1.9.0"] == digest(4)


def test_with_version_does_not_change_the_original() -> None:
    table = table_of("1.0.0")
    table.with_version("2.0.0", digest(9))
    assert list(table.versions) == ["1.0.0"] and table.latest == "1.0.0"


@pytest.mark.parametrize(
    "versions, latest",
    [
        (["1.0.0-alpha"], "1.0.0-alpha"),
        (["1.0.0-alpha", "1.0.0-beta"], "1.0.0-beta"),
        (["2.0.0-rc.1", "1.0.0"], "1.0.0"),  # a release beats a higher pre-release
        (["1.0.0", "2.0.0-rc.1"], "1.0.0"),
        (["1.0.0", "0.9.0"], "1.0.0"),
        (["1.0.0", "1.1.0", "3.0.0-rc.1", "1.2.0"], "1.2.0"),
    ],
)
def test_with_version_moves_latest_by_the_contract_rule(versions: list[str], latest: str) -> None:
    assert table_of(*versions).latest == latest


def test_without_version_drops_its_tags_and_recomputes_latest() -> None:
    table = table_of("1.0.0", "1.1.0", "2.0.0-rc.1").with_tag("prod", "1.1.0").with_tag("old", "1.0.0")
    assert table.latest == "1.1.0"
    after = table.without_version("1.1.0")
    assert list(after.versions) == ["1.0.0", "2.0.0-rc.1"]
    assert after.tags == {"old": "1.0.0"} and after.latest == "1.0.0"
    only_pre = after.without_version("1.0.0")
    assert only_pre.latest == "2.0.0-rc.1" and only_pre.tags == {}
    assert only_pre.without_version("2.0.0-rc.1") == RefTable()


def test_without_version_keeps_latest_when_another_goes() -> None:
    assert table_of("1.0.0", "2.0.0").without_version("1.0.0").latest == "2.0.0"


def test_tags() -> None:
    table = table_of("1.0.0", "2.0.0").with_tag("prod", "1.0.0").with_tag("canary", "2.0.0").with_tag("beta", "2.0.0")
    assert table.tags_of("2.0.0") == ["beta", "canary"] and table.tags_of("1.0.0") == ["prod"]
    assert table.with_tag("prod", "2.0.0").tags["prod"] == "2.0.0"
    assert "prod" not in table.without_tag("prod").tags


def test_same_precedence() -> None:
    table = table_of("1.0.0+a", "2.0.0")
    assert table.same_precedence("1.0.0+b") == "1.0.0+a"
    assert table.same_precedence("1.0.0") == "1.0.0+a"
    assert table.same_precedence("1.0.1") is None


def test_encode_text_and_parse_round_trip() -> None:
    table = table_of("1.0.0", "2.0.0-rc.1").with_tag("prod", "1.0.0").with_tag("beta", "2.0.0-rc.1")
    text = table.encode().decode("ascii")
    assert text == (
        "# mreg refs 1\n"
        f"version 1.0.0 {digest(0)}\n"
        f"version 2.0.0-rc.1 {digest(1)}\n"
        "tag beta 2.0.0-rc.1\n"
        "tag prod 1.0.0\n"
        "latest 1.0.0\n"
    )
    assert RefTable.parse(text) == table
    assert RefTable.parse(RefTable().encode().decode()) == RefTable()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "version 1.0.0 sha256:00\n",
        "# mreg refs 2\n",
        "# mreg refs 1\nversion 1.0.0\n",
        "# mreg refs 1\ntag prod\n",
        "# mreg refs 1\nlatest 1.0.0 extra\n",
        "# mreg refs 1\nlatest\n",
        "# mreg refs 1\n\n",
        "# mreg refs 1\nbranch main 1.0.0\n",
    ],
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(CorruptRefsError, match="corrupt"):
        RefTable.parse(text)


def test_problems_of_a_sound_table() -> None:
    assert table_of("1.0.0", "2.0.0-rc.1").with_tag("prod", "1.0.0").problems() == []
    assert RefTable().problems() == []


def test_problems_finds_each_fault() -> None:
    unsorted = RefTable({"2.0.0": digest(1), "1.0.0": digest(0)}, {}, "2.0.0")
    assert unsorted.problems() == ["versions are not in precedence order"]
    dangling = RefTable({"1.0.0": digest(0)}, {"prod": "9.9.9"}, "1.0.0")
    assert dangling.problems() == ["tag prod points at missing version 9.9.9"]
    wrong_latest = RefTable({"1.0.0": digest(0), "2.0.0-rc.1": digest(1)}, {}, "2.0.0-rc.1")
    assert wrong_latest.problems() == ["latest is 2.0.0-rc.1 but should be 1.0.0"]
    no_latest = RefTable({"1.0.0": digest(0)}, {}, None)
    assert no_latest.problems() == ["latest is None but should be 1.0.0"]
    bad = RefTable({"1.0": digest(0), "2.0.0": "sha256:xyz"}, {}, "2.0.0")
    assert bad.problems() == ["invalid version '1.0'", "version 2.0.0 points at invalid digest 'sha256:xyz'"]


def test_changes() -> None:
    old = table_of("1.0.0").with_tag("prod", "1.0.0")
    new = old.with_version("2.0.0", digest(5)).with_tag("prod", "2.0.0").without_tag("missing")
    assert changes(old, new) == [
        ("versions/2.0.0", None, digest(5)),
        ("tags/prod", "1.0.0", "2.0.0"),
        ("latest", "1.0.0", "2.0.0"),
    ]
    assert changes(new, new) == []
    assert changes(new, new.without_version("1.0.0")) == [("versions/1.0.0", digest(0), None)]


def read_log(store: RefStore, name: str) -> list[dict]:
    return [json.loads(line) for line in (store.model_dir(name) / "_log").read_text().splitlines()]


def test_update_writes_one_log_line_per_changed_ref(registry: Registry) -> None:
    store = registry.refs
    with store.update("org/demo", author="alice", message="first", time="T1") as update:
        update.table = update.table.with_version("1.0.0", digest(1)).with_tag("prod", "1.0.0")
    assert store.read("org/demo") == RefTable({"1.0.0": digest(1)}, {"prod": "1.0.0"}, "1.0.0")
    lines = read_log(store, "org/demo")
    assert [line["ref"] for line in lines] == ["versions/1.0.0", "tags/prod", "latest"]
    chain = {"seq": 0, "prev": "sha256:" + hashlib.sha256(b"").hexdigest()}  # the first line of a hash chain
    assert lines[0] == {"time": "T1", "author": "alice", "ref": "versions/1.0.0", "old": None, "new": digest(1), "message": "first", **chain}
    with store.update("org/demo", author="bob", message="", time="T2") as update:
        update.table = update.table.with_tag("prod", "1.0.0")  # no change at all
    assert len(read_log(store, "org/demo")) == 3
    with store.update("org/demo", author="bob", message="", time="T3") as update:
        update.table = update.table.with_version("2.0.0", digest(2))
    assert [line["ref"] for line in read_log(store, "org/demo")[3:]] == ["versions/2.0.0", "latest"]
    entries, problems = store.log("org/demo")
    assert len(entries) == 5 and problems == [] and entries[-1].old == "1.0.0"
    assert store.names() == ["org/demo"]


def test_failed_update_changes_nothing(registry: Registry) -> None:
    store = registry.refs
    with store.update("demo", author="a", message="", time="T") as update:
        update.table = update.table.with_version("1.0.0", digest(1))
    before = (store.model_dir("demo") / "_refs").read_bytes()
    with pytest.raises(RuntimeError):
        with store.update("demo", author="a", message="", time="T") as update:
            update.table = update.table.with_version("2.0.0", digest(2))
            raise RuntimeError("caller changed its mind")
    assert (store.model_dir("demo") / "_refs").read_bytes() == before
    assert len(read_log(store, "demo")) == 2


def test_log_reports_unreadable_lines(registry: Registry) -> None:
    store = registry.refs
    with store.update("demo", author="a", message="", time="T") as update:
        update.table = update.table.with_version("1.0.0", digest(1))
    with open(store.model_dir("demo") / "_log", "a") as log:
        log.write("{not json\n")
    entries, problems = store.log("demo")
    assert len(entries) == 2 and problems == ["log of 'demo' line 3 is unreadable"]


HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def locked_model(registry: Registry, make_file):
    """A model 'demo' whose _lock another process holds until the fixture ends."""
    registry.add("demo@1.0.0", [make_file("w", b"one")])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(registry.refs.model_dir("demo") / "_lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    yield holder
    if holder.poll() is None:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=10)


def test_update_waits_for_the_model_lock(registry: Registry, locked_model: subprocess.Popen) -> None:
    done = threading.Event()
    errors: list[BaseException] = []

    def tag() -> None:
        try:
            registry.tag("demo@1.0.0", "prod")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=tag)
    thread.start()
    assert not done.wait(0.3), "the update did not wait for the lock"
    assert "prod" not in registry.refs.read("demo").tags
    locked_model.stdin.close()  # type: ignore[union-attr]
    locked_model.wait(timeout=10)
    assert done.wait(10)
    thread.join()
    assert errors == []
    assert registry.refs.read("demo").tags == {"prod": "1.0.0"}


def test_update_times_out_on_a_held_lock(
    registry: Registry, locked_model: subprocess.Popen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MREG_LOCK_TIMEOUT", "0.2")
    before = (registry.refs.model_dir("demo") / "_refs").read_bytes()
    started = time.monotonic()
    with pytest.raises(LockTimeoutError, match="MREG_LOCK_TIMEOUT") as caught:
        registry.tag("demo@1.0.0", "prod")
    assert 0.15 <= time.monotonic() - started < 5
    assert isinstance(caught.value, TimeoutError)
    result = run_cli("tag", "demo@1.0.0", "prod")
    assert_clean_failure(result, code=6)
    assert (registry.refs.model_dir("demo") / "_refs").read_bytes() == before


def test_model_dir_stays_inside_the_store(registry: Registry) -> None:
    store = registry.refs
    assert store.model_dir("a/b/c") == registry.root / "models" / "a" / "b" / "c"
    with pytest.raises(ValueError):
        store.model_dir("../../etc")
    assert isinstance(store.model_dir("x"), Path)
