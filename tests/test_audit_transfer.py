"""Evidence travels (push, pull, clone, fallbacks, HTTP), histories only grow, tags
fast-forward, and conflict messages say which side is which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_keys import allowed_signers, keys, needs_ssh_keygen  # noqa: F401 - fixture
from conftest import assert_clean_failure, one_file, run_cli, store_snapshot

from mreg.registry import Registry

pytest.importorskip("cryptography")


@pytest.fixture
def signed(keys: dict[str, Path], tmp_path: Path) -> Registry:
    registry = Registry.init(tmp_path / "origin")
    registry.set_config("trust.allowedsigners", str(allowed_signers(tmp_path / "allowed", keys, "alice", "bob")))
    registry.set_config("user.signingkey", str(keys["alice"]))
    registry.add("m@1.0.0", one_file(b"one"), sign=True)
    registry.approve("m@1.0.0", "production", "validated", key=str(keys["bob"]))
    return registry


def trusting(path: Path, allowed: Path) -> Registry:
    registry = Registry.init(path)
    registry.set_config("trust.allowedsigners", str(allowed))
    return registry


@needs_ssh_keygen
@pytest.mark.parametrize("how", ["pull", "push", "clone", "http", "fallback"])
def test_signatures_travel_and_verify_against_the_receivers_trust_root(signed: Registry, tmp_path: Path, serve, how: str) -> None:
    allowed = tmp_path / "allowed"
    if how == "clone":
        copy, _ = Registry.clone(str(signed.root.parent), str(tmp_path / "copy"))
        copy.set_config("trust.allowedsigners", str(allowed))
    else:
        copy = trusting(tmp_path / "copy", allowed)
        if how == "pull":
            copy.pull(str(signed.root.parent))
        elif how == "push":
            signed.push(str(copy.root.parent))
        elif how == "http":
            copy.pull(serve(signed.root).url)
        else:
            copy.set_config("fallback.url", str(signed.root.parent))
    report = copy.verify("m@1.0.0")
    assert report.ok, report.failures
    assert sorted((s.kind, s.principal) for s in report.signatures) == [("approval", "bob@example.com"), ("registration", "alice@example.com")]
    if how != "fallback":
        assert copy.fsck().ok
        assert (copy.root / "models" / "m" / "_refs").read_text().count("signature ") == 2
    stranger = Registry.init(tmp_path / "stranger")  # its own trust root: alice alone
    (tmp_path / "alice_only").write_text(allowed.read_text().splitlines()[0] + "\n")
    stranger.set_config("trust.allowedsigners", str(tmp_path / "alice_only"))
    stranger.pull(str(signed.root.parent))
    verdicts = {s.principal: s.status for s in stranger.verify("m@1.0.0").signatures}
    assert verdicts == {"alice@example.com": "valid", "bob@example.com": "untrusted"}


def test_a_pull_refuses_a_source_whose_history_was_rewritten(tmp_path: Path) -> None:
    origin = Registry.init(tmp_path / "origin")
    origin.add("m@1.0.0", one_file(b"one"))
    copy = Registry.init(tmp_path / "copy")
    copy.pull(str(origin.root.parent))
    before = store_snapshot(copy)
    origin2 = Registry.init(tmp_path / "origin2")  # another history now answers at the same place
    origin2.add("m@1.0.0", one_file(b"one"), message="another history")
    origin2.add("m@1.1.0", one_file(b"two"))
    import shutil

    shutil.rmtree(origin.root)
    shutil.copytree(origin2.root, origin.root)
    result = run_cli("pull", str(origin.root.parent), "--force", registry=copy)
    assert_clean_failure(result, 4)
    assert "history of 'm'" in result.stderr and "rewritten" in result.stderr
    assert store_snapshot(copy) == before


def test_a_pulled_history_is_appended_never_rewritten(tmp_path: Path) -> None:
    origin, copy = Registry.init(tmp_path / "origin"), Registry.init(tmp_path / "copy")
    origin.add("m@1.0.0", one_file(b"one"), message="first")
    copy.add("m@0.1.0", one_file(b"local"), message="ours")
    mine = (copy.root / "models" / "m" / "_log").read_bytes()
    copy.pull(str(origin.root.parent))
    after = (copy.root / "models" / "m" / "_log").read_bytes()
    assert after.startswith(mine)  # the old lines stay as they were, in their order
    new = [json.loads(line) for line in after[len(mine) :].splitlines()]
    assert [line.get("via") for line in new if line["ref"] != "_merge"][:1] == [str(origin.root)]
    assert new[-1]["ref"] == "_merge" and new[-1]["from"] == str(origin.root)
    assert copy.fsck().ok
    origin.add("m@1.1.0", one_file(b"two"), message="second")
    copy.pull(str(origin.root.parent))
    imported = [(e.ref, e.message) for e in copy.log("m")]
    assert imported.count(("versions/1.0.0", "first")) == 1 and ("versions/1.1.0", "second") in imported  # only what is new came in


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_tag_fast_forwards_but_a_colleagues_move_needs_force(tmp_path: Path, direction: str) -> None:
    """A push (or pull) moves a tag that only this side moved since the two last
    agreed; a tag the other side moved meanwhile (a rollback, say) needs --force."""
    mine, shared = Registry.init(tmp_path / "mine"), Registry.init(tmp_path / "shared")
    for i in range(4):
        mine.add(f"m@1.{i}.0", one_file(b"w%d" % i))
    mine.tag("m@1.0.0", "prod")
    mine.push(str(shared.root.parent))
    colleague = Registry.init(tmp_path / "colleague")
    colleague.pull(str(shared.root.parent))
    if direction == "push":
        mine.tag("m@1.1.0", "prod")
        assert mine.push(str(shared.root.parent)).tags == ["m@prod -> 1.1.0"]  # no --force: a fast-forward
        shared.tag("m@1.0.0", "prod")  # a colleague rolls it back, there
        mine.tag("m@1.2.0", "prod")
        result = run_cli("push", str(shared.root.parent), registry=mine)
        assert_clean_failure(result, 4)
        assert "tag m@prod points at 1.0.0 there but 1.2.0 here" in result.stderr
        assert shared.refs.read("m").tags["prod"] == "1.0.0"
    else:
        shared.tag("m@1.1.0", "prod")
        assert colleague.pull(str(shared.root.parent)).tags == ["m@prod -> 1.1.0"]
        colleague.tag("m@1.3.0", "prod")  # moved here since: a pull cannot take theirs without force
        shared.tag("m@1.2.0", "prod")
        result = run_cli("pull", str(shared.root.parent), registry=colleague)
        assert_clean_failure(result, 4)
        assert "tag m@prod points at 1.3.0 here but 1.2.0 there" in result.stderr


def test_push_conflicts_say_here_and_there_the_right_way_round(tmp_path: Path) -> None:
    """In a push, 'here' is this registry (the source) and 'there' the destination."""
    mine, other = Registry.init(tmp_path / "mine"), Registry.init(tmp_path / "other")
    mine_digest = mine.add("m@1.0.0", one_file(b"mine")).digest
    other_digest = other.add("m@1.0.0", one_file(b"theirs")).digest
    pushed = run_cli("push", str(other.root.parent), registry=mine)
    assert f"m@1.0.0 is {other_digest[:15]} there but {mine_digest[:15]} here" in pushed.stderr
    pulled = run_cli("pull", str(other.root.parent), registry=mine)
    assert f"m@1.0.0 is {mine_digest[:15]} here but {other_digest[:15]} there" in pulled.stderr


def test_note_conflicts_in_a_push_say_here_and_there_the_right_way_round(tmp_path: Path) -> None:
    mine = Registry.init(tmp_path / "mine")
    mine.add("m@1.0.0", one_file(b"w"))
    other, _ = Registry.clone(str(mine.root.parent), str(tmp_path / "other"))
    ours, theirs = mine.note("m@1.0.0", message="mine").new, other.note("m@1.0.0", message="theirs").new
    pushed = run_cli("push", str(other.root.parent), registry=mine)
    assert_clean_failure(pushed, 4)
    assert f"the note on m@1.0.0 is {theirs[:15]} there but {ours[:15]} here" in pushed.stderr
