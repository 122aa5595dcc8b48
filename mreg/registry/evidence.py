"""Evidence for regulated teams: sign, approve, verify and audit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mreg.records.audit import AuditReport, SignResult, VerifyReport
    from mreg.store.store import Store


class Evidence:
    """:class:`~mreg.registry.Registry` methods. Signatures, approvals, and the checks an auditor runs.

    Every check uses this registry's own trust root (``trust.allowedsigners``, an
    allowed signers file kept outside the store) and tag protection
    (``protect.TAG.approvals``, ``protect.TAG.require``); see ``docs/audit.md``.
    """

    store: Store

    def sign(self, ref: str, *, key: str | None = None, meaning: str | None = None) -> SignResult:
        """Sign the registration of the version ``ref`` names (its model, version and
        manifest digest) with an SSH key: ``key``, else ``user.signingkey``.

        Raises:
            SigningKeyError: no key, a missing or unsafe key file, or ssh-keygen failed.
            UnknownRefError: the version is not registered here.
        """
        from mreg.operations.attestations import sign  # start-up: only signing commands need it

        return sign(self.store, ref, key=key, meaning=meaning)

    def approve(self, ref: str, tag: str, meaning: str, *, key: str | None = None, revoke: bool = False) -> list[SignResult]:
        """Record a signed approval of the version ``ref`` names for ``tag``, saying what it
        means (21 CFR Part 11: the signer's name, the time and the meaning, bound to the
        manifest digest). Approvals are never deleted: ``revoke`` signs a revocation of
        this signer's approvals of it for ``tag`` instead.

        Raises:
            SigningKeyError: see :meth:`sign`.
            NotFoundError: ``revoke`` without an approval of this signer to revoke.
        """
        from mreg.operations.attestations import approve  # start-up: only signing commands need it

        return approve(self.store, ref, tag, meaning, key=key, revoke=revoke)

    def verify(self, ref: str) -> VerifyReport:
        """Check the version ``ref`` names: its signatures and approvals against the trust
        root, the protected tags that point at it, and its model's history chain. The
        report's ``ok`` is true only when everything checked is valid; ``failures`` names
        each thing that is not."""
        from mreg.operations.verification import verify  # start-up: only verify reads signatures

        return verify(self.store, ref)

    def audit(self, name: str, *, since: str | None = None) -> AuditReport:
        """A model's complete trail, oldest first: every registration, removal, promotion,
        note, signature and approval, with who, when, what it meant and whether its
        signature holds; ``since`` (an ISO date or time) keeps the later entries."""
        from mreg.operations.verification import audit  # start-up: only audit reads the whole log

        return audit(self.store, name, since=since)
