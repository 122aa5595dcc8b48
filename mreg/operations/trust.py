"""Whom to trust, what to protect, and who signs: read from this registry's own config.

A writer of a store can change anything in it, so trust is never read from the store
being checked: the allowed signers file is a path in the verifier's config
(``trust.allowedsigners``, git's ``gpg.ssh.allowedSignersFile``), kept where the team
keeps its code, and it may not lie inside the registry. Tag protection is the
verifier's config too (``protect.TAG.approvals``, ``protect.TAG.require``). The signer
is ``--key`` or ``user.signingkey``; the principal it signs as is the one the allowed
signers file gives that key, else ``user.principal``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import AllowedSignersError, InvalidInputError, SigningKeyError
from mreg.records.names import parse_condition, validate_tag
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.signing.allowed_signers import AllowedSigners
    from mreg.store.store import Store

MAX_APPROVALS = 100


class Protection(NamedTuple):
    """What moving a protected tag takes: approvals from distinct allowed signers, and metrics."""

    tag: str
    approvals: int
    require: tuple[str, ...] = ()  # metric conditions, e.g. "auc>=0.9"


def configured_path(store: Store, value: str) -> Path:
    """A path from the config: ``~`` expanded, relative to the directory that holds ``.mreg``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else store.root.parent / path


def trust_root(store: Store) -> AllowedSigners | None:
    """The allowed signers file ``trust.allowedsigners`` names (None: none configured).

    Raises:
        AllowedSignersError: it is missing, malformed, or inside the registry.
    """
    value = store.config.get("trust.allowedsigners")
    if not value:
        return None
    from mreg.signing.allowed_signers import load  # start-up: only a registry with a trust root reads it

    path = configured_path(store, value)
    resolved = path.resolve()
    if resolved == store.root or store.root in resolved.parents:
        raise AllowedSignersError(
            f"trust.allowedsigners is {printable(str(path), 200)}, inside the registry: whoever can write the store could change it; "
            "keep the allowed signers file with your code, outside .mreg"
        )
    return load(path)


def trust_path(store: Store) -> str | None:
    """The configured allowed signers file, as reports name it."""
    value = store.config.get("trust.allowedsigners")
    return str(configured_path(store, value)) if value else None


def protection(store: Store, tag: str) -> Protection | None:
    """The protection of a tag (None: not protected).

    Raises:
        InvalidInputError: ``protect.TAG.approvals`` is not a whole number from 0 to 100, or
            a ``protect.TAG.require`` condition does not parse.
    """
    validate_tag(tag)
    config = store.config
    count = config.get(f"protect.{tag}.approvals")
    require = tuple(config.get_all(f"protect.{tag}.require"))
    if count is None and not require:
        return None
    approvals = 0
    if count is not None:
        if not count.strip().isdigit() or not 0 <= int(count) <= MAX_APPROVALS:
            raise InvalidInputError(f"protect.{tag}.approvals must be a whole number from 0 to {MAX_APPROVALS}, not '{printable(count)}'")
        approvals = int(count)
    for condition in require:
        parse_condition(condition)
    return Protection(tag, approvals, require)


def protections(store: Store) -> dict[str, Protection]:
    """Every protected tag of this registry's config."""
    found = {}
    for tag in store.config.subsections("protect"):
        rule = protection(store, tag)
        if rule is not None:
            found[tag] = rule
    return found


def require_signed(store: Store, given: bool | None) -> bool:
    """``--require-signed``, else the config's ``pull.requiresigned`` (true/false)."""
    if given is not None:
        return given
    value = (store.config.get("pull.requiresigned") or "false").strip().lower()
    if value not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        raise InvalidInputError(f"pull.requiresigned must be true or false, not '{printable(value)}'")
    return value in ("true", "yes", "on", "1")


class Signer(NamedTuple):
    """A signing key (a path: the key itself is read only to sign) and the principal it signs as."""

    key: Path
    principal: str


def signer(store: Store, key: str | None) -> Signer:
    """Who signs: ``key`` (else ``user.signingkey``), as the principal the trust root gives
    that key (else ``user.principal``).

    Raises:
        SigningKeyError: no key is configured, the key file is missing or unsafe, or no
            principal can be found for it.
    """
    from mreg.signing.keys import check_key_file, public_key_of  # start-up: only signing commands need it

    if key is not None:
        path = Path(key).expanduser()
    else:
        configured = store.config.get("user.signingkey")
        if not configured:
            raise SigningKeyError("no signing key: give {key}, or set one with 'mreg config user.signingkey PATH'", options=("key",))
        path = configured_path(store, configured)
    check_key_file(path)
    public = public_key_of(path)
    trust = trust_root(store)
    if public is not None and trust is not None:
        principals = [p for p in trust.find_principals(public) if not any(c in p for c in '*?!,"')]
        if len(principals) == 1:
            return Signer(path, principals[0])
    principal = store.config.get("user.principal")
    if principal:
        return Signer(path, principal)
    raise SigningKeyError(
        f"cannot tell whom the key {printable(str(path), 200)} signs for: the allowed signers file lists it for no single "
        "principal; set 'mreg config user.principal NAME' (the name your key has there)"
    )
