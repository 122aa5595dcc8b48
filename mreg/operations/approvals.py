"""Checking a version's signatures, and what they amount to: approvals for a tag.

Each signature filed under a version is read as a statement (:mod:`mreg.signing.statement`)
and checked three ways: it must be about *this* version (model, version and manifest
digest: a signature replayed onto another version or tag is invalid here), its SSH
signature must verify, and the trust root must allow its key to sign as its principal
at its time. A valid revocation by the same principal withdraws the statement it
names. An approval for a tag counts once per signer: N approvals need N distinct
principals *and* N distinct keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from mreg.errors import MregError
from mreg.records.audit import INVALID, UNTRUSTED, VALID, SignatureStatus, TagApproval

if TYPE_CHECKING:
    from mreg.operations.trust import Protection
    from mreg.records.evidence import SignedStatement
    from mreg.records.names import Digest
    from mreg.records.views import ModelVersion
    from mreg.signing.allowed_signers import AllowedSigners


def evaluate(signed: Iterable[tuple[Digest, SignedStatement]], trust: AllowedSigners | None, name: str, version: str, digest: str) -> list[SignatureStatus]:
    """The status of each signature of ``name@version`` (manifest ``digest``), revocations applied."""
    statuses = [_status(object_digest, item, trust, name, version, digest) for object_digest, item in signed]
    revoked = {
        (status.principal, status.revokes): status.digest for status in statuses if status.kind == "revocation" and status.status == VALID
    }
    return [
        _with_revocation(status, revoked.get((status.principal, status.statement))) for status in sorted(statuses, key=lambda s: (s.time, s.digest))
    ]


def _with_revocation(status: SignatureStatus, by: Digest | None) -> SignatureStatus:
    if by is None or status.kind == "revocation":
        return status
    from dataclasses import replace  # start-up: only verification needs it

    return replace(status, revoked_by=by)


def _status(object_digest: Digest, item: SignedStatement, trust: AllowedSigners | None, name: str, version: str, digest: str) -> SignatureStatus:
    """One signature, checked (never raises: what is wrong is its status)."""
    from mreg.signing.sshsig import verify  # start-up: only verification needs it
    from mreg.signing.statement import Statement  # start-up: as above

    text = item.statement.decode("utf-8", errors="replace")
    try:
        statement = Statement.parse(item.statement)
    except MregError as exc:
        return SignatureStatus(object_digest, "?", "?", "", "", INVALID, f"the statement cannot be read: {exc.message}", text=text, armor=item.signature)

    def status(status: str, reason: str, key: str | None = None) -> SignatureStatus:
        return SignatureStatus(
            object_digest, statement.kind, statement.principal, statement.time, statement.meaning, status, reason,
            tag=statement.tag, revokes=statement.revokes, statement=statement.digest, key=key, text=text, armor=item.signature,
        )

    if (statement.model, statement.version, statement.manifest) != (name, version, digest):
        what = f"{statement.model}@{statement.version} ({statement.manifest[:15]})"
        return status(INVALID, f"it signs {what}, not {name}@{version} ({digest[:15]}): replayed")
    try:
        key = verify(item.statement, item.signature)
    except MregError as exc:
        return status(INVALID, exc.message)
    if trust is None:
        return status(UNTRUSTED, "no trust root: set trust.allowedsigners", key.fingerprint)
    verdict = trust.check(key, statement.principal, "mreg", statement.timestamp)
    return status(VALID if verdict else UNTRUSTED, verdict.reason, key.fingerprint)


def approval(statuses: list[SignatureStatus], rule: Protection, view: ModelVersion, points_here: bool) -> TagApproval:
    """How far a version meets a tag's protection: approvals from distinct signers, and metrics."""
    counted: list[SignatureStatus] = []
    skipped = []
    principals, keys = set(), set()
    for status in statuses:
        if status.kind != "approval" or status.tag != rule.tag:
            continue
        if not status.counts:
            why = f"revoked by {status.revoked_by[:15]}" if status.revoked_by else status.reason
            skipped.append(f"{status.principal}'s approval does not count ({why})")
        elif status.principal in principals or status.key in keys:
            skipped.append(f"{status.principal}'s approval {status.digest[:15]} is a second one from the same signer or key")
        else:
            counted.append(status)
            principals.add(status.principal)
            keys.add(status.key)
    problems = []
    if len(counted) < rule.approvals:
        have = ", ".join(s.principal for s in counted) or "none"
        problems.append(
            f"{rule.tag} needs {rule.approvals} approval(s) of {view.name}@{view.version} ({view.digest[:15]}) for {rule.tag} "
            f"from distinct allowed signers; it has {len(counted)} ({have}): {rule.approvals - len(counted)} missing"
            + (f" ({'; '.join(skipped)})" if skipped else "")
            + f"; sign one with 'mreg approve {view.name}@{view.version} --for {rule.tag} -m MEANING'"
        )
    problems += _unmet(rule, view)
    relied = tuple(sorted(s.digest for s in counted))
    return TagApproval(rule.tag, rule.approvals, tuple(sorted(s.principal for s in counted)), tuple(problems), points_here, relied)


def _unmet(rule: Protection, view: ModelVersion) -> list[str]:
    """The metric conditions of a protection the version does not meet."""
    from mreg.operations.query import matcher  # start-up: only protected tags need it
    from mreg.records.names import parse_condition  # start-up: as above

    found = []
    for condition in rule.require:
        if not matcher(metrics=[condition])(view):
            key = parse_condition(condition)[0]
            value = view.all_metrics.get(key)
            found.append(f"{rule.tag} requires {condition}: {view.name}@{view.version} has {key}={'none' if value is None else f'{value:g}'}")
    return found


def registration(statuses: list[SignatureStatus]) -> SignatureStatus | None:
    """The registration signature that counts, if any."""
    return next((s for s in statuses if s.kind == "registration" and s.counts), None)
