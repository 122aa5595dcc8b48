"""What ``verify`` and ``audit`` report: plain data, with the JSON views the CLI prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mreg.records.names import Digest

VALID = "valid"
UNTRUSTED = "untrusted"  # the signature verifies, but the trust root does not allow its signer for it
INVALID = "invalid"  # malformed, not over this version, or does not verify


@dataclass(frozen=True)
class SignatureStatus:
    """One signature of a version, checked: what it says, who made it, and whether it counts."""

    digest: Digest  # the signature object
    kind: str  # registration, tag, approval or revocation ("?" when unreadable)
    principal: str
    time: str
    meaning: str
    status: str  # VALID, UNTRUSTED or INVALID
    reason: str  # the allowed signers line that admits the key, or why it does not count
    tag: str | None = None
    revokes: str | None = None  # the statement digest a revocation withdraws
    statement: str = ""  # this statement's digest (what a revocation names)
    key: str | None = None  # the signer's key fingerprint (SHA256:...), when it verified
    revoked_by: Digest | None = None  # a valid revocation by the same signer
    text: str = ""  # the statement, as signed: with ``armor``, what ``ssh-keygen -Y verify`` checks
    armor: str = ""  # the SSH signature

    @property
    def counts(self) -> bool:
        """Valid, trusted and not revoked."""
        return self.status == VALID and self.revoked_by is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TagApproval:
    """A protected tag's requirement for one version, and how far it is met."""

    tag: str
    required: int
    counted: tuple[str, ...]  # the principals whose approvals count
    problems: tuple[str, ...]  # what is missing (empty: met)
    points_here: bool  # the tag points at this version now
    relied_on: tuple[Digest, ...] = ()  # the approvals that count (what a tag move records)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self), "counted": list(self.counted), "problems": list(self.problems), "relied_on": list(self.relied_on), "met": not self.problems,
        }


@dataclass
class VerifyReport:
    """``mreg verify REF``: a version's signatures, approvals and history, and every failure."""

    name: str
    version: str
    digest: Digest
    trust: str | None  # the allowed signers file used (None: no trust root configured)
    signatures: list[SignatureStatus] = field(default_factory=list)
    approvals: list[TagApproval] = field(default_factory=list)
    history_intact: bool = True
    history: list[str] = field(default_factory=list)  # what is wrong with the model's history
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ref": f"{self.name}@{self.version}",
            "digest": self.digest,
            "trust": self.trust,
            "signatures": [s.to_dict() for s in self.signatures],
            "approvals": [a.to_dict() for a in self.approvals],
            "history": {"intact": self.history_intact, "problems": self.history},
            "failures": self.failures,
        }


@dataclass(frozen=True)
class AuditEvent:
    """One entry of a model's trail: what happened, who says they did it, when, and what
    a signature (if any) proves about it."""

    time: str
    action: str  # registration, removal, tombstone, promotion, demotion, latest, note, signature, approval, revocation
    subject: str  # NAME@VERSION, or NAME@TAG
    author: str  # as the log records it (claimed, unless signed)
    detail: str  # the new value, a note's digest, the meaning of a signed statement
    seq: int | None = None  # the line of this store's chain (None: written before chaining)
    via: str | None = None  # the store an imported entry came from
    signer: str | None = None  # the signed statement's principal
    signature: str | None = None  # that signature's status (VALID, UNTRUSTED, INVALID)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditReport:
    """``mreg audit NAME``: the model's complete trail, and whether its history is intact."""

    name: str
    trust: str | None
    events: list[AuditEvent] = field(default_factory=list)
    history_intact: bool = True
    history: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trust": self.trust,
            "history": {"intact": self.history_intact, "problems": self.history},
            "events": [e.to_dict() for e in self.events],
        }


@dataclass(frozen=True)
class SignResult:
    """What ``mreg sign`` or ``mreg approve`` recorded: the signed statement and its object."""

    name: str
    version: str
    digest: Digest  # the version's manifest
    signature: Digest  # the signature object
    kind: str
    principal: str
    time: str
    meaning: str
    tag: str | None = None
    revokes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
