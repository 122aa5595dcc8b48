"""Signatures, approvals and protected tags against bad input and attacks: each is one
clear ``mreg: error:`` line (or a named failure of ``verify``), the store as it was,
and no private key byte printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_keys import PRINCIPALS, allowed_signers, keys, needs_ssh_keygen, public_line  # noqa: F401 - fixture
from conftest import assert_clean_failure, one_file, run_cli, store_snapshot

from mreg.errors import NotFoundError
from mreg.operations.protection import ProtectedTagError
from mreg.records.evidence import SignedStatement
from mreg.registry import Registry

pytestmark = needs_ssh_keygen
pytest.importorskip("cryptography")


@pytest.fixture
def team(keys: dict[str, Path], tmp_path: Path) -> Registry:
    """m@1.0.0 and m@1.1.0, signed by alice; alice and bob trusted; production needs 2 approvals."""
    registry = Registry.init(tmp_path / "team")
    registry.set_config("trust.allowedsigners", str(allowed_signers(tmp_path / "allowed", keys, "alice", "bob")))
    registry.set_config("user.signingkey", str(keys["alice"]))
    registry.add("m@1.0.0", one_file(b"one"), metrics={"auc": 0.8}, sign=True)
    registry.add("m@1.1.0", one_file(b"two"), metrics={"auc": 0.95}, sign=True)
    registry.set_config("protect.production.approvals", "2")
    return registry


def failures(registry: Registry, ref: str = "m@1.0.0") -> list[str]:
    report = registry.verify(ref)
    assert not report.ok
    return report.failures


def test_a_signer_not_in_the_allowed_signers_file_does_not_count(team: Registry, keys: dict[str, Path]) -> None:
    team.set_config("user.principal", "carol@example.com")
    team.approve("m@1.0.0", "production", "looks fine", key=str(keys["carol"]))
    team.approve("m@1.0.0", "production", "ok", key=str(keys["bob"]))
    found = failures(team)
    assert any("carol@example.com: untrusted" in f and "is not in" in f for f in found), found
    with pytest.raises(ProtectedTagError, match=r"it has 1 \(bob@example.com\).*carol@example.com's approval does not count"):
        team.tag("m@1.0.0", "production")
    assert run_cli("verify", "m@1.0.0", registry=team).exit_code == 1


def test_a_signer_removed_or_expired_in_the_trust_root_no_longer_counts(team: Registry, keys: dict[str, Path], tmp_path: Path) -> None:
    team.approve("m@1.1.0", "production", "validated")
    team.approve("m@1.1.0", "production", "validated", key=str(keys["bob"]))
    team.tag("m@1.1.0", "production")
    assert team.verify("m@1.1.0").ok
    allowed_signers(tmp_path / "allowed", keys, "alice")  # bob left the team: his key is gone
    assert any("bob@example.com: untrusted" in f for f in failures(team, "m@1.1.0"))
    assert any("tag production points here but is no longer approved" in f for f in failures(team, "m@1.1.0"))
    allowed_signers(tmp_path / "allowed", keys, "alice", "bob", options='valid-before="20000101Z"')  # expired long before he signed
    assert any("bob@example.com: untrusted" in f and "expired at 2000-01-01" in f for f in failures(team, "m@1.1.0"))


def test_a_signature_replayed_onto_another_version_or_tag_does_not_count(team: Registry, keys: dict[str, Path]) -> None:
    (approval,) = team.approve("m@1.0.0", "production", "validated")
    team.approve("m@1.0.0", "staging", "validated", key=str(keys["bob"]))  # for another tag
    target = team.resolve("m@1.1.0")
    with team.store.refs.update("m", author="mallory", message="", time="2026-01-01T00:00:00Z") as update:
        update.table = update.table.with_signatures([(target, approval.signature)])  # filed under another version
    found = failures(team, "m@1.1.0")
    assert any("it signs m@1.0.0" in f and "not m@1.1.0" in f and "replayed" in f for f in found), found
    with pytest.raises(ProtectedTagError, match="it has 0"):
        team.tag("m@1.1.0", "production")
    with pytest.raises(ProtectedTagError, match=r"it has 1 \(alice@example.com\)"):
        team.tag("m@1.0.0", "production")  # bob's approval is for staging


def test_one_key_listed_for_two_principals_approves_once(team: Registry, keys: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "allowed").write_text(f"alice@example.com {public_line(keys['alice'])}\nbob@example.com {public_line(keys['alice'])}\n")
    team.set_config("user.principal", "bob@example.com")
    team.approve("m@1.0.0", "production", "as alice")
    team.set_config("user.principal", "alice@example.com")
    team.approve("m@1.0.0", "production", "as alice again")
    with pytest.raises(ProtectedTagError, match="same signer or key"):
        team.tag("m@1.0.0", "production")


def test_a_revoked_approval_no_longer_counts_and_stays_on_record(team: Registry, keys: dict[str, Path]) -> None:
    team.approve("m@1.1.0", "production", "validated")
    team.approve("m@1.1.0", "production", "validated", key=str(keys["bob"]))
    team.tag("m@1.1.0", "production")
    (revocation,) = team.approve("m@1.1.0", "production", "found a leak in the test set", key=str(keys["bob"]), revoke=True)
    assert revocation.kind == "revocation" and revocation.revokes
    report = team.verify("m@1.1.0")
    bob = [s for s in report.signatures if s.principal == "bob@example.com" and s.kind == "approval"]
    assert bob and bob[0].revoked_by == revocation.signature and bob[0].status == "valid"  # still there, withdrawn
    assert not report.ok and any("no longer approved" in f and "revoked by" in f for f in report.failures)
    assert any(e.action == "revocation" and e.signer == "bob@example.com" for e in team.audit("m").events)
    with pytest.raises(NotFoundError, match="no approval"):
        team.approve("m@1.1.0", "production", "again", key=str(keys["bob"]), revoke=True)
    team.untag("m", "production")
    with pytest.raises(ProtectedTagError, match="revoked by"):
        team.tag("m@1.1.0", "production")


def test_metric_requirements_of_a_protected_tag(team: Registry, keys: dict[str, Path]) -> None:
    team.set_config("protect.production.approvals", "0")
    team.set_config("protect.production.require", "auc>=0.9")
    with pytest.raises(ProtectedTagError, match="production requires auc>=0.9: m@1.0.0 has auc=0.8"):
        team.tag("m@1.0.0", "production")
    assert team.tag("m@1.1.0", "production").new == "1.1.0"
    team.note("m@1.0.0", metrics={"auc": 0.91})  # a later evaluation counts, as in `mreg ls`
    assert team.tag("m@1.0.0", "production").new == "1.0.0"


def test_add_cannot_point_a_protected_tag(team: Registry) -> None:
    before = store_snapshot(team)
    result = run_cli("add", "m@2.0.0", str(_file(team, b"new")), "--tag", "production", registry=team)
    assert_clean_failure(result, 4)
    assert "protected" in result.stderr and "mreg approve" in result.stderr
    assert store_snapshot(team) == before


def _file(registry: Registry, data: bytes) -> Path:
    path = registry.root.parent / "input.bin"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["missing key", "open permissions", "not a key", "a directory", "no principal"])
def test_a_bad_key_leaves_the_store_as_it_was_and_prints_no_key(team: Registry, keys: dict[str, Path], tmp_path: Path, case: str) -> None:
    key = tmp_path / "key"
    secret = keys["carol"].read_bytes()
    if case == "open permissions":
        key.write_bytes(secret)
        key.chmod(0o644)
    elif case == "not a key":
        key.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot really a key\n-----END OPENSSH PRIVATE KEY-----\n")
        key.chmod(0o600)
    elif case == "a directory":
        key.mkdir()
    elif case == "no principal":
        key.write_bytes(secret)
        key.chmod(0o600)
    path = _file(team, b"new weights")
    before = store_snapshot(team)
    for args in (("add", "m@2.0.0", str(path), "--sign", "--key", str(key)), ("sign", "m@1.0.0", "--key", str(key)),
                 ("approve", "m@1.0.0", "--for", "production", "-m", "ok", "--key", str(key))):
        result = run_cli(*args, registry=team)
        assert_clean_failure(result, 2)
        assert store_snapshot(team) == before, args
        body = b"".join(secret.split(b"\n")[1:-2])
        for chunk in (body[i : i + 24].decode() for i in range(0, len(body), 24)):
            assert chunk not in result.stderr + result.stdout
    expected = {"missing key": "does not exist", "open permissions": "too open", "not a key": "not a private key",
                "a directory": "is a directory", "no principal": "user.principal"}[case]
    assert expected in result.stderr


MALFORMED = ["alice@example.com ssh-ed25519 AAAA!!notbase64\n", "just garbage\n", 'alice@example.com namespaces="mreg ssh-ed25519 AAAA\n']


@pytest.mark.parametrize("content", MALFORMED)
def test_a_malformed_allowed_signers_file_is_one_clear_error(team: Registry, tmp_path: Path, content: str) -> None:
    (tmp_path / "allowed").write_text(content)
    before = store_snapshot(team)
    for args in (("verify", "m@1.0.0"), ("tag", "m@1.0.0", "production"), ("audit", "m")):
        result = run_cli(*args, registry=team)
        assert_clean_failure(result, 2)
        assert "allowed" in result.stderr
    assert store_snapshot(team) == before


def test_the_trust_root_may_not_live_in_the_store(team: Registry, tmp_path: Path) -> None:
    inside = team.root / "allowed_signers"
    inside.write_text((tmp_path / "allowed").read_text())
    team.set_config("trust.allowedsigners", str(inside))
    result = run_cli("verify", "m@1.0.0", registry=team)
    assert_clean_failure(result, 2)
    assert "inside the registry" in result.stderr


def test_a_malformed_or_forged_signature_object_is_invalid_and_never_travels(team: Registry, tmp_path: Path) -> None:
    good = team.verify("m@1.0.0").signatures[0]
    forged = SignedStatement(good.text.replace("registered", "approved").encode(), good.armor)  # same signature, other text
    garbage = team.store.objects.add_bytes(b"\x84not a signature at all").digest
    forged_digest = team.store.objects.add_bytes(forged.encode()).digest
    target = team.resolve("m@1.0.0")
    with team.store.refs.update("m", author="mallory", message="", time="2026-01-01T00:00:00Z") as update:
        update.table = update.table.with_signatures([(target, garbage), (target, forged_digest)])
    found = failures(team)
    assert any("cannot be read" in f for f in found) and any("does not match" in f for f in found), found
    assert any("not a signature object" in p or "not an mreg signature" in p for p in team.fsck().problems)
    copy = Registry.init(tmp_path / "copy")
    copy.set_config("trust.allowedsigners", str(tmp_path / "allowed"))
    result = run_cli("pull", str(team.root.parent), registry=copy)
    assert_clean_failure(result, 4)
    assert "malformed" in result.stderr or "does not verify" in result.stderr
    assert copy.refs.names() == []


def test_require_signed_refuses_unsigned_versions(team: Registry, tmp_path: Path) -> None:
    team.add("m@2.0.0", one_file(b"unsigned"))
    copy = Registry.init(tmp_path / "copy")
    copy.set_config("trust.allowedsigners", str(tmp_path / "allowed"))
    result = run_cli("pull", str(team.root.parent), "--require-signed", registry=copy)
    assert_clean_failure(result, 4)
    assert "m@2.0.0 has no valid registration signature" in result.stderr and "m@1.0.0" not in result.stderr
    assert copy.refs.names() == []
    copy.set_config("pull.requiresigned", "true")
    assert run_cli("pull", str(team.root.parent), registry=copy).exit_code == 4
    assert run_cli("pull", str(team.root.parent), "--no-require-signed", registry=copy).exit_code == 0
    assert copy.verify("m@1.0.0").ok


def test_a_pull_or_push_moves_a_protected_tag_only_with_its_approvals(team: Registry, keys: dict[str, Path], tmp_path: Path) -> None:
    loose = Registry.init(tmp_path / "loose")  # a store without the policy, where production moved unapproved
    loose.pull(str(team.root.parent))
    loose.tag("m@1.1.0", "production")
    strict = Registry.init(tmp_path / "strict")
    strict.set_config("trust.allowedsigners", str(tmp_path / "allowed"))
    strict.set_config("protect.production.approvals", "2")
    for force in ([], ["--force"]):
        result = run_cli("pull", str(loose.root.parent), *force, registry=strict)
        assert_clean_failure(result, 4)
        assert "m@production: production needs 2 approval(s)" in result.stderr
    assert strict.refs.names() == []
    with team.store.refs.update("m", author="x", message="", time="2026-01-01T00:00:00Z") as update:
        update.table = update.table.with_tag("production", "1.1.0")  # a tag set behind the policy's back
    shared = Registry.init(tmp_path / "shared")
    result = run_cli("push", str(shared.root.parent), "--force", registry=team)  # this registry's policy holds on what it publishes
    assert_clean_failure(result, 4)
    assert "production needs 2 approval(s)" in result.stderr and shared.refs.names() == []
    team.approve("m@1.1.0", "production", "validated")
    team.approve("m@1.1.0", "production", "validated", key=str(keys["bob"]))
    assert run_cli("push", str(shared.root.parent), registry=team).exit_code == 0
    assert strict.pull(str(shared.root.parent)).tags == ["m@production -> 1.1.0"]
    assert PRINCIPALS["bob"] in strict.verify("m@1.1.0").approvals[0].counted
