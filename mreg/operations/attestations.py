"""Signing: a version's registration, a tag move, an approval, a revocation.

Each is an ``mreg-statement v1`` (:mod:`mreg.signing.statement`) naming the model,
version and manifest digest, the signer's principal, the time and what the signature
means, signed with an SSH key (:func:`mreg.signing.sshsig.sign`, which verifies what it
makes), stored as an object and filed in the model's ref table in one locked change,
logged. Nothing is written until the signature exists: a missing key, a key others can
read, or a refused passphrase leaves the store as it was. The private key is read
only to sign, and never printed or stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mreg.errors import InvalidInputError, NotFoundError, UnknownRefError
from mreg.operations.approvals import evaluate
from mreg.operations.listing import version_view
from mreg.operations.protection import ProtectedTagError
from mreg.operations.trust import Signer, protection, signer, trust_root
from mreg.records.audit import UNTRUSTED, VALID, SignResult
from mreg.records.evidence import SignedStatement
from mreg.records.names import Digest, text_of, validate_tag
from mreg.storage.identity import current_author, now_utc

if TYPE_CHECKING:
    from mreg.records.views import ModelVersion
    from mreg.signing.statement import Statement
    from mreg.store.store import Store

DEFAULT_MEANINGS = {"registration": "registered these exact weights", "tag": "moved {tag} to {version}"}
RegistrationSigner = Callable[[str, str, Digest], Digest]
"""Signs the registration of (name, version, manifest) and stores it; returns the signature object."""


def statement_for(who: Signer, kind: str, view: ModelVersion, meaning: str, tag: str | None = None, revokes: str | None = None) -> Statement:
    """The statement ``who`` signs about a version, now (its fields validated)."""
    from mreg.signing.statement import Statement  # start-up: only signing needs it

    return Statement(kind, view.name, view.version, view.digest, who.principal, now_utc(), meaning, tag, revokes)


def sign_statement(who: Signer, statement: Statement) -> SignedStatement:
    """Sign a statement with the signer's key (the signature is verified before it is returned)."""
    from mreg.signing.sshsig import sign  # start-up: only signing needs it

    message = statement.encode()
    return SignedStatement(message, sign(message, who.key))


def store_signature(store: Store, signed: SignedStatement) -> Digest:
    """Write a signature object (the caller holds ``store.writing()`` until the refs name it)."""
    return store.objects.add_bytes(signed.encode()).digest


def local_version(store: Store, ref: str) -> ModelVersion:
    """The version ``ref`` names, which must be registered here (a fallback's cannot be signed here)."""
    view = version_view(store, ref)
    if store.refs.read(view.name).versions.get(view.version) != view.digest:
        raise UnknownRefError(ref, f"{view.name}@{view.version} is not in this registry, only in a fallback; 'mreg pull' it first")
    return view


def file_signatures(store: Store, view: ModelVersion, signed: list[SignedStatement], message: str = "") -> list[Digest]:
    """Store signature objects and file them under the version, in one locked change."""
    with store.writing():
        digests = [store_signature(store, item) for item in signed]
        with store.refs.update(view.name, author=current_author(), message=message, time=now_utc()) as update:
            if update.table.versions.get(view.version) != view.digest:
                raise UnknownRefError(f"{view.name}@{view.version}", "it is no longer registered")
            update.table = update.table.with_signatures((view.digest, digest) for digest in digests)
    return digests


def registration_signer(store: Store, key: str | None) -> RegistrationSigner:
    """What ``add --sign`` signs with: the key is checked now, before anything is stored;
    the registration is signed in the change that registers the version."""
    who = signer(store, key)

    def sign_registration(name: str, version: str, digest: Digest) -> Digest:
        from mreg.signing.statement import Statement  # start-up: only signing needs it

        statement = Statement("registration", name, version, digest, who.principal, now_utc(), DEFAULT_MEANINGS["registration"])
        with store.writing():
            return store_signature(store, sign_statement(who, statement))

    return sign_registration


def refuse_protected(store: Store, tags: Iterable[str]) -> None:
    """``add --tag`` cannot point a protected tag at a version no one could approve yet.

    Raises:
        ProtectedTagError: naming the tag and what to do instead.
    """
    for tag in tags:
        if protection(store, tag) is not None:
            raise ProtectedTagError(
                f"tag {tag} is protected: a version is added first, approved ('mreg approve REF --for {tag}'), then tagged ('mreg tag REF {tag}')"
            )


def sign(store: Store, ref: str, *, key: str | None = None, meaning: str | None = None) -> SignResult:
    """Sign the registration of the version ``ref`` names; see :meth:`mreg.Registry.sign`."""
    view = local_version(store, ref)
    who = signer(store, key)
    statement = statement_for(who, "registration", view, _meaning(meaning, DEFAULT_MEANINGS["registration"]))
    (digest,) = file_signatures(store, view, [sign_statement(who, statement)])
    return _result(view, digest, statement)


def approve(store: Store, ref: str, tag: str, meaning: str, *, key: str | None = None, revoke: bool = False) -> list[SignResult]:
    """Approve the version ``ref`` names for ``tag`` (or, with ``revoke``, withdraw this
    signer's approvals of it for ``tag``); see :meth:`mreg.Registry.approve`."""
    validate_tag(tag)
    text_of(meaning, "meaning")
    if not meaning.strip():
        raise InvalidInputError("say what the approval means with {message}, e.g. 'validated on the March test set'", options=("message",))
    view = local_version(store, ref)
    who = signer(store, key)
    if not revoke:
        statement = statement_for(who, "approval", view, meaning, tag)
        (digest,) = file_signatures(store, view, [sign_statement(who, statement)])
        return [_result(view, digest, statement)]
    statements = [statement_for(who, "revocation", view, meaning, tag, revokes) for revokes in _own_approvals(store, view, tag, who)]
    signed = [sign_statement(who, statement) for statement in statements]
    digests = file_signatures(store, view, signed)
    return [_result(view, digest, statement) for digest, statement in zip(digests, statements)]


def _own_approvals(store: Store, view: ModelVersion, tag: str, who: Signer) -> list[str]:
    """The statement digests of ``who``'s approvals of a version for a tag not yet revoked."""
    table = store.refs.read(view.name)
    signed = [(d, SignedStatement.decode(store.objects.read_bytes(d), d)) for d in table.signed(view.digest) if store.objects.contains(d)]
    statuses = evaluate(signed, trust_root(store), view.name, view.version, view.digest)
    found = [
        s.statement for s in statuses
        if s.kind == "approval" and s.tag == tag and s.principal == who.principal and s.status in (VALID, UNTRUSTED) and s.revoked_by is None
    ]
    if not found:
        raise NotFoundError(f"{who.principal} has no approval of {view.name}@{view.version} for {tag} to revoke")
    return found


def _meaning(given: str | None, default: str) -> str:
    if given is None:
        return default
    text_of(given, "meaning")
    return given


def _result(view: ModelVersion, digest: Digest, statement: Statement) -> SignResult:
    return SignResult(
        view.name, view.version, view.digest, digest, statement.kind, statement.principal, statement.time, statement.meaning, statement.tag, statement.revokes
    )
