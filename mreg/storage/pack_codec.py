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

The layout, and the checks a reader makes before it decompresses anything, are
:mod:`mreg.storage.pack_layout`'s: a reader never decompresses more than the size the
caller expects. This module is pure: bytes in, bytes out; ``zstandard`` and ``numpy``
are imported by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mreg.errors import InvalidInputError, MregError
from mreg.storage import pack_planes
from mreg.storage.pack_layout import (
    BASE_HEADER,
    DELTA,
    ENTRY,
    FIXED,
    FORMAT_VERSION,
    HEADER_MAX,
    ITEMSIZES,
    MAGIC,
    STANDALONE,
    STORED,
    ZSTD,
    CorruptPackError,
    FrameReader,
    PackHeader,
    checked_base,
    digest_bytes,
    is_packed,
    read_header,
    read_layout,
    view,
)

__all__ = [
    "BASE_HEADER",
    "DELTA",
    "FORMAT_VERSION",
    "HEADER_MAX",
    "MAGIC",
    "STANDALONE",
    "CorruptPackError",
    "PackHeader",
    "decode",
    "decode_into",
    "encode",
    "encode_best",
    "is_packed",
    "read_header",
    "scratch",
]

Buffer = Any
"""Bytes-like: bytes, bytearray, memoryview, mmap or a C-contiguous numpy array (numpy's
type stubs declare the buffer protocol only from Python 3.12 on, hence Any)."""

DEFAULT_LEVEL = 1  # on these planes, levels 3 and 5 were no smaller and 1.6 to 3 times slower
MIN_SAVING = 0.05  # a record must be this much smaller than the raw bytes to be worth a decode
MIN_PLANE_SAVING = 1 / 32  # a plane zstd shrinks less is stored as it is: it decodes for the price of a copy
SAMPLE_FROM = 4 << 20  # encode_best tries each base on samples of a tensor larger than this
SAMPLE_WINDOWS, SAMPLE_WINDOW = 4, 64 << 10
NOISE_SAMPLE = 64 << 10  # a plane four times larger is first tried on this many bytes of its middle


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
            1/6, a float32 fine-tune's delta was 0.534x of raw instead of 0.500x (its
            second plane, which zstd shrinks by 14 %, is then stored).

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
        header_digest = digest_bytes(base_digest, base_array)
    count = len(source) // itemsize
    planes = pack_planes.split(numpy, source[: count * itemsize], itemsize, base_array)
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    table, payloads = [], []
    for plane in planes:
        compressed = None if _noise(compressor, plane, min_plane_saving) else compressor.compress(plane)
        if compressed is not None and len(compressed) <= count * (1 - min_plane_saving):
            table.append(ENTRY.pack(ZSTD, len(compressed)))
            payloads.append(compressed)
        else:
            table.append(ENTRY.pack(STORED, count))
            payloads.append(memoryview(plane))
    tail = source[count * itemsize :]
    if base_array is not None:
        tail = tail ^ base_array[count * itemsize :]
    method = STANDALONE if base is None else DELTA
    fixed = FIXED.pack(MAGIC, FORMAT_VERSION, method, itemsize, 0, len(source))
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
    min_plane_saving: float = MIN_PLANE_SAVING,
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
        min_plane_saving: as for :func:`encode`.

    Returns:
        The record, or None when none saves enough.

    Raises:
        InvalidInputError: as for :func:`encode`.
    """
    whole = view(raw)
    candidates: list[tuple[str, Buffer] | None] = [None]
    candidates += [(digest, data) for digest, data in bases if view(data).nbytes == whole.nbytes]
    if len(candidates) > 1 and whole.nbytes > max(SAMPLE_FROM, SAMPLE_WINDOWS * SAMPLE_WINDOW):
        candidates = [min(candidates, key=lambda candidate: _sampled_size(whole, itemsize, candidate, level))]
    best: bytes | None = None
    for candidate in candidates:
        digest, data = candidate if candidate is not None else (None, None)
        record = encode(
            whole, itemsize=itemsize, base=data, base_digest=digest, level=level, min_saving=min_saving, min_plane_saving=min_plane_saving
        )
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
    a loader decodes into a tensor's own memory. Memory beyond ``out``: a block of each
    plane (:data:`mreg.storage.pack_planes.BLOCK_ELEMENTS` bytes), decompressed and put
    back together while in the CPU's cache. On error, ``out`` holds garbage.

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
    target = view(out)
    if target.readonly:
        raise InvalidInputError("decode_into needs a writable buffer; a read-only one was given")
    record = view(packed)
    layout = read_layout(record, len(target), digest)
    header = layout.header
    base_array = None
    if header.method == DELTA:
        base_array = checked_base(numpy, header, base, base_digest, digest)
    destination = numpy.frombuffer(target, dtype=numpy.uint8)
    count = header.size // header.itemsize
    planes: list[Any] = []
    for index, (coding, offset, length) in enumerate(layout.planes):
        stored = record[offset : offset + length]
        planes.append(FrameReader(zstandard, stored, count, f"plane {index}", digest) if coding == ZSTD else numpy.frombuffer(stored, dtype=numpy.uint8))
    body = count * header.itemsize
    pack_planes.join(numpy, destination[:body], planes, header.itemsize, None if base_array is None else base_array[:body])
    for plane in planes:
        if isinstance(plane, FrameReader):
            plane.finish()
    tail = numpy.frombuffer(record[layout.tail :], dtype=numpy.uint8)
    if base_array is not None:
        tail = tail ^ base_array[body:]
    destination[body:] = tail


def scratch(size: int) -> Any:
    """A new writable array of ``size`` bytes to decode into (numpy's: not zero-filled first)."""
    numpy, _ = _modules()
    return numpy.empty(size, dtype=numpy.uint8)


def _modules() -> tuple[Any, Any]:
    """numpy and zstandard, imported on first use (never by a command that reads no record)."""
    try:
        import numpy  # start-up: only commands that pack or unpack load these
        import zstandard
    except ImportError as exc:
        raise MregError(f"packed objects need the numpy and zstandard packages (missing {exc.name}): pip install numpy zstandard") from None
    return numpy, zstandard


def _noise(compressor: Any, plane: Any, min_plane_saving: float) -> bool:
    """True for a large plane whose middle zstd shrinks by less than half of
    ``min_plane_saving``: the low mantissa bytes, random, stored without trying the rest
    (compressing them cost a quarter of an encode, for nothing)."""
    if len(plane) < 4 * NOISE_SAMPLE:
        return False
    middle = len(plane) // 2
    sample = plane[middle : middle + NOISE_SAMPLE]
    return len(compressor.compress(sample)) > NOISE_SAMPLE * (1 - min_plane_saving / 2)


def _array(numpy: Any, data: Buffer) -> Any:
    """A read-only byte array over ``data``, without a copy."""
    return numpy.frombuffer(view(data), dtype=numpy.uint8)


def _sampled_size(whole: memoryview, itemsize: int, candidate: tuple[str, Buffer] | None, level: int) -> int:
    """The size of a record of windows of ``whole`` (and of the candidate base, at the same places)."""
    step = (whole.nbytes - SAMPLE_WINDOW) // (SAMPLE_WINDOWS - 1) // itemsize * itemsize
    spans = [(i * step, i * step + SAMPLE_WINDOW) for i in range(SAMPLE_WINDOWS)]
    sample = b"".join(whole[start:end] for start, end in spans)
    base, base_digest = None, None
    if candidate is not None:
        base_view = view(candidate[1])
        base = b"".join(base_view[start:end] for start, end in spans)
        base_digest = candidate[0]  # not the sample's, but only the record's size matters here
    record = encode(sample, itemsize=itemsize, base=base, base_digest=base_digest, level=level, min_saving=None)
    assert record is not None  # min_saving=None: always a record
    return len(record)
