"""The layout of a packed record, read and checked before anything in it is decompressed.

Layout (integers little-endian)::

    0   8  magic b"\\x89MREGPK\\n"
    8   1  format version (1)
    9   1  method: 0 standalone, 1 delta
    10  1  itemsize: 1, 2, 4 or 8
    11  1  reserved, 0
    12  8  raw size in bytes
    20 32  the base's SHA-256 (delta only)
    then itemsize entries of 9 bytes: coding (0 stored, 1 zstd), length in the record
    then the planes' bytes, in order, then the raw size % itemsize bytes left over
    (XORed with the base's last bytes for a delta)

Every plane holds raw size // itemsize bytes; a zstd frame must declare that size and
carry its checksum. :mod:`mreg.storage.pack_codec` writes and decodes records; this
module only reads their structure, so that a reader (the object store following a
chain of deltas, a transfer queueing a base) learns what a record needs from its first
``HEADER_MAX`` bytes, and a decoder knows every length adds up before it decompresses.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, NamedTuple

from mreg.errors import CorruptObjectError, InvalidInputError, InvalidTypeError, ObjectNotFoundError

MAGIC = b"\x89MREGPK\n"
FORMAT_VERSION = 1
STANDALONE, DELTA = 0, 1
STORED, ZSTD = 0, 1
ITEMSIZES = (1, 2, 4, 8)

FIXED = struct.Struct("<8sBBBBQ")
ENTRY = struct.Struct("<BQ")
DIGEST_SIZE = 32
HEADER_MAX = FIXED.size + DIGEST_SIZE + 8 * ENTRY.size
"""Bytes that always hold a record's whole header (fewer for a short record)."""
BASE_HEADER = FIXED.size + DIGEST_SIZE
"""Bytes that hold a record's size and base: all a reader following a chain needs."""


class CorruptPackError(CorruptObjectError):
    """A packed record that cannot be decoded: malformed, truncated, or given the wrong base."""

    def __init__(self, digest: str, detail: str) -> None:
        super().__init__(digest, f"its packed record {detail}")
        if not digest:
            self.message = f"a packed record is corrupt: it {detail}"
            self.args = (self.message,)


class PackHeader(NamedTuple):
    """What a record's header says: enough to find its base before decoding it."""

    method: int  # STANDALONE or DELTA
    itemsize: int
    size: int  # bytes once decoded
    base: str | None  # "sha256:<hex>" of the base, for a delta


class Layout(NamedTuple):
    """A record's header and where its parts lie, every length checked."""

    header: PackHeader
    planes: list[tuple[int, int, int]]  # (coding, offset, length) of each plane
    tail: int  # offset of the bytes left over after the planes


def view(data: Any) -> memoryview:
    """``data`` as a flat memoryview of bytes, without a copy."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise InvalidTypeError(f"expected bytes or a C-contiguous buffer, not {type(data).__name__}") from None


def is_packed(data: Any) -> bool:
    """True when ``data`` starts like a packed record (its magic bytes)."""
    return bytes(view(data)[: len(MAGIC)]) == MAGIC


def read_header(packed: Any, *, digest: str = "") -> PackHeader:
    """The header of a record (its first ``HEADER_MAX`` bytes suffice; ``BASE_HEADER`` give
    the method, itemsize, size and base), checked.

    Args:
        packed: the record, or its first bytes.
        digest: the object's name, for error messages.

    Raises:
        CorruptPackError: not a record this version of mreg reads.
    """
    record = view(packed)
    if len(record) < FIXED.size:
        raise CorruptPackError(digest, f"is truncated: {len(record)} bytes, shorter than its {FIXED.size}-byte header")
    magic, version, method, itemsize, reserved, size = FIXED.unpack_from(record)
    if magic != MAGIC:
        raise CorruptPackError(digest, "does not start with the magic bytes of a packed record")
    if version != FORMAT_VERSION:
        raise CorruptPackError(digest, f"has format version {version}; this mreg reads version {FORMAT_VERSION}")
    if method not in (STANDALONE, DELTA) or itemsize not in ITEMSIZES or reserved:
        raise CorruptPackError(digest, f"has an unknown method {method}, itemsize {itemsize} or flags {reserved}")
    base = None
    if method == DELTA:
        if len(record) < BASE_HEADER:
            raise CorruptPackError(digest, "is truncated inside its base digest")
        base = "sha256:" + bytes(record[FIXED.size : BASE_HEADER]).hex()
    return PackHeader(method, itemsize, size, base)


def packed_size(path: Any, digest: str) -> int:
    """The raw size a record file's header declares.

    Raises:
        ObjectNotFoundError: there is no such file.
        CorruptPackError: its header cannot be read.
    """
    try:
        with open(path, "rb") as stream:
            return read_header(stream.read(BASE_HEADER), digest=digest).size
    except FileNotFoundError:
        raise ObjectNotFoundError(digest) from None


def read_layout(record: memoryview, expected_size: int, digest: str) -> Layout:
    """The header and the planes' places, every length checked against the record's."""
    header = read_header(record, digest=digest)
    if header.size != expected_size:
        raise CorruptPackError(digest, f"declares {header.size} bytes, but {expected_size} are expected")
    position = FIXED.size + (DIGEST_SIZE if header.method == DELTA else 0)
    table_end = position + header.itemsize * ENTRY.size
    if len(record) < table_end:
        raise CorruptPackError(digest, "is truncated inside its plane table")
    count = header.size // header.itemsize
    planes, offset = [], table_end
    for index in range(header.itemsize):
        coding, length = ENTRY.unpack_from(record, position + index * ENTRY.size)
        if coding not in (STORED, ZSTD) or (coding == STORED and length != count):
            raise CorruptPackError(digest, f"gives plane {index} coding {coding} and {length} bytes; it holds {count}")
        planes.append((coding, offset, length))
        offset += length
    tail_size = header.size % header.itemsize
    if offset + tail_size != len(record):
        raise CorruptPackError(digest, f"has {len(record)} bytes, but its table adds up to {offset + tail_size}")
    return Layout(header, planes, offset)


def digest_bytes(base_digest: str | None, base: Any) -> bytes:
    """A base's SHA-256 as 32 bytes: from ``base_digest``, else hashed."""
    if base_digest is None:
        return hashlib.sha256(base).digest()
    hexpart = base_digest.removeprefix("sha256:")
    if not base_digest.startswith("sha256:") or len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
        raise InvalidInputError(f"base digest '{base_digest[:80]}' is not 'sha256:' and 64 lowercase hex digits")
    return bytes.fromhex(hexpart)


def checked_base(numpy: Any, header: PackHeader, base: Any | None, base_digest: str | None, digest: str) -> Any:
    """The base a delta needs, as a byte array: given, of the right size and digest."""
    if base is None:
        raise CorruptPackError(digest, f"is a delta against {header.base}, and no base was given")
    array = numpy.frombuffer(view(base), dtype=numpy.uint8)
    if len(array) != header.size:
        raise CorruptPackError(digest, f"is a delta against {header.base} of {header.size} bytes; the base given has {len(array)}")
    given = "sha256:" + digest_bytes(base_digest, array).hex()
    if given != header.base:
        raise CorruptPackError(digest, f"is a delta against {header.base}, not against the base given ({given})")
    return array


class FrameReader:
    """The bytes of one zstd frame holding a plane, read block by block into the caller's
    buffer (no plane-sized allocation: what is decompressed is used while in the cache).

    Before anything is decompressed the frame must declare exactly the plane's size,
    carry a checksum, and end exactly where the record's table says (its blocks are
    walked: a frame followed by anything is refused). zstd checks the checksum when it
    reaches the frame's end, which :meth:`finish` requires.
    """

    def __init__(self, zstandard: Any, frame: memoryview, size: int, what: str, digest: str) -> None:
        self.zstandard, self.size, self.what, self.digest = zstandard, size, what, digest
        try:
            declared = zstandard.frame_content_size(frame)
            if declared != size:
                raise CorruptPackError(digest, f"declares {declared} bytes in its {what}, not {size}")
            if not zstandard.get_frame_parameters(frame).has_checksum:
                raise CorruptPackError(digest, f"cannot decompress its {what} (its zstd frame has no checksum)")
            length = frame_length(zstandard.frame_header_size(frame), frame)
        except zstandard.ZstdError as exc:
            raise CorruptPackError(digest, f"cannot decompress its {what} ({exc})") from None
        if length != len(frame):
            raise CorruptPackError(digest, f"cannot decompress its {what} (its zstd frame ends at byte {length} of {len(frame)})")
        self.reader = zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=False)
        self.done = 0

    def read_into(self, buffer: Any) -> None:
        """Fill ``buffer`` (a writable byte array) with the plane's next bytes."""
        wanted, filled = len(buffer), 0
        try:
            while filled < wanted:
                got = self.reader.readinto(buffer[filled:])
                if not got:
                    raise CorruptPackError(self.digest, f"ends its {self.what} after {self.done + filled} bytes, not {self.size}")
                filled += got
            self.done += filled
        except self.zstandard.ZstdError as exc:
            raise CorruptPackError(self.digest, f"cannot decompress its {self.what} ({exc})") from None

    def finish(self) -> None:
        """Check that the frame ends here, its checksum verified."""
        try:
            if self.done != self.size or self.reader.read(1):
                raise CorruptPackError(self.digest, f"decompresses its {self.what} to more than {self.size} bytes")
        except self.zstandard.ZstdError as exc:
            raise CorruptPackError(self.digest, f"cannot decompress its {self.what} ({exc})") from None


def frame_length(header: int, frame: memoryview) -> int:
    """Where a zstd frame ends: after its header, its blocks (each a 3-byte header saying
    its type, size and whether it is the last) and its 4-byte checksum, which
    :class:`FrameReader` requires. A frame cut short ends past ``len(frame)``."""
    position = header
    while position + 3 <= len(frame):
        word = int.from_bytes(frame[position : position + 3], "little")
        kind, size = (word >> 1) & 3, word >> 3
        position += 3 + (1 if kind == 1 else size)  # an RLE block holds one byte
        if word & 1:
            return position + 4
    return len(frame) + 1
