"""Zip archives opened only once their central directory is known to be of sane size.

:class:`zipfile.ZipFile` reads the whole central directory and makes a
:class:`zipfile.ZipInfo` of some 500 bytes for every 46-byte entry in it, however
many the end record declares: a weights file of 1 GB made of empty entries would
cost gigabytes of memory before any check runs. :func:`open_zip` first finds the end
record as :mod:`zipfile` does (at the very end, else the last one in the final
64 KiB, then the zip64 record before it) and refuses a directory larger than
:data:`MAX_CENTRAL_DIRECTORY`.
"""

from __future__ import annotations

import struct
import zipfile
from typing import BinaryIO

MAX_CENTRAL_DIRECTORY = 16 << 20  # bytes: some 150 000 members of a torch.save archive
MAX_COMMENT = 0xFFFF

_END = struct.Struct("<4s4H2LH")  # signature, disks, entries, directory size and offset, comment length
_LOCATOR64 = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")  # ..., entries on disk, entries, directory size, directory offset
_END_SIGNATURE, _LOCATOR64_SIGNATURE, _END64_SIGNATURE = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"


def open_zip(stream: BinaryIO) -> zipfile.ZipFile:
    """Open a seekable stream as a zip archive whose central directory is at most MAX_CENTRAL_DIRECTORY.

    Raises:
        zipfile.BadZipFile: the directory is larger, or the stream is not a zip archive.
    """
    size = central_directory_size(stream)
    if size > MAX_CENTRAL_DIRECTORY:
        raise zipfile.BadZipFile(f"a central directory of {size} bytes; mreg reads at most {MAX_CENTRAL_DIRECTORY}")
    return zipfile.ZipFile(stream)


def central_directory_size(stream: BinaryIO) -> int:
    """The size of the central directory :class:`zipfile.ZipFile` would read (0: no end record)."""
    end = stream.seek(0, 2)
    window = max(end - _END.size - MAX_COMMENT, 0)  # where zipfile looks for the end record
    start = max(window - _LOCATOR64.size - _END64.size, 0)  # and the zip64 records before it
    stream.seek(start)
    tail = stream.read(end - start)
    at = len(tail) - _END.size
    if not (at >= 0 and tail.startswith(_END_SIGNATURE, at) and tail.endswith(b"\0\0")):
        at = tail.rfind(_END_SIGNATURE, window - start)
        if at < 0 or at + _END.size > len(tail):
            return 0
    size: int = _END.unpack_from(tail, at)[5]
    locator = at - _LOCATOR64.size
    if locator >= 0 and tail.startswith(_LOCATOR64_SIGNATURE, locator):
        record = locator - _END64.size
        if record >= 0 and tail.startswith(_END64_SIGNATURE, record):
            size = _END64.unpack_from(tail, record)[8]
    return size
