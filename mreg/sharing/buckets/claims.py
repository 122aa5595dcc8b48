"""Name claims: of two pushes that create ``Model`` and ``model`` at once, one wins.

A clone on a case-insensitive disk cannot hold two models whose names differ only in
case, so a push refuses a new model with a twin among those the bucket lists. Two
pushes creating twins at the same moment would both pass that check; in a directory
the model-creation lock orders them, and a bucket has no lock. So a push creating a
model first writes ``names/<its name in lower case>``, holding the name as given, with
``If-None-Match: *``: exactly one of two twins creates the key, and the other finds it
naming the twin and is refused.

A claim whose model never got a table (its push died between the two requests) is
taken over once it is older than a push may last (the 12 hours gc's grace assumes).
Registries written by an older mreg have no claims: their models are found by listing,
as before.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mreg.errors import ConflictError, InvalidNameError, RemoteError
from mreg.records.names import validate_name
from mreg.sharing.buckets.client import FRESHEN_AFTER, age
from mreg.sharing.buckets.refs import MAX_ATTEMPTS, table_key

if TYPE_CHECKING:
    from mreg.sharing.buckets.client import Bucket

CLAIMS = "names/"
MAX_CLAIM_SIZE = 1024  # a model name and a line feed


def claim_key(name: str) -> str:
    """Where the claim on ``name`` (and on every name that differs from it only in case) lives."""
    return CLAIMS + validate_name(name).lower()


def claim_name(bucket: Bucket, name: str) -> None:
    """Hold ``name`` for a model this push creates, or refuse it when a twin holds it.

    Raises:
        InvalidNameError: a model whose name differs from ``name`` only in case exists, or
            is being created by a push that claimed it less than 12 hours ago.
    """
    key = claim_key(name)
    for _ in range(MAX_ATTEMPTS):
        if bucket.create(key, f"{name}\n".encode("ascii")):
            return
        got = bucket.get(key, MAX_CLAIM_SIZE)
        if got is None:
            continue  # taken over and gone meanwhile: try again
        data, etag = got
        holder = _holder(bucket, key, data)
        if holder == name:
            return
        if bucket.head(table_key(holder)) is not None:  # the twin exists (a HEAD: its table need not be read)
            raise InvalidNameError(f"model name '{name}' differs only in case from the existing model '{holder}' in {bucket.location}")
        info = bucket.head(key)
        if info is not None and age(info, datetime.now(timezone.utc)) < FRESHEN_AFTER:
            raise InvalidNameError(
                f"model name '{name}' differs only in case from '{holder}', which a push to {bucket.location} "
                "is creating (claimed less than 12 hours ago)"
            )
        if bucket.swap(key, f"{name}\n".encode("ascii"), etag):  # a push that died long ago
            return
    raise ConflictError(f"the claim on model name '{name}' in {bucket.location} kept changing: gave up after {MAX_ATTEMPTS} attempts")


def _holder(bucket: Bucket, key: str, data: bytes) -> str:
    """The name a claim holds, checked: it must be a model name that the key is the claim of."""
    try:
        holder = validate_name(data.decode("ascii").rstrip("\n"))
    except (UnicodeDecodeError, ValueError):
        holder = ""
    if not holder or claim_key(holder) != key:
        raise RemoteError(f"{bucket.location}: the name claim {key[:200]!r} is damaged; remove it if no push is creating that model")
    return holder
