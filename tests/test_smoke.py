"""A first end-to-end pass over the contract's 'done when' session."""

from __future__ import annotations

import json

from conftest import run_cli, run_mreg


def test_quick_start_session(make_file) -> None:
    somefile = make_file("somefile", "hello\n")
    assert run_cli("init").exit_code == 0
    added = run_cli("add", "demo@1.0.0", str(somefile), "--metric", "acc=0.9")
    assert added.exit_code == 0, added
    digest = added.stdout.strip().splitlines()[-1]
    shown = run_cli("show", "demo", "--json")
    document = json.loads(shown.stdout)
    assert document["digest"] == digest
    assert document["name"] == "demo" and document["version"] == "1.0.0"
    assert document["metrics"] == {"acc": 0.9}
    assert document["files"] == [
        {
            "path": "somefile",
            "digest": "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            "size": 6,
        }
    ]
    assert document["tags"] == ["latest"]
    assert set(document["lineage"]) >= {"created", "author", "datasets", "parents"}


def test_real_subprocess_round_trip(make_file, tmp_path) -> None:
    somefile = make_file("somefile", "hello\n")
    assert run_mreg("init", cwd=tmp_path).exit_code == 0
    added = run_mreg("add", "demo@1.0.0", str(somefile), cwd=tmp_path)
    assert added.exit_code == 0, added.stderr
    resolved = run_mreg("resolve", "demo@latest", cwd=tmp_path)
    assert resolved.stdout.strip() == added.stdout.strip().splitlines()[-1]
