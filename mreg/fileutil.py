"""Crash-safe file primitives: atomic replacement, appends and locks.

Every file mreg writes reaches its final name by ``os.replace`` of a fully written,
fsynced temporary file, so a reader sees the old bytes or the new bytes, never a
mix, and a process killed at any instant leaves at most a stray temporary file.

Locks are ``flock`` locks on lock files that are never deleted. Unlike git's
``O_EXCL`` ``.lock`` files, the kernel releases them when their holder dies, so a
``kill -9`` can never wedge the store. Lock files are only for mutual exclusion: the
data always moves by ``os.replace``.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, TypeVar

from .errors import LockTimeoutError

DEFAULT_LOCK_TIMEOUT = 60.0
T = TypeVar("T")
SYNC_THREADS = 8
Progress = Callable[[int], None]
"""A callback told how many more bytes were processed."""
ProgressReport = Callable[[int, int], None]
"""A callback told how many bytes of how many in all are done: ``(done, total)``."""


def counting(report: ProgressReport | None, total: int) -> Progress | None:
    """Turn a ``(done, total)`` report into a per-block Progress callback."""
    if report is None:
        return None
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        report(done, total)

    return advance


def lock_timeout() -> float:
    """Seconds to wait for a lock: ``MREG_LOCK_TIMEOUT`` or 60."""
    try:
        return float(os.environ.get("MREG_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_dirs(paths: Iterable[Path]) -> None:
    """Make the new entries of several directories durable: each directory once."""
    in_parallel(fsync_dir, list(dict.fromkeys(paths)))


def fsync_all(fds: list[int]) -> None:
    """fsync several open files at once."""
    in_parallel(os.fsync, fds)


def in_parallel(work: Callable[[T], object], items: Iterable[T], workers: int = SYNC_THREADS) -> None:
    """Run ``work`` on every item, ``workers`` at a time; the first error stops the rest and is raised.

    For fsyncs, which mostly wait (concurrent fsyncs share the file system's journal
    commits: 60 small files sync several times faster together than one after the
    other), and for transfers. Plain threads, not concurrent.futures: importing that (and the logging it pulls in)
    costs a command that moves nothing a tenth of its time.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    positions = iter(range(len(items)))
    lock = threading.Lock()
    failures: list[tuple[int, BaseException]] = []

    def run() -> None:
        while True:
            with lock:
                position = None if failures else next(positions, None)
            if position is None:
                return
            try:
                work(items[position])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with lock:
                    failures.append((position, exc))

    threads = [threading.Thread(target=run, name="mreg-parallel", daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException as exc:  # Ctrl-C: start nothing more, let the running items end
        with lock:
            failures.append((-1, exc))
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]


_sync_file_range: Callable[[int, int, int, int], int] | None | bool = False  # False: not looked up yet


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing ``fd``'s dirty pages to disk now, without waiting.

    The later ``fsync`` then finds most bytes already on disk, so disk writes overlap
    hashing instead of all happening at the end. A hint only (Linux
    ``sync_file_range``); elsewhere it does nothing. It never replaces the fsync.
    """
    global _sync_file_range
    if _sync_file_range is False:
        _sync_file_range = _find_sync_file_range()
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE; its result is only advice


def _find_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function  # type: ignore[no-any-return]


_process_token: str | None = None
_temp_counter = itertools.count()


def unique_temp_path(directory: Path, prefix: str) -> Path:
    """A fresh name in ``directory`` that no other process will pick.

    A random token drawn once per process (``os.urandom`` can take milliseconds on
    a busy virtual machine, and a chunked write needs one name per chunk) plus a
    counter; the pid keeps forked children apart.
    """
    global _process_token
    if _process_token is None:
        _process_token = os.urandom(6).hex()
    return directory / f"{prefix}-{os.getpid()}-{_process_token}-{next(_temp_counter)}.tmp"


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (os.write may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def replace_atomically(temp: Path, target: Path, *, durable: bool = True) -> None:
    """Rename a complete, fsynced ``temp`` over ``target``."""
    os.replace(temp, target)
    if durable:
        fsync_dir(target.parent)


def write_atomically(target: Path, data: bytes, *, temp: Path | None = None, mode: int = 0o644) -> None:
    """Replace ``target`` with ``data``: write a temp file, fsync it, rename it.

    ``temp`` defaults to a unique name beside ``target``; pass a fixed name only
    while holding a lock that covers it.
    """
    temp = temp or unique_temp_path(target.parent, "." + target.name)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        replace_atomically(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        write_all(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
