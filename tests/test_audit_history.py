"""The hash-chained log: every way of tampering with it is seen, old stores keep working
and are sealed on their first write, and an interrupted change is no tampering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import assert_clean_failure, one_file, run_cli

from mreg.registry import Registry


@pytest.fixture
def model(registry: Registry) -> Registry:
    """m with three versions, a tag moved twice and a note: a dozen chained lines."""
    for i in range(3):
        registry.add(f"m@1.{i}.0", one_file(b"w%d" % i), message=f"v{i}")
    registry.tag("m@1.0.0", "prod")
    registry.tag("m@1.1.0", "prod")
    registry.note("m@1.1.0", message="evaluated")
    assert registry.fsck().ok
    return registry


def log_lines(registry: Registry) -> list[bytes]:
    return (registry.root / "models" / "m" / "_log").read_bytes().split(b"\n")[:-1]


def write_log(registry: Registry, lines: list[bytes]) -> None:
    (registry.root / "models" / "m" / "_log").write_bytes(b"".join(line + b"\n" for line in lines))


def problems(registry: Registry) -> list[str]:
    report = Registry(registry.root).fsck()
    verified = Registry(registry.root).verify("m@1.1.0")
    assert not report.ok and not verified.history_intact
    assert [p for p in report.problems if "model 'm'" in p]
    return report.problems


@pytest.mark.parametrize(
    ("tamper", "seen"),
    [
        ("edit", "line 4 (seq 3) does not follow seq 2"),
        ("drop", "line 3 has seq 3 after seq 1"),
        ("insert", "line 4 has seq 2 after seq 2"),
        ("reorder", "line 3 has seq 3 after seq 1"),
        ("cut the tail", "the log ends at seq"),
        ("edit the last line", "is not the one its head names"),
        ("splice from another log", "does not follow"),
        ("make it not canonical", "not in canonical form"),
    ],
)
def test_every_tampering_with_the_log_is_seen(model: Registry, tmp_path: Path, tamper: str, seen: str) -> None:
    lines = log_lines(model)
    if tamper == "edit":
        lines[2] = lines[2].replace(b'"v1"', b'"v9"')
    elif tamper == "drop":
        del lines[2]
    elif tamper == "insert":
        lines.insert(3, lines[2])
    elif tamper == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
    elif tamper == "cut the tail":
        lines = lines[:-2]
    elif tamper == "edit the last line":
        lines[-1] = lines[-1].replace(b'"tester"', b'"mallory"')
    elif tamper == "splice from another log":
        other = Registry.init(tmp_path / "other")
        for i in range(3):
            other.add(f"m@1.{i}.0", one_file(b"x%d" % i))
        lines = lines[:3] + (other.root / "models" / "m" / "_log").read_bytes().split(b"\n")[3:-1]
    else:
        lines[1] = json.dumps(json.loads(lines[1]), sort_keys=True).encode()  # same fields, spaces added
    write_log(model, lines)
    found = problems(model)
    assert any(seen in problem for problem in found), found
    result = run_cli("fsck", registry=model)
    assert result.exit_code == 1 and seen in result.stdout
    assert_clean_failure(run_cli("verify", "m@1.1.0", registry=model), 1)


@pytest.mark.parametrize("what", ["tag moved in _refs alone", "version added to _refs alone", "note changed alone", "signature filed alone"])
def test_a_state_changed_without_its_log_entry_is_seen(model: Registry, what: str) -> None:
    refs = model.root / "models" / "m" / "_refs"
    text = refs.read_text()
    if what == "tag moved in _refs alone":
        refs.write_text(text.replace("tag prod 1.1.0", "tag prod 1.2.0"))
    elif what == "version added to _refs alone":
        digest = model.resolve("m@1.2.0")
        refs.write_text(text.replace("latest 1.2.0", f"version 1.3.0 {digest}\nlatest 1.3.0").replace(f"version 1.2.0 {digest}\n", f"version 1.2.0 {digest}\n"))
    elif what == "note changed alone":
        model.note("m@1.0.0", message="other")
        notes = model.root / "models" / "m" / "_notes"
        table = notes.read_text().splitlines()
        notes.write_text("\n".join(table[:1] + table[2:]) + "\n")  # one note dropped
    else:
        digest = model.resolve("m@1.0.0")
        refs.write_text(text.replace("latest", f"signature {digest} sha256:{'1' * 64}\nlatest"))
    found = problems(model)
    assert any("log says" in p or "without a log entry" in p or "the log says" in p for p in found), found


def test_an_old_store_still_reads_and_is_sealed_by_its_first_write(tmp_path: Path) -> None:
    """A store written by mreg before chains (no seq, no prev, no chain line) works as it
    was; its first change seals the old lines: from then on they cannot change unseen."""
    registry = Registry.init(tmp_path)
    digest = registry.add("m@1.0.0", one_file(b"old weights"), tags=["prod"]).digest
    model = registry.root / "models" / "m"
    old = [
        {"time": "2025-01-01T00:00:00Z", "author": "old", "ref": "versions/1.0.0", "old": None, "new": digest, "message": "legacy"},
        {"time": "2025-01-01T00:00:00Z", "author": "old", "ref": "latest", "old": None, "new": "1.0.0", "message": "legacy"},
        {"time": "2025-01-02T00:00:00Z", "author": "old", "ref": "tags/prod", "old": None, "new": "1.0.0", "message": ""},
    ]
    legacy = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in old).encode()  # mreg 0.1's lines
    (model / "_log").write_bytes(legacy)
    (model / "_refs").write_text(f"# mreg refs 1\nversion 1.0.0 {digest}\ntag prod 1.0.0\nlatest 1.0.0\n")
    assert registry.resolve("m@prod") == digest and [e.message for e in registry.log("m")][-1] == "legacy"
    report = registry.fsck()
    assert report.ok and any("written before the log was chained" in note for note in report.notes)
    assert registry.resolve("m@prod@{2025-01-02}") == digest  # time travel reads the old lines

    registry.add("m@1.1.0", one_file(b"new weights"))
    data = (model / "_log").read_bytes()
    assert data.startswith(legacy)
    first = json.loads(data[len(legacy) :].split(b"\n")[0])
    assert first["seq"] == 0 and first["prev"] == "sha256:" + hashlib.sha256(legacy).hexdigest()
    assert registry.fsck().ok
    (model / "_log").write_bytes(data.replace(b'"author": "old"', b'"author": "eve"', 1))  # a sealed line edited
    assert any("were changed since it was written" in p for p in registry.fsck().problems)


def test_a_change_killed_before_its_commit_is_no_tampering(model: Registry) -> None:
    """Lines past the head of _refs: an interrupted change; fsck notes them, the next change drops them."""
    refs = model.root / "models" / "m" / "_refs"
    before = refs.read_bytes()
    model.tag("m@1.2.0", "prod")
    refs.write_bytes(before)  # as if killed between the log append and the rename of _refs
    report = model.fsck()
    assert report.ok, report.problems
    assert any("interrupted change" in note for note in report.notes)
    model.tag("m@1.0.0", "stable")
    assert model.fsck().ok and model.refs.read("m").tags == {"prod": "1.1.0", "stable": "1.0.0"}
    assert not any(e.ref == "tags/prod" and e.new == "1.2.0" for e in model.log("m"))


def test_a_head_moved_back_to_hide_a_line_is_tampering(model: Registry) -> None:
    refs = model.root / "models" / "m" / "_refs"
    before = refs.read_text()
    model.tag("m@1.2.0", "prod")
    after = refs.read_text()
    refs.write_text(after.replace(after.splitlines()[-1], before.splitlines()[-1]))  # the change stays, the head goes back
    assert any("the head was moved back" in p for p in model.fsck().problems)


def test_a_writer_refuses_a_log_that_does_not_end_at_its_head(model: Registry) -> None:
    write_log(model, log_lines(model)[:-1])  # the head's own line cut off
    before = {p.name: p.read_bytes() for p in (model.root / "models" / "m").iterdir() if p.is_file()}
    result = run_cli("tag", "m@1.2.0", "prod", registry=model)
    assert_clean_failure(result, 5)
    assert "run 'mreg fsck'" in result.stderr
    assert {p.name: p.read_bytes() for p in (model.root / "models" / "m").iterdir() if p.is_file()} == before


def test_a_change_reads_the_end_of_the_log_and_falls_back_to_all_of_it(model: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from mreg.storage import chained_log

    monkeypatch.setattr(chained_log, "TAIL", 40)  # shorter than any line: the head is never in the window
    model.tag("m@1.2.0", "prod")
    monkeypatch.setattr(chained_log, "TAIL", 1 << 20)
    model.tag("m@1.0.0", "stable")
    assert model.fsck().ok and model.refs.read("m").tags == {"prod": "1.2.0", "stable": "1.0.0"}


def test_a_note_killed_after_its_notes_file_was_replaced_is_kept(model: Registry) -> None:
    """Killed between the rename of _notes and that of _refs: the note took effect; fsck
    finds nothing wrong, and the next change keeps its line instead of dropping it."""
    refs = model.root / "models" / "m" / "_refs"
    before = refs.read_bytes()
    change = model.note("m@1.2.0", message="late result")
    refs.write_bytes(before)  # the head goes back to before the note: as if killed there
    assert model.fsck().ok, model.fsck().problems
    model.tag("m@1.0.0", "stable")
    assert model.fsck().ok
    assert any(e.ref == "notes/1.2.0" and e.new == change.new for e in model.log("m"))
