"""How a push and a concurrent ``mreg gc`` of a bucket agree: no push loses an object.

A bucket has no lock, and a delete cannot be made conditional on the object being
unchanged (S3 gives identical bytes the same ETag), so gc can check an object, see it
old, and delete it just after a push rewrote ("freshened") it to reuse it. The
protocol closes that window from both sides:

gc
    1. creates a *lease*, ``gc/<start>-<random>``, before it lists anything, and
       rewrites it at least every ``HEARTBEAT`` seconds while it runs;
    2. lists the objects, marks what the refs reach, and deletes an unreachable object
       only if a HEAD just before the delete still shows it older than the grace period;
    3. deletes its lease after its last delete has returned (also when it fails).

push
    1. uploads what the bucket lacks, and rewrites (freshens) what it reuses but is
       older than half the grace period, remembering what it freshened;
    2. commits the refs (compare-and-swap);
    3. if it freshened anything: lists the leases, waits until each one is gone (or has
       not been rewritten for ``STALE`` seconds: that gc died), then HEADs every object
       it freshened and uploads again any that is gone.

Why it is safe: gc deletes only objects its listing showed, so a push's new uploads
are never at risk; a reused object is at risk only from a gc that HEADed it before the
push freshened it and deleted it after. That gc created its lease before its HEAD, so
before the push's step 3 listing, and removed it only after the delete returned: the
push waits for it, then finds the object gone and uploads it again. A
gc that starts after the push's step 2 reads refs that reach the object, and never
deletes it. Objects a push did not rewrite were written less than half the grace
period before it looked; a push that ends within the other half commits its refs
before any gc may delete them (:mod:`.sweep`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mreg.sharing.buckets.client import Bucket

LEASES = "gc/"
HEARTBEAT = 60.0  # seconds between rewrites of a running gc's lease
STALE = 5 * HEARTBEAT  # a lease not rewritten for this long belongs to a gc that died
POLL = 1.0
MAX_WAIT = 6 * 3600.0  # a push waits at most this long for running gcs


class Lease:
    """A running gc's lease (use as a context manager around the whole gc)."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.key = f"{LEASES}{stamp}-{secrets.token_hex(6)}"
        self._beaten = 0.0

    def __enter__(self) -> Lease:
        self.bucket.create(self.key, b"running\n")
        self._beaten = time.monotonic()
        return self

    def beat(self) -> None:
        """Rewrite the lease if the last rewrite is older than the heartbeat (call often)."""
        if time.monotonic() - self._beaten >= HEARTBEAT:
            self.bucket.overwrite(self.key, b"running\n")
            self._beaten = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.bucket.delete(self.key)  # every delete of this gc has returned


class Freshened:
    """The objects a push rewrote to reuse them, and how to upload each again."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self._redo: dict[str, Callable[[], object]] = {}
        self._lock = threading.Lock()

    def record(self, path: str, redo: Callable[[], object]) -> None:
        with self._lock:
            self._redo[path] = redo

    def __bool__(self) -> bool:
        return bool(self._redo)

    def settle(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[str]:
        """Step 3 of the push (see the module docstring); return the objects uploaded again."""
        if not self._redo:
            return []
        wait_for_gcs(self.bucket, clock, sleep)
        again = [path for path in sorted(self._redo) if self.bucket.head(path) is None]
        for path in again:
            self._redo[path]()
        return again


def running(bucket: Bucket) -> dict[str, object]:
    """The leases of the gcs running now: key -> when it was last rewritten (as the listing says)."""
    return {str(info["path"]): info.get("last_modified") for info in bucket.list(LEASES)}


def wait_for_gcs(bucket: Bucket, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until every gc running now is done (its lease is gone), or has died (its lease went stale)."""
    seen: dict[str, tuple[object, float]] = {}  # key -> (its last listed time, when we saw it change)
    started = clock()
    while clock() - started < MAX_WAIT:
        now = clock()
        live = {}
        for key, stamp in running(bucket).items():
            previous = seen.get(key)
            changed = previous is None or previous[0] != stamp
            seen[key] = (stamp, now if changed else previous[1])  # type: ignore[index]
            if now - seen[key][1] < STALE:
                live[key] = stamp
        if not live:
            return
        sleep(POLL)
