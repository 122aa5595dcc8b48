"""The regulated team's scenario end to end (alice signs, two approve, the tag moves, someone
edits the log, a colleague pulls and verifies), from Python and from the shell.

alice registers and signs m@1.0.0; production needs 2 approvals; alice and bob approve;
the tag moves; someone edits the log; verify and fsck say so; a colleague pulls and
verifies with the same allowed signers file. Every signature mreg made is checked with
``ssh-keygen -Y verify`` (OpenSSH), a tool mreg did not write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_keys import allowed_signers, keys, needs_ssh_keygen, ssh_keygen_verifies  # noqa: F401 - fixture
from conftest import assert_clean_failure, run_cli, run_mreg

from mreg import Blob
from mreg.operations.protection import ProtectedTagError
from mreg.registry import Registry

pytestmark = needs_ssh_keygen
pytest.importorskip("cryptography")


def edit_log_line(registry: Registry, name: str, seq: int, old: str, new: str) -> None:
    """What someone with write access does: change one line of the log in place."""
    log = registry.root / "models" / name / "_log"
    lines = log.read_bytes().split(b"\n")
    assert old.encode() in lines[seq], lines[seq]
    lines[seq] = lines[seq].replace(old.encode(), new.encode())
    log.write_bytes(b"\n".join(lines))


def test_the_scenario_from_python(keys: dict[str, Path], tmp_path: Path) -> None:
    signers = allowed_signers(tmp_path / "allowed_signers", keys, "alice", "bob")
    team = Registry.init(tmp_path / "team")
    team.set_config("trust.allowedsigners", str(signers))
    team.set_config("user.signingkey", str(keys["alice"]))

    added = team.add("m@1.0.0", [Blob("model.bin", lambda: [b"weights" * 100])], sign=True)
    team.set_config("protect.production.approvals", "2")
    with pytest.raises(ProtectedTagError, match="needs 2 approval.* it has 0"):
        team.tag("m@1.0.0", "production")
    team.approve("m@1.0.0", "production", "validated on the March test set")
    team.approve("m@1.0.0", "production", "validated again")  # alice twice: counts once
    with pytest.raises(ProtectedTagError, match=r"it has 1 \(alice@example.com\): 1 missing.*second one from the same signer"):
        team.tag("m@1.0.0", "production")
    team.approve("m@1.0.0", "production", "clinical sign-off", key=str(keys["bob"]))
    moved = team.tag("m@1.0.0", "production")
    assert (moved.old, moved.new) == (None, "1.0.0")

    report = team.verify("m@1.0.0")
    assert report.ok, report.failures
    assert sorted((s.kind, s.principal, s.status) for s in report.signatures) == [
        ("approval", "alice@example.com", "valid"),
        ("approval", "alice@example.com", "valid"),
        ("approval", "bob@example.com", "valid"),
        ("registration", "alice@example.com", "valid"),
    ]
    assert all(s.text.endswith("\n") and f"manifest {added.digest}" in s.text for s in report.signatures)
    for status in report.signatures:  # the third party: OpenSSH accepts every signature mreg made
        checked = ssh_keygen_verifies(status, signers, tmp_path)
        assert checked.returncode == 0, checked.stderr
        assert f'Good "mreg" signature for {status.principal}' in checked.stdout.decode()
    assert [(a.tag, a.counted) for a in report.approvals] == [("production", ("alice@example.com", "bob@example.com"))]
    trail = team.audit("m")
    promotion = [e for e in trail.events if e.action == "promotion"]
    assert promotion and promotion[0].detail == "-> 1.0.0 (on 2 approval(s))"
    assert sorted(e.signer for e in trail.events if e.action == "approval") == ["alice@example.com", "alice@example.com", "bob@example.com"]

    colleague = Registry.init(tmp_path / "colleague")
    colleague.set_config("trust.allowedsigners", str(signers))
    colleague.set_config("protect.production.approvals", "2")  # the colleague's own policy holds on arrival
    pulled = colleague.pull(str(team.root.parent))
    assert pulled.tags == ["m@production -> 1.0.0"] and len(pulled.signatures) == 4
    assert colleague.verify("m@1.0.0").ok and colleague.fsck().ok

    seq = next(e.seq for e in trail.events if e.signer == "bob@example.com")
    edit_log_line(team, "m", seq, '"author":"tester"', '"author":"mallory"')  # who approved: rewritten
    after = team.verify("m@1.0.0")
    assert not after.ok and not after.history_intact
    assert any(f"seq {seq + 1}) does not follow seq {seq}" in failure for failure in after.failures), after.failures
    assert not team.fsck().ok
    assert any(f"seq {seq + 1}) does not follow seq {seq}" in problem for problem in team.fsck().problems)


def test_the_scenario_from_the_shell(keys: dict[str, Path], tmp_path: Path) -> None:
    signers = allowed_signers(tmp_path / "allowed_signers", keys, "alice", "bob")
    team = tmp_path / "team"
    (tmp_path / "model.bin").write_bytes(b"weights" * 100)

    def mreg(*args: str, where: Path = team) -> str:
        result = run_mreg("--registry", str(where), *args, cwd=tmp_path)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    mreg("init", str(team))
    mreg("config", "trust.allowedsigners", str(signers))
    mreg("config", "user.signingkey", str(keys["alice"]))
    mreg("add", "m@1.0.0", str(tmp_path / "model.bin"), "--sign")
    mreg("config", "protect.production.approvals", "2")
    refused = run_mreg("--registry", str(team), "tag", "m@1.0.0", "production", cwd=tmp_path)
    assert_clean_failure(refused, 4)
    assert "needs 2 approval(s)" in refused.stderr and "mreg approve m@1.0.0 --for production" in refused.stderr
    mreg("approve", "m@1.0.0", "--for", "production", "-m", "validated on the March test set")
    mreg("approve", "m@1.0.0", "--for", "production", "-m", "clinical sign-off", "--key", str(keys["bob"]))
    assert "m@production -> 1.0.0" in mreg("tag", "m@1.0.0", "production")
    verified = json.loads(mreg("verify", "m@1.0.0", "--json"))
    assert verified["ok"] and verified["approvals"][0]["met"]
    for status in verified["signatures"]:
        checked = ssh_keygen_verifies(_status(status), signers, tmp_path)
        assert checked.returncode == 0, checked.stderr
    assert "approval" in mreg("audit", "m") and "bob@example.com: valid" in mreg("audit", "m")

    colleague = tmp_path / "colleague"
    mreg("clone", str(team), str(colleague), where=colleague)
    mreg("config", "trust.allowedsigners", str(signers), where=colleague)
    assert "history:    intact" in mreg("verify", "m@1.0.0", where=colleague)

    log = team / ".mreg" / "models" / "m" / "_log"
    lines = log.read_text().splitlines()
    del lines[2]  # an entry dropped
    log.write_text("\n".join(lines) + "\n")
    for args in (("verify", "m@1.0.0"), ("fsck",), ("audit", "m")):
        broken = run_mreg("--registry", str(team), *args, cwd=tmp_path)
        assert broken.exit_code == 1 and "seq 3" in broken.stdout + broken.stderr, (args, broken)
    (tmp_path / "v2.bin").write_bytes(b"newer")
    mreg("add", "m@1.1.0", str(tmp_path / "v2.bin"))  # the team goes on writing after the damage
    refused = run_mreg("--registry", str(colleague), "pull", "origin", cwd=tmp_path)
    assert_clean_failure(refused, 7)
    assert "log of 'm'" in refused.stderr and "refused" in refused.stderr


def _status(data: dict) -> object:
    from mreg.records.audit import SignatureStatus

    return SignatureStatus(**data)


def test_a_colleague_refuses_a_history_rewritten_consistently(keys: dict[str, Path], tmp_path: Path) -> None:
    """A writer who rewrites the whole chain consistently passes the store's own fsck, but
    not a colleague who pulled the old history (history only grows)."""
    team = Registry.init(tmp_path / "team")
    team.add("m@1.0.0", [Blob("w", lambda: [b"one"])], message="first")
    colleague, _ = Registry.clone(str(team.root.parent), str(tmp_path / "colleague"))
    log = team.root / "models" / "m" / "_log"
    rewritten = _rechain(log.read_bytes().replace(b'"first"', b'"forged"'))
    log.write_bytes(rewritten)
    refs = (team.root / "models" / "m" / "_refs").read_text().splitlines()
    import hashlib

    last = rewritten.split(b"\n")[-2]
    refs[-1] = f"chain {len(rewritten.splitlines()) - 1} sha256:{hashlib.sha256(last).hexdigest()}"
    (team.root / "models" / "m" / "_refs").write_text("\n".join(refs) + "\n")
    assert team.fsck().ok  # consistent: the store alone cannot tell
    team.add("m@1.1.0", [Blob("w", lambda: [b"two"])])
    before = sorted(p.name for p in (colleague.root / "models" / "m").iterdir())
    result = run_cli("pull", "origin", registry=colleague)
    assert_clean_failure(result, 4)
    assert "history of 'm'" in result.stderr and "rewritten" in result.stderr
    assert sorted(p.name for p in (colleague.root / "models" / "m").iterdir()) == before
    assert "1.1.0" not in colleague.refs.read("m").versions


def _rechain(data: bytes) -> bytes:
    import hashlib

    lines, prev, out = data.split(b"\n")[:-1], "sha256:" + hashlib.sha256(b"").hexdigest(), []
    for line in lines:
        fields = json.loads(line)
        fields["prev"] = prev
        encoded = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
        out.append(encoded)
        prev = "sha256:" + hashlib.sha256(encoded).hexdigest()
    return b"".join(line + b"\n" for line in out)


def test_show_loads_no_signing_code(registry: Registry, tmp_path: Path) -> None:
    """`mreg show` stays as quick as it was: no cryptography, no signing, no chain code, no json."""
    from conftest import modules_loaded_by

    registry.add("m@1.0.0", [Blob("w.bin", lambda: [b"one"])])
    result, loaded = modules_loaded_by("show", "m@1.0.0", cwd=tmp_path, prefixes=["cryptography", "mreg.signing", "mreg.records.chain", "json"])
    assert result.exit_code == 0, result.stderr
    assert loaded == []
