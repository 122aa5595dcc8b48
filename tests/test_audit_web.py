"""The web UI shows a version's signed / approved badges and its approval trail, and each
model's audit trail, as pages and as their JSON twins."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("cryptography")
from asgi_client import call
from audit_keys import allowed_signers, keys, needs_ssh_keygen  # noqa: F401 - fixture

from mreg import Blob
from mreg.registry import Registry
from mreg.web.app import create_app

pytestmark = needs_ssh_keygen


def test_badges_approval_trail_and_audit_trail(keys: dict[str, Path], tmp_path: Path) -> None:
    registry = Registry.init(tmp_path / "team")
    registry.set_config("trust.allowedsigners", str(allowed_signers(tmp_path / "allowed", keys, "alice", "bob")))
    registry.set_config("user.signingkey", str(keys["alice"]))
    registry.set_config("protect.production.approvals", "2")
    registry.add("m@1.0.0", [Blob("w.bin", lambda: [b"one"])], sign=True)
    registry.add("m@1.1.0", [Blob("w.bin", lambda: [b"two"])])
    registry.approve("m@1.0.0", "production", "validated <b>on</b> the March set")
    registry.approve("m@1.0.0", "production", "clinical sign-off", key=str(keys["bob"]))
    registry.tag("m@1.0.0", "production")
    app = create_app(registry.root, warm_up=False)

    page = call(app, "/m/m@1.0.0")
    assert page.status == 200
    assert 'id="badge-signed"' in page.text and "approved for production" in page.text
    assert 'id="approval-trail"' in page.text and "bob@example.com" in page.text and "clinical sign-off" in page.text
    assert "validated &lt;b&gt;on&lt;/b&gt;" in page.text  # a meaning is text, never markup
    twin = call(app, "/api/m/m@1.0.0").json()["evidence"]
    assert twin["signed"] and twin["approved"] == ["production"] and twin["history_intact"]
    assert sorted(s["principal"] for s in twin["signatures"]) == ["alice@example.com", "alice@example.com", "bob@example.com"]
    unsigned = call(app, "/m/m@1.1.0")
    assert 'id="badge-unsigned"' in unsigned.text

    trail = call(app, "/audit/m")
    assert trail.status == 200 and 'id="history-intact"' in trail.text
    assert "promotion" in trail.text and "approval" in trail.text and "registration" in trail.text
    events = call(app, "/api/audit/m").json()["events"]
    assert events[0]["action"] == "promotion"  # newest first
    assert 'id="audit-link"' in call(app, "/m/m").text
    assert call(app, "/audit/no-such-model").status == 404

    log = registry.root / "models" / "m" / "_log"
    lines = log.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"tester"', b'"mallory"')
    log.write_bytes(b"\n".join(lines))
    assert 'id="history-broken"' in call(app, "/audit/m").text
    assert "history broken" in call(app, "/m/m@1.0.0").text
