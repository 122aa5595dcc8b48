"""Notes: added after registration, logged, shown, carried by push/pull/clone, kept by gc."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from conftest import run_cli

from mreg.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
    RefChangedError,
    RemoteError,
)
from mreg.operations.notes import DeprecatedVersionWarning, warn_if_deprecated
from mreg.records.notes import Note
from mreg.registry import Registry
from mreg.storage.refs import NOTES_FILE


@pytest.fixture
def demo(registry: Registry, make_file) -> Registry:
    registry.add("demo@1.0.0", [make_file("a", "a")], metrics={"acc": 0.8})
    registry.add("demo@1.1.0", [make_file("b", "b")], metrics={"acc": 0.7}, tags=["prod"])
    return registry


def test_note_changes_add_up_and_are_logged(demo: Registry) -> None:
    first = demo.note("demo@1.0.0", message="evaluated on set B", metrics={"test_acc": 0.91})
    assert (first.old, first.new is not None) == (None, True)
    second = demo.note("demo@1.0.0", metrics={"f1": 0.5})
    view = demo.get("demo@1.0.0")
    assert view.note is not None and view.note.message == "evaluated on set B"
    assert dict(view.evaluation) == {"test_acc": 0.91, "f1": 0.5} and dict(view.metrics) == {"acc": 0.8}
    assert view.note.previous == first.new and view.deprecated is None
    assert demo.note("demo@1.0.0", metrics={"f1": 0.5}).new == second.new  # saying it again changes nothing
    log = [e for e in demo.log("demo") if e.ref == "notes/1.0.0"]
    assert [(e.old, e.new) for e in log] == [(first.new, second.new), (None, first.new)]
    removed = demo.note("demo@1.0.0", remove=True)
    assert removed.new is None and demo.get("demo@1.0.0").note is None
    assert demo.log("demo")[0].ref == "notes/1.0.0" and demo.log("demo")[0].new is None
    assert demo.get("demo@1.1.0").note is None and demo.fsck().ok


def test_note_compare_and_swap_and_bad_input(demo: Registry) -> None:
    change = demo.note("demo@1.0.0", message="x", expected=None)
    with pytest.raises(RefChangedError):
        demo.note("demo@1.0.0", message="y", expected=None)
    demo.note("demo@1.0.0", message="y", expected=change.new)
    for bad in ({}, {"deprecated": " "}, {"remove": True, "message": "x"}, {"metrics": {"acc": float("nan")}},
                {"metrics": {"bad key": 1.0}}, {"deprecated": "r", "undeprecate": True}):
        with pytest.raises(InvalidInputError):
            demo.note("demo@1.0.0", **bad)
    with pytest.raises(NotFoundError):
        demo.note("demo@1.1.0", remove=True)
    with pytest.raises(NotFoundError):
        demo.note("demo@9.0.0", message="x")


def test_deprecation_is_reported_by_show_ls_and_loaders(demo: Registry) -> None:
    assert run_cli("note", "demo@1.0.0", "--deprecate", "trained on leaked labels", registry=demo).exit_code == 0
    shown = run_cli("show", "demo@1.0.0", registry=demo).stdout.splitlines()
    assert shown[1] == "DEPRECATED:   trained on leaked labels"
    listed = run_cli("ls", "demo", registry=demo).stdout.splitlines()
    assert listed[0].split()[-1] == "DEPRECATED" and listed[2].endswith("trained on leaked labels")
    with pytest.warns(DeprecatedVersionWarning, match="demo@1.0.0 is deprecated: trained on leaked labels"):
        warn_if_deprecated(demo.store, "demo@1.0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_deprecated(demo.store, "demo@1.1.0")
    demo.note("demo@1.0.0", undeprecate=True)
    assert demo.get("demo@1.0.0").deprecated is None


def test_note_cli_show_and_json(demo: Registry) -> None:
    result = run_cli("note", "demo@prod", "-m", "signed off by QA", "--metric", "test_acc=0.93", registry=demo)
    assert result.exit_code == 0 and result.stdout.startswith("noted demo@1.1.0: sha256:")
    lines = run_cli("show", "demo@prod", registry=demo).stdout.splitlines()
    assert "metrics:      acc=0.7" in lines and "  evaluation: test_acc=0.93" in lines and "  signed off by QA" in lines
    document = json.loads(run_cli("show", "demo@prod", "--json", registry=demo).stdout)
    assert document["metrics"] == {"acc": 0.7}
    assert document["notes"]["metrics"] == {"test_acc": 0.93} and document["notes"]["message"] == "signed off by QA"
    assert json.loads(run_cli("show", "demo@1.0.0", "--json", registry=demo).stdout)["notes"] is None
    assert "signed off by QA" in run_cli("note", "demo@prod", registry=demo).stdout
    assert "note 1.1.0" in run_cli("log", "demo", registry=demo).stdout.splitlines()[0]
    assert run_cli("ls", "demo", "--metric", "test_acc>0.9", registry=demo).stdout.splitlines()[1].startswith("1.1.0")
    assert run_cli("note", "demo@1.0.0", registry=demo).exit_code == 3  # no note to show
    assert run_cli("note", "demo@1.0.0", "--metric", "acc", registry=demo).exit_code == 2
    assert run_cli("note", "demo@prod", "--remove", registry=demo).stdout.startswith("removed the note on demo@1.1.0")


def test_gc_keeps_notes_and_their_history_and_fsck_checks_them(demo: Registry) -> None:
    first = demo.note("demo@1.0.0", message="one").new
    second = demo.note("demo@1.0.0", message="two").new
    assert demo.gc().objects == []
    assert demo.objects.contains(first) and demo.objects.contains(second)
    assert demo.disk_usage().unreachable == 0  # du agrees with gc: notes are kept
    demo.note("demo@1.0.0", remove=True)
    assert demo.disk_usage().unreachable > 0
    assert set(demo.gc().objects) == {first, second}
    demo.note("demo@1.0.0", message="three")
    table = demo.refs.model_dir("demo") / NOTES_FILE
    table.write_text(table.read_text().replace("sha256:", "sha256:0", 1)[:-2] + "\n")
    assert not demo.fsck().ok
    table.write_text("# mreg notes 1\n" + f"{demo.resolve('demo@1.0.0')} sha256:{'0' * 64}\n")
    assert any("is missing" in p for p in demo.fsck().problems)


def test_note_objects_are_validated() -> None:
    note = Note(target="sha256:" + "1" * 64, message="m", metrics={"a": 1.0})
    assert Note.decode(note.encode()) == note
    with pytest.raises(CorruptObjectError):
        Note.decode(b"\x81\xa4kind\xa9mreg.note")
    with pytest.raises(CorruptObjectError):
        Note.decode(note.encode().replace(b"sha256:1", b"sha256:X"))


def test_notes_travel_with_push_pull_and_clone(demo: Registry, tmp_path: Path) -> None:
    demo.note("demo@1.0.0", message="eval", metrics={"test_acc": 0.9})
    copy, _ = Registry.clone(str(demo.root.parent), str(tmp_path / "copy"))
    assert copy.get("demo@1.0.0").note == demo.get("demo@1.0.0").note and copy.fsck().ok
    assert any(e.ref == "notes/1.0.0" for e in copy.log("demo"))

    copy.note("demo@1.0.0", metrics={"f1": 0.4})  # changed on one side only: a fast-forward
    report = copy.push(str(demo.root.parent))
    assert report.notes == ["demo@1.0.0"] and dict(demo.get("demo@1.0.0").evaluation) == {"test_acc": 0.9, "f1": 0.4}
    assert demo.pull(str(copy.root.parent)).notes == []  # ours already descends from theirs... or equals it

    demo.note("demo@1.0.0", message="here")
    copy.note("demo@1.0.0", message="there")  # changed on both sides: a conflict
    before = demo.get("demo@1.0.0").note
    with pytest.raises(ConflictError, match="note on demo@1.0.0"):
        copy.push(str(demo.root.parent))
    assert demo.get("demo@1.0.0").note == before
    assert copy.push(str(demo.root.parent), force=True).notes == ["demo@1.0.0"]
    assert demo.get("demo@1.0.0").note.message == "there" and demo.fsck().ok
    demo.note("demo@1.1.0", message="new here")
    assert run_cli("pull", str(demo.root.parent), registry=copy).exit_code == 0
    assert copy.get("demo@1.1.0").note.message == "new here"


def test_notes_come_over_http_and_a_corrupt_one_is_refused(demo: Registry, tmp_path: Path, serve) -> None:
    change = demo.note("demo@1.0.0", message="eval")
    url = serve(demo.root).url
    copy = Registry.init(tmp_path / "copy")
    assert copy.pull(url).notes == ["demo@1.0.0"] and copy.get("demo@1.0.0").note.message == "eval"
    other = Registry.init(tmp_path / "other")
    blob = demo.objects.object_path(change.new)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b"eval", b"evil"))
    result = run_cli("pull", url, registry=other)
    assert result.exit_code == 7 and "note object" in result.stderr and "corrupt" in result.stderr
    assert other.refs.names() == []  # found before anything was copied


def test_load_model_warns_about_a_deprecated_version(registry: Registry) -> None:
    torch = pytest.importorskip("torch")
    from mreg.pytorch.models import load_model, register

    register(registry, "lin@1.0.0", torch.nn.Linear(2, 2))
    registry.note("lin@1.0.0", deprecated="superseded by lin@2.0.0")
    with pytest.warns(DeprecatedVersionWarning, match="lin@1.0.0 is deprecated: superseded by lin@2.0.0"):
        load_model(registry, "lin@1.0.0", model=torch.nn.Linear(2, 2))


def test_a_note_filed_under_another_version_is_refused(demo: Registry, tmp_path: Path) -> None:
    demo.note("demo@1.0.0", message="for 1.0.0")
    table = demo.refs.model_dir("demo") / NOTES_FILE
    table.write_text(table.read_text().replace(demo.resolve("demo@1.0.0"), demo.resolve("demo@1.1.0")))
    assert any("annotates another version" in p for p in demo.fsck().problems)
    copy = Registry.init(tmp_path / "copy")
    with pytest.raises(RemoteError, match="annotates another version"):
        copy.pull(str(demo.root))
    assert copy.refs.names() == []


def test_concurrent_notes_on_one_version_all_land(demo: Registry) -> None:
    import threading

    def note(index: int) -> None:
        Registry(demo.root).note("demo@1.0.0", metrics={f"m{index}": float(index)})

    threads = [threading.Thread(target=note, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view = demo.get("demo@1.0.0")
    assert dict(view.evaluation) == {f"m{i}": float(i) for i in range(4)}
    assert len(list(history_of(demo, view))) == 4 and demo.fsck().ok
    assert len([e for e in demo.log("demo") if e.ref == "notes/1.0.0"]) == 4


def history_of(registry: Registry, view):
    from mreg.records.notes import history

    return history(registry.store.note, registry.refs.read_notes("demo")[view.digest])
