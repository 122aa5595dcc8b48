"""Reading the small files signing needs (keys, allowed signers, signatures): regular files only, bounded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mreg.errors import SignatureError
from mreg.text import printable


def read_small_file(path: Path, limit: int, what: str, error: type[SignatureError] = SignatureError) -> tuple[bytearray, int]:
    """The bytes of a regular file of at most ``limit`` bytes, and its permission bits.

    The file is opened without blocking and checked with ``fstat``, so a FIFO or a
    device named as a key never hangs the command. The bytes come back in a
    ``bytearray`` so that a caller holding a private key can wipe them.

    Args:
        path: the file.
        limit: the largest size accepted.
        what: what the file is ("signing key"), for error messages.
        error: the error class to raise.

    Returns:
        The bytes and ``st_mode``'s permission bits.

    Raises:
        SignatureError: (of class ``error``) the file is missing, a directory, not a
            regular file, unreadable, or larger than ``limit``.
    """
    shown = printable(str(path), 200)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{what} {shown} does not exist") from None
    except OSError as exc:
        raise error(f"cannot open {what} {shown}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{what} {shown} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {shown} is not a regular file")
        if info.st_size > limit:
            raise error(f"{what} {shown} has {info.st_size} bytes, more than the {limit} allowed")
        data = bytearray(info.st_size + 1)  # one byte more shows a file that grew meanwhile
        size = 0
        with memoryview(data) as view:
            while size < len(data):
                count = os.readv(fd, [view[size:]])
                if count == 0:
                    break
                size += count
        if size > info.st_size:
            raise error(f"{what} {shown} changed while it was read")
        del data[size:]
        return data, stat.S_IMODE(info.st_mode)
    except OSError as exc:
        raise error(f"cannot read {what} {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
