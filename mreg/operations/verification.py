"""``mreg verify`` and ``mreg audit``: a version's evidence, and a model's whole trail.

Both check against this registry's own trust root (:mod:`mreg.operations.trust`), never
anything read from the store. ``verify`` fails (its report's ``failures``) on any
signature that is invalid or not from an allowed signer, on a version without a valid
registration signature, on a protected tag that points at the version without the
approvals it needs (revoked ones no longer count), and on any break in the model's
history (:mod:`mreg.operations.history`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import MregError
from mreg.operations.approvals import approval, evaluate, registration
from mreg.operations.history import model_history, read_chain
from mreg.operations.trust import protections, trust_path, trust_root
from mreg.records.audit import INVALID, VALID, AuditEvent, AuditReport, SignatureStatus, VerifyReport
from mreg.records.chain import Link
from mreg.records.evidence import SignedStatement
from mreg.records.names import Digest, parse_time, validate_name
from mreg.records.refs import LogEntry, parse_log_line
from mreg.records.views import ModelVersion

if TYPE_CHECKING:
    from mreg.records.refs import RefTable
    from mreg.signing.allowed_signers import AllowedSigners
    from mreg.store.store import Store


def signatures_of(store: Store, table: RefTable, name: str, version: str, digest: Digest, trust: AllowedSigners | None) -> list[SignatureStatus]:
    """The checked signatures filed under one version's manifest (a missing or damaged object is INVALID)."""
    found: list[tuple[Digest, SignedStatement]] = []
    broken = []
    for object_digest in table.signed(digest):
        try:
            store.ensure_local(object_digest)  # a version found in a fallback: its signatures come with it, verified
            found.append((object_digest, SignedStatement.decode(store.objects.read_bytes(object_digest), object_digest)))
        except (MregError, OSError) as exc:
            broken.append(SignatureStatus(object_digest, "?", "?", "", "", INVALID, f"the signature object cannot be read: {exc}"))
    return evaluate(found, trust, name, version, digest) + broken


def verify(store: Store, ref: str) -> VerifyReport:
    """Check everything about the version ``ref`` names; see :meth:`mreg.Registry.verify`."""
    found = store.lookup(ref)
    view = ModelVersion(found.digest, store.resolved_manifest(found))
    table = found.table if found.table is not None else store.refs.read(view.name)
    trust = trust_root(store)
    report = VerifyReport(view.name, view.version, view.digest, trust_path(store))
    report.signatures = signatures_of(store, table, view.name, view.version, view.digest, trust)
    if trust is None:
        report.failures.append("no trust root: set 'mreg config trust.allowedsigners PATH' (your team's allowed signers file)")
    for status in report.signatures:
        if status.status != VALID:
            report.failures.append(f"{status.kind} signature {status.digest[:15]} by {status.principal}: {status.status}: {status.reason}")
    if registration(report.signatures) is None:
        report.failures.append(f"{view.name}@{view.version} has no valid registration signature by an allowed signer ('mreg sign {view.name}@{view.version}')")
    for tag, rule in sorted(protections(store).items()):
        points_here = table.tags.get(tag) == view.version
        if points_here or any(s.kind == "approval" and s.tag == tag for s in report.signatures):
            result = approval(report.signatures, rule, view, points_here)
            report.approvals.append(result)
            if points_here:
                report.failures += [f"tag {tag} points here but is no longer approved: {problem}" for problem in result.problems]
    history = model_history(store, view.name)
    report.history_intact = history.intact
    report.history = history.problems
    report.failures += [f"history of '{view.name}': {problem}" for problem in history.problems]
    return report


def since_time(text: str | None) -> str | None:
    """``--since``: a date means its first second (UTC); a time needs its offset."""
    if text is None:
        return None
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        return parse_time(text)[:10] + "T00:00:00Z"
    return parse_time(text)


ACTIONS = {"registration": "signature", "tag": "signed promotion", "approval": "approval", "revocation": "revocation"}


def audit(store: Store, name: str, *, since: str | None = None) -> AuditReport:
    """Every registration, removal, promotion, note and signature of a model, oldest first;
    see :meth:`mreg.Registry.audit`."""
    validate_name(name)
    start = since_time(since)
    table = store.existing_table(name)
    trust = trust_root(store)
    history = model_history(store, name)
    report = AuditReport(name, trust_path(store), history_intact=history.intact, history=history.problems)
    statuses: dict[Digest, SignatureStatus] = {}
    for version, digest in [*table.versions.items(), *table.removed.items()]:
        for status in signatures_of(store, table, name, version, digest, trust):
            statuses[status.digest] = status
    chain = read_chain(store, name)
    legacy = [entry for line in chain.legacy if (entry := parse_log_line(line.decode("utf-8", errors="replace"))) is not None]
    items: list[LogEntry | Link] = [*legacy, *chain.links]
    for item in items:
        event = _event(name, item, statuses)
        if event is not None and (start is None or event.time >= start):
            report.events.append(event)
    return report


def _event(name: str, item: LogEntry | Link, statuses: dict[Digest, SignatureStatus]) -> AuditEvent | None:
    """One trail entry of a log line (None: chain bookkeeping)."""
    if isinstance(item, Link):
        if item.bookkeeping:
            return None
        entry, seq, via, fields = item.entry, item.seq, item.via, item.fields
    else:
        if item.ref.startswith("_"):
            return None
        entry, seq, via, fields = item, None, None, {}
    kind, _, key = entry.ref.partition("/")
    subject = f"{name}@{key}" if key else f"{name}@latest"
    signer = status = None
    if kind == "versions":
        action, detail = ("registration", f"{entry.new}") if entry.new else ("removal", f"was {entry.old}")
    elif kind == "removed":
        action, detail = "tombstone", f"{entry.new} (never reusable)"
    elif kind == "tags":
        action = "promotion" if entry.new else "demotion"
        detail = f"-> {entry.new}" if entry.new else f"was {entry.old}"
        if fields.get("approvals"):
            detail += f" (on {len(fields['approvals'])} approval(s))"
    elif kind == "notes":
        action, detail = "note", f"{entry.new or 'removed'}"
    elif kind == "signatures":
        found = statuses.get(Digest(entry.new or ""))
        action = ACTIONS.get(found.kind, "signature") if found else "signature"
        detail = f"{found.tag + ': ' if found and found.tag else ''}{found.meaning if found else entry.new}"
        signer, status = (found.principal, found.status) if found else (None, INVALID)
    else:
        action, detail = "latest", f"-> {entry.new or 'nothing'}"
    if entry.message and kind == "versions":
        detail += f' "{entry.message}"'
    return AuditEvent(entry.time, action, subject, entry.author, detail, seq, via, signer, status)
