"""Protected tags and signed versions: what this registry's policy lets its refs become.

A tag protected by ``protect.TAG.approvals N`` (and ``protect.TAG.require``) may point
only at a version with N valid approvals for it from N distinct allowed signers (and
the metrics asked for). The rule holds wherever the tag moves in this registry's
name: ``mreg tag`` here, a pull into it, a push from it. ``pull.requiresigned`` (or
``--require-signed``) refuses versions that arrive without a valid registration
signature. Signatures that arrive are verified against this registry's trust root.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mreg.errors import ConflictError
from mreg.operations.approvals import approval, evaluate, registration
from mreg.operations.trust import Protection, protection, trust_root
from mreg.records.evidence import SignedStatement
from mreg.records.names import Digest
from mreg.records.views import ModelVersion

if TYPE_CHECKING:
    from mreg.records.manifest import Manifest
    from mreg.records.refs import RefTable
    from mreg.signing.allowed_signers import AllowedSigners
    from mreg.signing.statement import Statement
    from mreg.store.store import Store

Signatures = Callable[[Digest], list[tuple[Digest, SignedStatement]]]


class ProtectedTagError(ConflictError):
    """A protected tag would point at a version without the approvals (or metrics) it needs."""


class StorePolicy:
    """This registry's rules, applied to what a transfer would make its refs (or a push's
    destination's refs) become; see the module docstring."""

    def __init__(self, trust: AllowedSigners | None, rules: dict[str, Protection], signed: bool, manifest: Callable[[Digest], Manifest]) -> None:
        self.trust, self.rules, self.signed, self.manifest = trust, rules, signed, manifest

    def check_signature(self, signed: SignedStatement, statement: Statement) -> None:
        """An arriving signature must verify (who may sign is :func:`evaluate`'s question)."""
        from mreg.signing.sshsig import verify  # start-up: only transfers of signed versions need it

        verify(signed.statement, signed.signature)

    def problems(self, name: str, before: RefTable, after: RefTable, signatures: Signatures) -> list[str]:
        found = []
        for tag, version in sorted(after.tags.items()):
            rule = self.rules.get(tag)
            if rule is None or before.tags.get(tag) == version:
                continue
            digest = after.versions[version]
            statuses = evaluate(signatures(digest), self.trust, name, version, digest)
            view = ModelVersion(digest, self.manifest(digest))
            found += [f"{name}@{tag}: {problem}" for problem in approval(statuses, rule, view, True).problems]
        if self.signed:
            for version, digest in after.versions.items():
                if before.versions.get(version) == digest:
                    continue
                statuses = evaluate(signatures(digest), self.trust, name, version, digest)
                if registration(statuses) is None:
                    why = "; ".join(f"{s.principal}: {s.reason}" for s in statuses if s.kind == "registration") or "it is not signed"
                    found.append(f"{name}@{version} has no valid registration signature by an allowed signer ({why}); it was not pulled")
        return found


def check_tag_move(store: Store, view: ModelVersion, tag: str, signatures: list[tuple[Digest, SignedStatement]]) -> list[Digest]:
    """Refuse to point a protected tag at ``view`` without its approvals; return the
    approval objects the move relies on (empty: the tag is not protected).

    Raises:
        ProtectedTagError: naming exactly what is missing.
    """
    rule = protection(store, tag)
    if rule is None:
        return []
    trust = trust_root(store)
    statuses = evaluate(signatures, trust, view.name, view.version, view.digest)
    result = approval(statuses, rule, view, True)
    if result.problems:
        raise ProtectedTagError(f"tag {view.name}@{tag} is protected: " + "; ".join(result.problems))
    return list(result.relied_on)
