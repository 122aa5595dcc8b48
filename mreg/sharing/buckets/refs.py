"""Ref tables and logs in a bucket, where nothing can be locked or appended to.

A model's table is ``models/<name>/_refs``, as in a directory. It changes by
compare-and-swap: read it with its ETag, compute the new table, write it with
``If-Match`` (``If-None-Match: *`` for a new model); a writer that loses the race
re-reads and re-applies its change, and a change that no longer applies (the same
version with other content, a tag moved meanwhile) is a conflict.

A model's log is one object per change, chained (:mod:`.log`). The table is the
truth and its log entries follow it: only a writer killed between the two requests
leaves a change unlogged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mreg.errors import ConflictError, CorruptRefsError, RemoteError
from mreg.records.limits import MAX_MODEL_LIST_SIZE, MAX_REF_TABLE_SIZE
from mreg.records.names import validate_name
from mreg.records.refs import RefTable
from mreg.storage.refs import TABLE_FILE
from mreg.storage.server_info import INFO_MODELS

if TYPE_CHECKING:
    from mreg.sharing.buckets.client import Bucket, ObjectInfo

MAX_ATTEMPTS = 50
"""Lost races before a writer gives up (each costs two requests)."""


def table_key(name: str) -> str:
    return f"models/{validate_name(name)}/{TABLE_FILE}"


def read_table(bucket: Bucket, name: str) -> tuple[RefTable, str | None]:
    """A model's table and its ETag (an empty table and None when it has none)."""
    got = bucket.get(table_key(name), MAX_REF_TABLE_SIZE)
    if got is None:
        return RefTable(), None
    data, etag = got
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteError(f"{bucket.location}: the refs of '{name}' are not text") from None
    table = RefTable.parse(text, where=f"ref table of '{name}' in {bucket.location}")
    problems = table.problems()
    if problems:
        raise CorruptRefsError(f"ref table of '{name}' in {bucket.location} is damaged: {problems[0]}")
    return table, etag


def change_table(bucket: Bucket, name: str, change: Callable[[RefTable], RefTable]) -> tuple[RefTable, RefTable]:
    """Apply ``change`` to a model's table by compare-and-swap; return (old, new).

    ``change`` may run several times (once per lost race) and may raise (a conflict).
    """
    for attempt in range(MAX_ATTEMPTS):
        old, etag = read_table(bucket, name)
        new = change(old)
        if new == old or bucket.swap(table_key(name), new.encode(), etag):
            return old, new
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # let the winner finish
    raise ConflictError(f"the refs of '{name}' in {bucket.location} kept changing: gave up after {MAX_ATTEMPTS} attempts")


def model_names(bucket: Bucket) -> list[str]:
    """Every model with a table in the bucket, found by listing ``models/``."""
    return names_listed(bucket.location, bucket.list("models/"))


def names_listed(location: str, listing: Iterable[ObjectInfo]) -> list[str]:
    """The models whose tables a listing of ``models/`` shows, names checked."""
    names = []
    for info in listing:
        path = str(info["path"])
        if path.endswith("/" + TABLE_FILE):
            name = path[len("models/") : -len(TABLE_FILE) - 1]
            try:
                names.append(validate_name(name))
            except ValueError:
                raise RemoteError(f"{location}: a ref table has an invalid model name ({path[:80]!r})") from None
    return sorted(names)


def listed_models(bucket: Bucket) -> set[str]:
    """The models ``info/models`` lists (empty when it is missing)."""
    return _info(bucket)[0]


def add_to_info(bucket: Bucket, names: Iterable[str], listed: set[str] | None = None) -> None:
    """Add models to ``info/models`` (for static HTTP readers), by compare-and-swap.

    ``listed``: what it listed when last read; nothing is read or written when that
    has every name already (mreg only ever adds to it).
    """
    wanted = set(names)
    if listed is not None and wanted <= listed:
        return
    for _ in range(MAX_ATTEMPTS):
        listed, etag = _info(bucket)
        if wanted <= listed:
            return
        text = "".join(f"{n}\n" for n in sorted(listed | wanted))
        if bucket.swap(INFO_MODELS, text.encode("utf-8"), etag):
            return
        time.sleep(random.uniform(0, 0.05))


def _info(bucket: Bucket) -> tuple[set[str], str | None]:
    got = bucket.get(INFO_MODELS, MAX_MODEL_LIST_SIZE)
    data, etag = got if got is not None else (b"", None)
    return {line for line in data.decode("utf-8", errors="replace").splitlines() if line}, etag
