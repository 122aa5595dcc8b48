"""Packed records: a tensor's bytes compressed losslessly, alone or as a delta against a base.

A fine-tune's weights keep most of their parent's sign, exponent and high mantissa
bits. A record stores a tensor's bytes either *standalone* or as a *delta*: each
element's integer difference from the same element of an equally long base (the
same tensor of a related version), zigzagged so that small changes of either sign give small
numbers. Either way the bytes are split into planes by position within an element
(every element's first byte, then every second byte, ...): sign and exponent bytes,
and the high bytes of a delta, are nearly constant and compress well, while low
mantissa bytes are noise. Each plane is one zstd frame, or stored as it is when zstd
saves too little (decoding a stored plane costs a copy).

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

Every plane holds raw size // itemsize bytes; a zstd frame must declare that size
and carry its checksum. A reader checks the whole layout before it decompresses
anything, and never decompresses more than the size the caller expects. This module
is pure: bytes in, bytes out; ``zstandard`` and ``numpy`` are imported by the
functions that need them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Any, NamedTuple

from mreg.errors import CorruptObjectError, InvalidInputError, InvalidTypeError, MregError
from mreg.storage import pack_planes

Buffer = Any
"""Bytes-like: bytes, bytearray, memoryview, mmap or a C-contiguous numpy array (numpy's
type stubs declare the buffer protocol only from Python 3.12 on, hence Any)."""

MAGIC = b"\x89MREGPK\n"
FORMAT_VERSION = 1
STANDALONE, DELTA = 0, 1
STORED, ZSTD = 0, 1
ITEMSIZES = (1, 2, 4, 8)
DEFAULT_LEVEL = 1  # on these planes, levels 3 and 5 were no smaller and 1.6 to 3 times slower
MIN_SAVING = 0.05  # a record must be this much smaller than the raw bytes to be worth a decode
MIN_PLANE_SAVING = 1 / 32  # a plane zstd shrinks less is stored as it is: it decodes for the price of a copy
SAMPLE_FROM = 4 << 20  # encode_best tries each base on samples of a tensor larger than this
SAMPLE_WINDOWS, SAMPLE_WINDOW = 4, 64 << 10

_FIXED = struct.Struct("<8sBBBBQ")
_ENTRY = struct.Struct("<BQ")
_DIGEST_SIZE = 32
HEADER_MAX = _FIXED.size + _DIGEST_SIZE + 8 * _ENTRY.size
"""Bytes that always hold a record's whole header (fewer for a short record)."""


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


class _Layout(NamedTuple):
    header: PackHeader
    planes: list[tuple[int, int, int]]  # (coding, offset, length) of each plane
    tail: int  # offset of the bytes left over after the planes


def is_packed(data: Buffer) -> bool:
    """True when ``data`` starts like a packed record (its magic bytes)."""
    return bytes(_view(data)[: len(MAGIC)]) == MAGIC


def read_header(packed: Buffer, *, digest: str = "") -> PackHeader:
    """The header of a record (its first ``HEADER_MAX`` bytes suffice), checked.

    Args:
        packed: the record, or its first bytes.
        digest: the object's name, for error messages.

    Raises:
        CorruptPackError: not a record this version of mreg reads.
    """
    return _read_header(_view(packed), digest)


def encode(
    raw: Buffer,
    *,
    itemsize: int,
    base: Buffer | None = None,
    base_digest: str | None = None,
    level: int = DEFAULT_LEVEL,
    min_saving: float | None = MIN_SAVING,
    min_plane_saving: float = MIN_PLANE_SAVING,
) -> bytes | None:
    """Pack ``raw`` (a tensor's bytes), standalone or as a delta against ``base``.

    Args:
        raw: the bytes; any length (a last partial element is kept as it is).
        itemsize: bytes per element (1, 2, 4 or 8): 2 for bf16/f16, 4 for f32.
        base: bytes of the same length to store ``raw`` as a delta against.
        base_digest: the SHA-256 of ``base`` ("sha256:<hex>") when the caller knows it
            (the name it is stored under); computed when not given.
        level: the zstd level.
        min_saving: the fraction of ``raw`` the record must save, else None is returned;
            None to always return the record.
        min_plane_saving: the fraction of a byte plane zstd must save for the plane to
            be compressed, else it is stored. Higher trades size for decoding speed: at
            1/6, a float32 fine-tune's delta was 0.534x of raw instead of 0.500x and
            decoded ~1.5 times faster (its second plane, which zstd shrinks by 14 %,
            is then stored).

    Returns:
        The record, or None when it would not save enough.

    Raises:
        InvalidInputError: a bad itemsize, level, base length or base digest.
    """
    numpy, zstandard = _modules()
    source = _array(numpy, raw)
    if itemsize not in ITEMSIZES:
        raise InvalidInputError(f"itemsize {itemsize} is not supported; use one of {', '.join(map(str, ITEMSIZES))}")
    if not isinstance(level, int) or not 1 <= level <= 22:
        raise InvalidInputError(f"zstd level {level!r} is not allowed; use 1 to 22")
    header_digest = b""
    base_array = None
    if base is not None:
        base_array = _array(numpy, base)
        if len(base_array) != len(source):
            raise InvalidInputError(f"a delta needs a base of the same size: {len(base_array)} bytes, not {len(source)}")
        header_digest = _digest_bytes(base_digest, base_array)
    count = len(source) // itemsize
    planes = pack_planes.split(numpy, source[: count * itemsize], itemsize, base_array)
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    table, payloads = [], []
    for plane in planes:
        compressed = compressor.compress(plane)
        if len(compressed) <= count * (1 - min_plane_saving):
            table.append(_ENTRY.pack(ZSTD, len(compressed)))
            payloads.append(compressed)
        else:
            table.append(_ENTRY.pack(STORED, count))
            payloads.append(memoryview(plane))
    tail = source[count * itemsize :]
    if base_array is not None:
        tail = tail ^ base_array[count * itemsize :]
    method = STANDALONE if base is None else DELTA
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, method, itemsize, 0, len(source))
    record = b"".join([fixed, header_digest, *table, *payloads, memoryview(tail)])
    if min_saving is not None and len(record) > len(source) * (1 - min_saving):
        return None
    return record


def encode_best(
    raw: Buffer,
    *,
    itemsize: int,
    bases: Iterable[tuple[str, Buffer]] = (),
    level: int = DEFAULT_LEVEL,
    min_saving: float | None = MIN_SAVING,
) -> bytes | None:
    """The smallest record of ``raw``: standalone, or a delta against one of ``bases``.

    Bases of another length are skipped. For a tensor over ``SAMPLE_FROM`` bytes the
    choice is made on samples (four windows spread over it), so that only the winner
    is encoded whole.

    Args:
        raw: the bytes.
        itemsize: bytes per element (1, 2, 4 or 8).
        bases: candidate bases, as ("sha256:<hex>", bytes) pairs.
        level: the zstd level.
        min_saving: as for :func:`encode`.

    Returns:
        The record, or None when none saves enough.

    Raises:
        InvalidInputError: as for :func:`encode`.
    """
    view = _view(raw)
    candidates: list[tuple[str, Buffer] | None] = [None]
    candidates += [(digest, data) for digest, data in bases if _view(data).nbytes == view.nbytes]
    if len(candidates) > 1 and view.nbytes > max(SAMPLE_FROM, SAMPLE_WINDOWS * SAMPLE_WINDOW):
        candidates = [min(candidates, key=lambda candidate: _sampled_size(view, itemsize, candidate, level))]
    best: bytes | None = None
    for candidate in candidates:
        digest, data = candidate if candidate is not None else (None, None)
        record = encode(view, itemsize=itemsize, base=data, base_digest=digest, level=level, min_saving=min_saving)
        if record is not None and (best is None or len(record) < len(best)):
            best = record
    return best


def decode(packed: Buffer, *, expected_size: int, base: Buffer | None = None, base_digest: str | None = None, digest: str = "") -> bytearray:
    """The raw bytes of a record, checked to be ``expected_size`` long.

    Args:
        packed: the record.
        expected_size: the size the caller knows the object has (from its chunk index);
            a record that declares another is refused before anything is decompressed.
        base: the base's bytes, for a delta.
        base_digest: the base's SHA-256 when the caller knows it (the name it is
            stored under); computed when not given.
        digest: the object's name, for error messages.

    Returns:
        A new bytearray of ``expected_size`` bytes.

    Raises:
        CorruptPackError: the record is malformed, truncated, declares another size,
            or needs another base (or one that was not given).
    """
    out = bytearray(expected_size)
    decode_into(packed, out, base=base, base_digest=base_digest, digest=digest)
    return out


def decode_into(packed: Buffer, out: Buffer, *, base: Buffer | None = None, base_digest: str | None = None, digest: str = "") -> None:
    """Decode a record straight into ``out``, a writable buffer of exactly its size.

    ``out`` may be a bytearray, a writable memoryview or mmap, or a numpy array (for
    a contiguous torch tensor, ``tensor.view(-1).view(torch.uint8).numpy()``), so that
    a loader decodes into a tensor's own memory. Memory beyond ``out``: one plane
    (``len(out) // itemsize`` bytes) at a time. On error, ``out`` holds garbage.

    Args:
        packed: the record.
        out: where the raw bytes go; its length is the expected size.
        base: the base's bytes, for a delta.
        base_digest: the base's SHA-256 when the caller knows it; computed when not given.
        digest: the object's name, for error messages.

    Raises:
        InvalidInputError: ``out`` is read-only.
        CorruptPackError: as for :func:`decode`.
    """
    numpy, zstandard = _modules()
    target = _view(out)
    if target.readonly:
        raise InvalidInputError("decode_into needs a writable buffer; a read-only one was given")
    record = _view(packed)
    layout = _read_layout(record, len(target), digest)
    header = layout.header
    base_array = None
    if header.method == DELTA:
        base_array = _checked_base(numpy, header, base, base_digest, digest)
    destination = numpy.frombuffer(target, dtype=numpy.uint8)
    count = header.size // header.itemsize
    body = destination[: count * header.itemsize].reshape(count, header.itemsize)
    decompressor = zstandard.ZstdDecompressor()
    for index, (coding, offset, length) in enumerate(layout.planes):
        stored = record[offset : offset + length]
        plane = _decompressed(zstandard, decompressor, stored, count, f"plane {index}", digest) if coding == ZSTD else stored
        body[:, index] = numpy.frombuffer(plane, dtype=numpy.uint8)
    tail = numpy.frombuffer(record[layout.tail :], dtype=numpy.uint8)
    if base_array is not None:
        tail = tail ^ base_array[count * header.itemsize :]
        pack_planes.undo_delta(numpy, destination[: count * header.itemsize], base_array[: count * header.itemsize], header.itemsize)
    destination[count * header.itemsize :] = tail


def _modules() -> tuple[Any, Any]:
    """numpy and zstandard, imported on first use (never by a command that reads no record)."""
    try:
        import numpy  # start-up: only commands that pack or unpack load these
        import zstandard
    except ImportError as exc:
        raise MregError(f"packed objects need the numpy and zstandard packages (missing {exc.name}): pip install numpy zstandard") from None
    return numpy, zstandard


def _view(data: Buffer) -> memoryview:
    """``data`` as a flat memoryview of bytes, without a copy."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise InvalidTypeError(f"expected bytes or a C-contiguous buffer, not {type(data).__name__}") from None


def _array(numpy: Any, data: Buffer) -> Any:
    """A read-only byte array over ``data``, without a copy."""
    return numpy.frombuffer(_view(data), dtype=numpy.uint8)


def _digest_bytes(base_digest: str | None, base: Any) -> bytes:
    """The base's SHA-256 as 32 bytes: from ``base_digest``, else hashed."""
    if base_digest is None:
        return hashlib.sha256(base).digest()
    hexpart = base_digest.removeprefix("sha256:")
    if not base_digest.startswith("sha256:") or len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
        raise InvalidInputError(f"base digest '{base_digest[:80]}' is not 'sha256:' and 64 lowercase hex digits")
    return bytes.fromhex(hexpart)


def _read_header(record: memoryview, digest: str) -> PackHeader:
    if len(record) < _FIXED.size:
        raise CorruptPackError(digest, f"is truncated: {len(record)} bytes, shorter than its {_FIXED.size}-byte header")
    magic, version, method, itemsize, reserved, size = _FIXED.unpack_from(record)
    if magic != MAGIC:
        raise CorruptPackError(digest, "does not start with the magic bytes of a packed record")
    if version != FORMAT_VERSION:
        raise CorruptPackError(digest, f"has format version {version}; this mreg reads version {FORMAT_VERSION}")
    if method not in (STANDALONE, DELTA) or itemsize not in ITEMSIZES or reserved:
        raise CorruptPackError(digest, f"has an unknown method {method}, itemsize {itemsize} or flags {reserved}")
    base = None
    if method == DELTA:
        end = _FIXED.size + _DIGEST_SIZE
        if len(record) < end:
            raise CorruptPackError(digest, "is truncated inside its base digest")
        base = "sha256:" + bytes(record[_FIXED.size : end]).hex()
    return PackHeader(method, itemsize, size, base)


def _read_layout(record: memoryview, expected_size: int, digest: str) -> _Layout:
    """The header and the planes' places, every length checked against the record's."""
    header = _read_header(record, digest)
    if header.size != expected_size:
        raise CorruptPackError(digest, f"declares {header.size} bytes, but {expected_size} are expected")
    position = _FIXED.size + (_DIGEST_SIZE if header.method == DELTA else 0)
    table_end = position + header.itemsize * _ENTRY.size
    if len(record) < table_end:
        raise CorruptPackError(digest, "is truncated inside its plane table")
    count = header.size // header.itemsize
    planes, offset = [], table_end
    for index in range(header.itemsize):
        coding, length = _ENTRY.unpack_from(record, position + index * _ENTRY.size)
        if coding not in (STORED, ZSTD) or (coding == STORED and length != count):
            raise CorruptPackError(digest, f"gives plane {index} coding {coding} and {length} bytes; it holds {count}")
        planes.append((coding, offset, length))
        offset += length
    tail_size = header.size % header.itemsize
    if offset + tail_size != len(record):
        raise CorruptPackError(digest, f"has {len(record)} bytes, but its table adds up to {offset + tail_size}")
    return _Layout(header, planes, offset)


def _checked_base(numpy: Any, header: PackHeader, base: Buffer | None, base_digest: str | None, digest: str) -> Any:
    """The base a delta needs, as a byte array: given, of the right size and digest."""
    if base is None:
        raise CorruptPackError(digest, f"is a delta against {header.base}, and no base was given")
    array = _array(numpy, base)
    if len(array) != header.size:
        raise CorruptPackError(digest, f"is a delta against {header.base} of {header.size} bytes; the base given has {len(array)}")
    given = "sha256:" + _digest_bytes(base_digest, array).hex()
    if given != header.base:
        raise CorruptPackError(digest, f"is a delta against {header.base}, not against the base given ({given})")
    return array


def _decompressed(zstandard: Any, decompressor: Any, frame: memoryview, size: int, what: str, digest: str) -> bytes:
    """One zstd frame that must hold exactly ``size`` bytes; its declared size is checked
    first, so a hostile frame never makes zstandard allocate more."""
    try:
        declared = zstandard.frame_content_size(frame)
        if declared != size:
            raise CorruptPackError(digest, f"declares {declared} bytes in its {what}, not {size}")
        data = decompressor.decompress(frame, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptPackError(digest, f"cannot decompress its {what} ({exc})") from None
    if len(data) != size:  # zstandard checks this too; a bound never rests on one library's check alone
        raise CorruptPackError(digest, f"decompresses its {what} to {len(data)} bytes, not {size}")
    return data


def _sampled_size(view: memoryview, itemsize: int, candidate: tuple[str, Buffer] | None, level: int) -> int:
    """The size of a record of windows of ``view`` (and of the candidate base, at the same places)."""
    step = (view.nbytes - SAMPLE_WINDOW) // (SAMPLE_WINDOWS - 1) // itemsize * itemsize
    spans = [(i * step, i * step + SAMPLE_WINDOW) for i in range(SAMPLE_WINDOWS)]
    sample = b"".join(view[start:end] for start, end in spans)
    base, base_digest = None, None
    if candidate is not None:
        base_view = _view(candidate[1])
        base = b"".join(base_view[start:end] for start, end in spans)
        base_digest = candidate[0]  # not the sample's, but only the record's size matters here
    record = encode(sample, itemsize=itemsize, base=base, base_digest=base_digest, level=level, min_saving=None)
    assert record is not None  # min_saving=None: always a record
    return len(record)
