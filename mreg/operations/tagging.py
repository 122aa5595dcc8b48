"""Moving refs by hand: tags, and the removal of versions.

Each change happens under the model's lock, so a tag move is a compare-and-swap
when the caller says what it expects, and never loses another process's change. A
protected tag moves only to a version with its approvals (:mod:`.protection`), and the
move's log line names them; ``sign`` signs the move itself. A removed version leaves a
tombstone: its number never names other bytes (:mod:`.tombstones`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.errors import InvalidInputError, MregError, RefChangedError, UnknownRefError
from mreg.records.names import Digest, parse_name_version, validate_tag
from mreg.records.refs import UNSET
from mreg.records.views import TagChange
from mreg.storage.identity import current_author, now_utc

if TYPE_CHECKING:
    from mreg.store.store import Store

def tag(store: Store, ref: str, name: str, *, expected: str | None = UNSET, sign: bool = False, key: str | None = None) -> TagChange:
    """Point tag ``name`` at the version ``ref`` names; see :meth:`mreg.Registry.tag`."""
    from mreg.operations.attestations import (  # start-up: `mreg show` loads this module, not tag protection
        DEFAULT_MEANINGS,
        local_version,
        sign_statement,
        statement_for,
        store_signature,
    )
    from mreg.operations.protection import check_tag_move  # start-up: as above
    from mreg.operations.trust import signer
    from mreg.records.evidence import SignedStatement

    validate_tag(name)
    target = local_version(store, ref)  # found in a fallback only: refs here cannot point at it
    model, version = target.name, target.version
    who = signer(store, key) if sign else None  # a bad key stops the move before anything is written
    with store.writing(), store.refs.update(model, author=current_author(), message="", time=now_utc()) as update:
        table = update.table
        if table.versions.get(version) != target.digest:
            raise UnknownRefError(ref, f"{model}@{version} is no longer registered")
        old = table.tags.get(name)
        _check_expected(model, name, old, expected)
        if old == version:
            return TagChange(model, name, old, version)
        signed = [(d, SignedStatement.decode(store.objects.read_bytes(d), d)) for d in table.signed(target.digest) if store.objects.contains(d)]
        approvals = check_tag_move(store, target, name, signed)  # under the lock: a revocation cannot slip in
        table = table.with_tag(name, version)
        if approvals:
            update.annotate(f"tags/{name}", approvals=approvals)
        if who is not None:
            meaning = DEFAULT_MEANINGS["tag"].format(tag=name, version=version)
            digest = store_signature(store, sign_statement(who, statement_for(who, "tag", target, meaning, name)))
            table = table.with_signatures([(target.digest, digest)])
            update.annotate(f"tags/{name}", signature=digest)
        update.table = table
    return TagChange(model, name, old, version)


def untag(store: Store, model: str, name: str, *, expected: str | None = UNSET) -> TagChange:
    """Remove tag ``name`` of ``model``."""
    validate_tag(name)
    store.existing_table(model)
    with store.refs.update(model, author=current_author(), message="", time=now_utc()) as update:
        old = update.table.tags.get(name)
        if old is None:
            raise UnknownRefError(f"{model}@{name}", "no such tag")
        _check_expected(model, name, old, expected)
        update.table = update.table.without_tag(name)
    return TagChange(model, name, old, None)


def remove(store: Store, spec: str, *, message: str = "") -> Digest:
    """Remove ``NAME@VERSION``; see :meth:`mreg.Registry.remove`."""
    model, version = parse_name_version(spec)
    if version is None:
        raise InvalidInputError("give the exact version to remove: NAME@VERSION")
    store.existing_table(model)
    with store.refs.update(model, author=current_author(), message=message, time=now_utc()) as update:
        digest = update.table.versions.get(version)
        if digest is None:
            raise UnknownRefError(spec, f"'{model}' has no version {version}")
        update.table = update.table.retired(version)  # a tombstone: the number never names other bytes
    if not update.table.versions:
        drop_from_listing(store)
    return digest


def drop_from_listing(store: Store) -> None:
    """Rewrite ``info/models`` without a model that lost its last version.

    The removal is already committed, so a failure here (a full disk) must not turn
    it into an error: the list stays a superset, which readers skip and
    ``fsck --repair`` (or the next rewrite) corrects.
    """
    try:
        store.update_server_info()
    except (OSError, MregError):
        pass


def _check_expected(model: str, name: str, current: str | None, expected: str | None) -> None:
    if expected is not UNSET and current != expected:
        raise RefChangedError(
            f"tag {model}@{name} points at {current or 'nothing'}, not {expected or 'nothing'}: "
            "it was changed by someone else"
        )
