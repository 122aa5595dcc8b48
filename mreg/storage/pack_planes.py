"""The numeric steps of a packed record: byte planes, and zigzagged differences from a base.

Every step works on blocks of ``BLOCK_ELEMENTS`` elements, so that the temporaries
stay in the CPU's cache and take little memory whatever the tensor's size. numpy is
passed in by the caller (:mod:`mreg.storage.pack_codec` imports it on first use):
measured on ResNet-18's tensors, its shuffles run at 1.2-1.7 GB/s where slicing
``bytes`` (``data[i::4]``, and slice assignment back) ran at ~380 MB/s, and its
differences at 1.5-2.5 GB/s where ``int.from_bytes`` XOR ran at ~140 MB/s, all on
one core; numpy also releases the GIL, so threads decoding several tensors use both
cores.
"""

from __future__ import annotations

from typing import Any

BLOCK_ELEMENTS = 1 << 15  # 128 KiB of float32: a block and its temporaries stay in L2

_UNSIGNED = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_SIGNED = {1: "<i1", 2: "<i2", 4: "<i4", 8: "<i8"}


def split(numpy: Any, body: Any, itemsize: int, base: Any | None) -> Any:
    """The byte planes of ``body`` (a uint8 array of whole elements), as an (itemsize, count)
    array: standalone, or of the zigzagged difference from ``base`` (at least as long)."""
    count = len(body) // itemsize
    if base is None and itemsize == 1:
        return body.reshape(1, count)
    planes = numpy.empty((itemsize, count), dtype=numpy.uint8)
    for start in range(0, count, BLOCK_ELEMENTS):
        end = min(count, start + BLOCK_ELEMENTS)
        block = body[start * itemsize : end * itemsize]
        if base is not None:
            block = _zigzag_difference(numpy, block, base[start * itemsize : end * itemsize], itemsize)
        planes[:, start:end] = block.reshape(end - start, itemsize).T
    return planes


def undo_delta(numpy: Any, body: Any, base: Any, itemsize: int) -> None:
    """Turn ``body``, the zigzagged differences from ``base``, back into the values, in place."""
    unsigned = numpy.dtype(_UNSIGNED[itemsize])
    values = body.view(unsigned)
    origin = base[: len(body)].view(unsigned)
    sign = numpy.empty(min(len(values), BLOCK_ELEMENTS), dtype=unsigned)
    for start in range(0, len(values), BLOCK_ELEMENTS):
        block = values[start : start + BLOCK_ELEMENTS]
        signs = sign[: len(block)]
        numpy.bitwise_and(block, 1, out=signs)
        numpy.negative(signs, out=signs)  # 0 or all ones (unsigned arithmetic wraps)
        block >>= 1
        block ^= signs
        block += origin[start : start + BLOCK_ELEMENTS]


def _zigzag_difference(numpy: Any, block: Any, base: Any, itemsize: int) -> Any:
    """(block - base) per element, modulo 2**bits, zigzagged: 0, -1, 1, -2 ... become 0, 1, 2, 3 ..."""
    unsigned = numpy.dtype(_UNSIGNED[itemsize])
    difference = numpy.subtract(block.view(unsigned), base.view(unsigned))
    signs = difference.view(_SIGNED[itemsize]) >> (8 * itemsize - 1)  # arithmetic shift: 0 or all ones
    difference <<= 1
    difference ^= signs.view(unsigned)
    return difference.view(numpy.uint8)
