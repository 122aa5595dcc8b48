"""Locks: ``flock`` on lock files that are never deleted, taken with a bounded wait."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from mreg.errors import LockTimeoutError
from mreg.records.names import parse_seconds
from mreg.storage.files import open_no_follow

DEFAULT_LOCK_TIMEOUT = 60.0


MAX_LOCK_TIMEOUT = 7 * 24 * 3600.0  # a week: beyond, waiting is hanging


def lock_timeout() -> float:
    """Seconds to wait for a lock: ``MREG_LOCK_TIMEOUT`` (0 to a week) or 60.

    Raises:
        InvalidInputError: the variable is not such a number (``nan`` would wait forever).
    """
    text = os.environ.get("MREG_LOCK_TIMEOUT")
    if text is None:
        return DEFAULT_LOCK_TIMEOUT
    return parse_seconds(text, "MREG_LOCK_TIMEOUT", maximum=MAX_LOCK_TIMEOUT)


class FileLock:
    """An exclusive or shared ``flock`` on ``path``, taken with a bounded wait.

    Use as a context manager. The lock file is created if needed and never removed.
    """

    def __init__(self, path: Path, *, shared: bool = False, timeout: float | None = None, what: str = "") -> None:
        self.path = path
        self.shared = shared
        self.timeout = lock_timeout() if timeout is None else timeout
        self.what = what or str(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting at most ``timeout`` seconds."""
        fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT)  # a planted link must not be followed
        mode = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, mode)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeoutError(
                        f"timed out after {self.timeout:g}s waiting for the lock on {self.what}; "
                        "another mreg process is using it (set MREG_LOCK_TIMEOUT to wait longer)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def release(self) -> None:
        """Release the lock (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
