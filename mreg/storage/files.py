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
import functools
import itertools
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from mreg.errors import InputFileError, InvalidTypeError, RemoteError, UnsafeFileError
from mreg.storage.threads import in_parallel


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




def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing ``fd``'s dirty pages to disk now, without waiting.

    The later ``fsync`` then finds most bytes already on disk, so disk writes overlap
    hashing instead of all happening at the end. A hint only (Linux
    ``sync_file_range``); elsewhere it does nothing. It never replaces the fsync.
    """
    sync_file_range = _sync_file_range()
    if sync_file_range is not None:
        sync_file_range(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE; its result is only advice


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux), looked up once; None where there is none."""
    try:
        import ctypes  # start-up: looked up once, by the first writer

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    sync: Callable[[int, int, int, int], int] = function
    return sync


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
        fd = open_no_follow(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
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
    fd = open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        write_all(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symbolic link at ``path``: a store shared with
    others may hold a planted one, and a write must not land where it leads.

    Raises:
        UnsafeFileError: ``path`` is a symbolic link.
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"{path} is a symbolic link: refusing to follow it (someone planted it in the store)") from None
        raise


def read_no_follow(path: Path) -> bytes | None:
    """A small file's bytes, or None when it does not exist; a link is refused (see :func:`open_no_follow`)."""
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as stream:
        return stream.read()


def regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` as a Path if it is a regular file (after symlinks), else InputFileError.

    FIFOs, devices and sockets would block or never end: they are refused.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"a {what} must be a path, not {type(path).__name__}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(f"cannot read {what} '{path}': no such file") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"cannot read {what} '{path}': it is a directory")
    if not stat.S_ISREG(mode):
        raise InputFileError(f"cannot read {what} '{path}': not a regular file (a FIFO, device or socket)")
    return Path(path)


def refuse_symlinks(root: Path) -> None:
    """Refuse a store that holds symbolic links, which writes would follow outside it.

    Raises:
        RemoteError: naming the first link found.
    """
    for directory, subdirs, files in os.walk(root):
        for entry in (*subdirs, *files):
            path = os.path.join(directory, entry)
            if os.path.islink(path):
                raise RemoteError(f"refusing to write to {root}: {path} is a symbolic link")
