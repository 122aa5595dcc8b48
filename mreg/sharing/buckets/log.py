"""A model's log in a bucket: one object per change, chained, read in batches.

Nothing can be appended to in a bucket, so each change is one object,
``models/NAME/_logs/<SEQ>`` (twelve digits: the seq of its first line), holding its
chained lines (:mod:`mreg.records.chain`). It is written create-only: of two writers
that read the same head, one creates the object and the other re-reads the head and
chains after it, so entries are never lost or reordered, and the keys list in chain
order. Objects an older mreg wrote (``<time>-<random>``) are sealed by seq 0, whose
``prev`` is the hash of their bytes in key order.

Readers never GET one object at a time: keys come from one listing (1,000 a page), and
objects are fetched ``READERS`` at once, only as many as asked for: a pull reads the
objects after the head it read last time; a push reads back from the newest to its
last merge. A read is bounded by ``MAX_LOG_OBJECTS`` objects and ``MAX_LOG_SIZE`` bytes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mreg.errors import ConflictError, MregError, RemoteError
from mreg.records.chain import Head, Link, chained, continues, line_hash, parse_link
from mreg.records.limits import MAX_LOG_OBJECT_SIZE, MAX_LOG_SIZE
from mreg.records.names import validate_name
from mreg.records.refs import LogEntry, parse_log
from mreg.sharing.buckets.client import READERS, Bucket
from mreg.sharing.history import History, LogSince, log_since
from mreg.storage.threads import in_parallel

LOG_DIR = "_logs"
MAX_LOG_OBJECTS = 100_000
MAX_ATTEMPTS = 50
SEQ_DIGITS = 12
LOOK_BACK = 1000
"""Seqs listed before the one a pull read last (the object holding it starts at most this far back, mostly)."""


def prefix(name: str) -> str:
    return f"models/{validate_name(name)}/{LOG_DIR}/"


class LogKeys:
    """A model's log objects as one listing shows them: chained ones by seq, and older ones."""

    def __init__(self, bucket: Bucket, name: str, after: int | None = None) -> None:
        self.bucket, self.name = bucket, name
        self.where = f"log of '{name}' in {bucket.location}"
        start = f"{prefix(name)}{after:0{SEQ_DIGITS}d}" if after is not None else None
        keys = [str(info["path"]) for info in bucket.list(prefix(name), after=start)]
        if len(keys) > MAX_LOG_OBJECTS:
            raise RemoteError(f"{bucket.location}: the log of '{name}' has {len(keys)} objects, more than the {MAX_LOG_OBJECTS} allowed")
        self.chained: list[tuple[int, str]] = []
        self.legacy: list[str] = []
        for key in sorted(keys):
            last = key.rsplit("/", 1)[-1]
            if len(last) == SEQ_DIGITS and last.isdigit():
                self.chained.append((int(last), key))
            else:
                self.legacy.append(key)
        self.chained.sort()

    def fetch(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Several log objects at once, each and all together bounded."""
        found: dict[str, bytes] = {}
        total = [0]

        def get(key: str) -> None:
            got = self.bucket.get(key, MAX_LOG_OBJECT_SIZE)
            if got is None:
                raise RemoteError(f"{self.bucket.location}/{key} was listed but cannot be read: the {self.where} is damaged")
            total[0] += len(got[0])
            if total[0] > MAX_LOG_SIZE:
                raise RemoteError(f"{self.bucket.location}: the {self.where} is larger than the {MAX_LOG_SIZE} bytes allowed")
            found[key] = got[0]

        in_parallel(get, list(keys), READERS)
        return found

    def links(self, keys: Sequence[tuple[int, str]], data: Mapping[str, bytes]) -> list[Link]:
        """The chained lines of some objects, in order, each object's first seq checked against its key."""
        found: list[Link] = []
        for seq, key in keys:
            where = f"{self.bucket.location}/{key}"
            lines = data[key].split(b"\n")
            if lines[-1] != b"" or len(lines) < 2:
                raise RemoteError(f"{where} is empty or does not end with a line feed: the {self.where} is damaged")
            for number, line in enumerate(lines[:-1], start=1):
                link = parse_link(line, number)
                if not isinstance(link, Link):
                    raise RemoteError(f"{where}: {link or f'line {number} is not chained'}; the {self.where} is damaged")
                if number == 1 and link.seq != seq:
                    raise RemoteError(f"{where} does not start at seq {seq}: the {self.where} is damaged")
                found.append(link)
        return found

    def legacy_bytes(self) -> bytes:
        """The objects an older mreg wrote, in key order (what seq 0 seals)."""
        data = self.fetch(self.legacy)
        return b"".join(data[key] for key in self.legacy)


def read_history(bucket: Bucket, name: str, since: int | None = None) -> History:
    """A model's log, checked: all of it, or (``since``) the chained objects from the one
    holding that seq on (the older ones are not read).

    Raises:
        RemoteError: an object is unreadable, too large, or the chain is broken.
    """
    keys = LogKeys(bucket, name, None if since is None else max(0, since - LOOK_BACK))
    if since is not None and not any(seq <= since for seq, _ in keys.chained):
        keys = LogKeys(bucket, name)  # the object holding that seq starts further back: list it all
    chosen = keys.chained
    if since is not None:
        first = max((i for i, (seq, _) in enumerate(chosen) if seq <= since), default=0)
        chosen = chosen[first:]
    legacy_bytes = keys.legacy_bytes() if since is None else b""
    data = keys.fetch([key for _, key in chosen])
    links = keys.links(chosen, data)
    if since is None:
        problem = continues(links, None, legacy_bytes)
        if problem and links and links[0].seq == 0 and continues(links[1:], links[0].head) is None:
            problem = None  # objects an older mreg wrote since seq 0 sealed them: the chain holds (fsck reports it)
    else:
        problem = continues(links[1:], links[0].head) if links else None
    if problem:
        raise RemoteError(f"{bucket.location}: the {keys.where} is broken: {problem}; refused")
    entries, problems = parse_log(legacy_bytes.decode("utf-8", errors="replace"), keys.where)
    if problems:
        raise RemoteError(f"{problems[0]}; refused")
    return History(sorted(entries, key=lambda e: e.time), links)


def read_since(bucket: Bucket, name: str, source_id: str) -> LogSince:
    """A model's log read back from the newest object to its last merge from ``source_id``,
    in batches of 1, 2, 4... up to ``READERS`` objects (all of it when there is none)."""
    keys = LogKeys(bucket, name)
    links: list[Link] = []
    remaining = list(keys.chained)
    size = 1  # the merge is most often in the newest object: read 1, then 2, 4... up to READERS at once
    while remaining:
        batch, remaining = remaining[-size:], remaining[:-size]
        size = min(2 * size, READERS)
        data = keys.fetch([key for _, key in batch])
        links = keys.links(batch, data) + links
        if any(link.ref == "_merge" and link.fields.get("from") == source_id for link in links):
            break
    older: list[LogEntry] = []  # the lines an older mreg wrote, when the whole log was read
    if not remaining:
        older, problems = parse_log(keys.legacy_bytes().decode("utf-8", errors="replace"), keys.where)
        if problems:
            raise RemoteError(f"{problems[0]}; refused")
        older.sort(key=lambda entry: entry.time)
    return log_since([*older, *links], source_id, known_all=False)


def append(bucket: Bucket, name: str, fields: Sequence[Mapping[str, Any]]) -> Head | None:
    """Record the lines of one change as a new log object, chained after the newest one.

    Raises:
        ConflictError: other writers kept taking the next seq.
    """
    if not fields:
        return None
    for attempt in range(MAX_ATTEMPTS):
        keys = LogKeys(bucket, name)
        if keys.chained:
            last = keys.chained[-1]
            head = keys.links([last], keys.fetch([last[1]]))[-1].head
            lines, new_head = chained(fields, head)
        else:
            lines, new_head = chained(fields, None, keys.legacy_bytes())
        first = new_head.seq - len(lines) + 1
        if bucket.create(f"{prefix(name)}{first:0{SEQ_DIGITS}d}", b"".join(line + b"\n" for line in lines)):
            return new_head
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # another writer took that seq: chain after it
    raise ConflictError(f"the log of '{name}' in {bucket.location} kept growing under this push: gave up after {MAX_ATTEMPTS} attempts")


def check_log(bucket: Bucket, name: str) -> list[str]:
    """fsck of a model's log in a bucket: every object readable, the chain and the seal intact."""
    try:
        keys = LogKeys(bucket, name)
        data = keys.fetch([key for _, key in keys.chained])
        links = keys.links(keys.chained, data)
        legacy = keys.legacy_bytes()
    except MregError as exc:
        return [exc.message]
    problem = continues(links, None, legacy)
    if problem and links and links[0].seq == 0 and links[0].prev != line_hash(legacy):
        changed = "objects written before the chain changed after seq 0 sealed them"
        return [f"the log of '{name}': {changed} (an older mreg wrote to the bucket, or they were edited)"]
    return [f"the log of '{name}' is broken: {problem}"] if problem else []
