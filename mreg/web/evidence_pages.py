"""What the version page shows of a version's evidence, and a model's audit trail page.

Both are :meth:`mreg.Registry.verify` and :meth:`mreg.Registry.audit` as plain data,
checked against the served registry's own trust root (``trust.allowedsigners`` in its
config, outside the store). A check that cannot run (no trust root, a malformed allowed
signers file) is shown as such, never as a server error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mreg.errors import MregError
from mreg.records.names import validate_name

if TYPE_CHECKING:
    from mreg.web.reader import ReadOnlyRegistry


def version_evidence(registry: ReadOnlyRegistry, ref: str) -> dict[str, Any]:
    """Badges (signed, approved for TAG), every signature, and the approval trail of a version."""
    try:
        report = registry.verify(ref)
    except MregError as exc:
        return {"error": exc.message, "signed": False, "approved": [], "signatures": [], "approvals": []}
    signatures = [s.to_dict() for s in report.signatures]
    return {
        "error": None,
        "ok": report.ok,
        "trust": report.trust,
        "signed": any(s.kind == "registration" and s.counts for s in report.signatures),
        "approved": [a.tag for a in report.approvals if not a.problems],
        "signatures": signatures,
        "approvals": [a.to_dict() for a in report.approvals],
        "history_intact": report.history_intact,
        "failures": report.failures,
    }


def audit_page(registry: ReadOnlyRegistry, name: str) -> dict[str, Any]:
    """A model's complete trail, newest first, with the state of its history chain."""
    report = registry.audit(validate_name(name))
    data = report.to_dict()
    data["events"] = list(reversed(data["events"]))
    return data
