"""Opening the store's files for the web server without following links.

Anyone who can write into a shared store could plant ``models/x/_log`` as a symbolic
link to ``/etc/passwd``, or an object as a FIFO or a link to ``/dev/zero``; a server
that followed them would leak the file, or hang, or fill its memory. So every file the
server serves or reads for a page is opened component by component from the store's
root with ``O_NOFOLLOW`` (``openat`` on each directory in turn): no link is followed
anywhere under the store, so the file opened is inside it by construction. Only
regular files are accepted, checked on the open descriptor (``fstat``), and reads are
bounded. The store's root itself is the resolved path the registry was opened with.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mreg.errors import UnsafeFileError

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LINK_ERRORS = (errno.ELOOP, errno.EMLINK)  # what O_NOFOLLOW reports for a link (EMLINK on FreeBSD)


def open_regular(root: Path | str, relative: str) -> int | None:
    """A read-only descriptor of the regular file ``root/relative``, or None if there is none.

    Args:
        root: the store's directory (a resolved path).
        relative: a ``/``-separated path inside it, without ``.``, ``..`` or empty parts.

    Returns:
        An open descriptor (the caller closes it), or None when the file or one of its
        directories does not exist.

    Raises:
        UnsafeFileError: a component is a symbolic link, or the file is not a regular file.
    """
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeFileError(f"'{relative[:80]}' is not a plain path inside the store")
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = _open_at(part, _DIRECTORY_FLAGS, directory, relative)
            if inner is None:
                return None
            os.close(directory)
            directory = inner
        # Look before opening: opening a device can have effects of its own.
        try:
            mode = os.stat(parts[-1], dir_fd=directory, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(f"{relative} in the store is {_kind(mode)}; only regular files are read")
        fd = _open_at(parts[-1], _FILE_FLAGS, directory, relative)
    finally:
        os.close(directory)
    if fd is None:
        return None
    mode = os.fstat(fd).st_mode  # what was opened, which may have been swapped since the look
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafeFileError(f"{relative} in the store is {_kind(mode)}; only regular files are read")
    return fd


def read_regular(root: Path | str, relative: str, limit: int) -> bytes | None:
    """The whole regular file ``root/relative`` (see :func:`open_regular`), or None if absent.

    Raises:
        UnsafeFileError: it is not a regular file inside the store, or holds more than ``limit`` bytes.
    """
    fd = open_regular(root, relative)
    if fd is None:
        return None
    with open(fd, "rb", closefd=True) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFileError(f"{relative} in the store is larger than {limit} bytes; not read")
    return data


def _open_at(name: str, flags: int, directory: int, relative: str) -> int | None:
    """``openat(directory, name, flags)``; None when it does not exist."""
    try:
        return os.open(name, flags, dir_fd=directory)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # also what Linux says for a link opened with O_DIRECTORY | O_NOFOLLOW
        try:
            mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            raise UnsafeFileError(f"{relative} in the store leads through a symbolic link; links are not followed") from None
        return None
    except OSError as exc:
        if exc.errno in _LINK_ERRORS:
            raise UnsafeFileError(f"{relative} in the store leads through a symbolic link; links are not followed") from None
        raise


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"
