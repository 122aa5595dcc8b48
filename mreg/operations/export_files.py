"""Files an export writes: invisible until complete, then given their name, never a half.

A copy is written to an anonymous file (Linux ``O_TMPFILE``) and linked under its
name only when all its bytes are written, verified and synced: a process killed at
any instant leaves no partial file, hidden or not. Where the system has no
anonymous files (macOS, some file systems), the copy is written under a hidden
temporary name, ``.mreg-export-*.tmp``, that its writer holds an ``flock`` on; the
next export into the same directory removes such files that no live writer holds.

The file system's refusals while writing (no space left, read-only, I/O errors, no
permission) become :class:`~mreg.errors.OutputFileError`, which says what happened,
never "not found".
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
from collections.abc import Callable
from pathlib import Path

from mreg.errors import OutputFileError
from mreg.storage.files import unique_temp_path

TEMP_PREFIX = ".mreg-export"
# What a file system that cannot hold anonymous files answers to O_TMPFILE
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL, errno.ENOENT}
_ADVICE = {
    errno.ENOSPC: "free some space (or export elsewhere) and run the export again; the files already written are whole and are kept",
    errno.EDQUOT: "your disk quota is used up; free some space and run the export again",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "you may not write there",
}


def output_error(path: Path, exc: OSError) -> OutputFileError:
    """The error for a write into ``path`` that the file system refused."""
    advice = _ADVICE.get(exc.errno or 0)
    return OutputFileError(f"cannot write {path}: {exc.strerror or exc}" + (f"; {advice}" if advice else ""), exc.errno)


def make_directories(directory: Path) -> None:
    """Create a target's directory (and its parents) for an export."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(directory, exc) from None


class PendingFile:
    """A new file in ``directory`` that has no name until :meth:`link` gives it one.

    Use as a context manager; ``fd`` is open for writing. Closing it without a link
    leaves nothing behind (an anonymous file), or removes the temporary name.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.temp: Path | None = None
        fd = self._anonymous()
        if fd is None:
            self.temp = unique_temp_path(directory, TEMP_PREFIX)
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)  # alive: a sweeping export leaves it alone
        self.fd: int = fd

    def _anonymous(self) -> int | None:
        if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd") or _linkat() is None:
            return None
        try:
            return os.open(self.directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno in _NO_TMPFILE:
                return None
            raise

    def link(self, target: Path) -> None:
        """Give the finished file the name ``target``; FileExistsError if it is taken
        (unlike a rename, a link never replaces a file)."""
        if self.temp is None:
            _link_anonymous(self.fd, target)
        else:
            os.link(self.temp, target)

    def rename(self, target: Path) -> None:
        """Move the temporary name to ``target`` (for file systems without hard links)."""
        if self.temp is None:
            raise OSError(errno.EPERM, "an anonymous file can only be linked")
        os.replace(self.temp, target)
        self.temp = None

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _link_anonymous(fd: int, target: Path) -> None:
    """Name an ``O_TMPFILE`` file: ``linkat(AT_FDCWD, "/proc/self/fd/N", ..., AT_SYMLINK_FOLLOW)``.

    ``os.link`` calls ``link(2)`` here, which would link the ``/proc`` entry itself.
    """
    linkat = _linkat()
    assert linkat is not None  # anonymous files are only made where it exists
    if linkat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD, os.fsencode(target), _AT_SYMLINK_FOLLOW) != 0:
        code = ctypes_errno()
        raise FileExistsError(code, os.strerror(code), str(target)) if code == errno.EEXIST else OSError(code, os.strerror(code), str(target))


@functools.cache
def _linkat() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """libc's ``linkat``, looked up once; None where there is none."""
    try:
        import ctypes  # start-up: looked up once, by the first export that copies

        function = ctypes.CDLL(None, use_errno=True).linkat
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    linkat: Callable[[int, bytes, int, bytes, int], int] = function
    return linkat


def ctypes_errno() -> int:
    """The errno of the last libc call made through ctypes."""
    import ctypes  # start-up: only after a failed linkat

    return ctypes.get_errno()


def sweep(directory: Path) -> int:
    """Remove temporary files of exports into ``directory`` that were killed (no writer
    holds their lock any more); return how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(TEMP_PREFIX + "-") and entry.name.endswith(".tmp")) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live export is writing it
        finally:
            os.close(fd)
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed
