"""The bytes of a pickle, all of them or a stream read ahead in blocks, bounded."""

from __future__ import annotations

from typing import BinaryIO

from mreg.formats.containers import FormatError
from mreg.formats.pickle_globals import (
    MAX_PICKLE,
)


class Buffer:
    """Pickle bytes: all of them, or a stream read ahead in blocks up to a limit.

    ``offset + pos`` is the position in the stream of the next byte to interpret.
    """

    def __init__(self, data: bytes = b"", stream: BinaryIO | None = None, limit: int = MAX_PICKLE) -> None:
        if len(data) > limit:
            raise FormatError(f"checkpoint pickle is larger than {limit} bytes")
        self.data, self.pos, self.offset = data, 0, 0
        self.stream, self.left = stream, limit - len(data)

    def ensure(self, count: int, strict: bool = True) -> None:
        """Make ``count`` bytes from ``pos`` available (strict: or fail)."""
        missing = self.pos + count - len(self.data)
        if missing > 0 and self.stream is not None and self.left > 0:
            more = self.stream.read(min(self.left, max(missing, 1 << 16)))
            self.left -= len(more)
            self.offset += self.pos
            self.data, self.pos = self.data[self.pos :] + more, 0
            missing = count - len(self.data)
        if strict and missing > 0:
            raise FormatError(f"checkpoint pickle is truncated or larger than {MAX_PICKLE} bytes")

    def read(self, count: int) -> bytes:
        if count < 0:  # a signed length field: never step back
            raise FormatError(f"malformed pickle: a length of {count} bytes")
        self.ensure(count)
        start = self.pos
        self.pos += count
        return self.data[start : self.pos]

    def readline(self) -> bytes:
        self.ensure(256, strict=False)
        end = self.data.find(b"\n", self.pos, self.pos + 256)
        if end < 0:
            raise FormatError("malformed pickle: a GLOBAL name longer than 256 bytes")
        return self.read(end + 1 - self.pos)
