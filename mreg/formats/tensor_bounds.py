"""The limits a tensor's shape, strides and offset must respect before torch sees them.

torch indexes tensors with signed 64-bit integers. A header or pickle that declares
a dimension, a stride, an offset or an element count beyond that range, or a view
reaching past the bytes it indexes, makes torch fail deep in C++ (or read out of
bounds); every reader checks its declarations here first. The checks raise
:class:`BoundsError` with a message fragment; readers add the tensor's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mreg.text import printable

INT64_MAX = (1 << 63) - 1
MAX_DIMS = 64  # no weight tensor has more dimensions; a list of millions is an attack
_BITS_LIMIT = INT64_MAX * 8


class BoundsError(ValueError):
    """A shape, stride, offset or size outside what a tensor may have."""


def check_dims(values: Any, what: str) -> tuple[int, ...]:
    """``values`` as a tuple of integers in ``[0, 2**63 - 1]``, at most :data:`MAX_DIMS` of them.

    Messages read after the tensor's name: ``tensor 'w' has a shape holding ...``.

    Raises:
        BoundsError: it is not a sequence of such integers.
    """
    if not isinstance(values, (list, tuple)):
        raise BoundsError(f"has a {what} that is not a list of integers")
    if len(values) > MAX_DIMS:
        raise BoundsError(f"has a {what} of {len(values)} dimensions, more than {MAX_DIMS}")
    for value in values:
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            raise BoundsError(f"has a {what} holding {_short(value)}; each must be an integer from 0 to 2**63-1")
    return tuple(values)


def element_count(shape: Sequence[int], itembits: int = 8) -> int:
    """How many elements ``shape`` holds, checked so that their bytes fit in int64.

    Dimensions of zero are left out of the check: torch computes a contiguous tensor's
    strides as products of the dimensions after each one, so ``[0, 2**62, 4]`` holds
    nothing but still overflows.

    Raises:
        BoundsError: the product of the non-zero dimensions, times the element size, exceeds 2**63-1.
    """
    count = 1
    for dim in shape:
        count *= dim or 1
        if count * itembits > _BITS_LIMIT:  # checked at each step: the product never grows huge
            raise BoundsError("holds more than 2**63-1 bytes")
    return 0 if 0 in shape else count


def check_view(shape: Sequence[int], stride: Sequence[int], offset: int, itemsize: int, available: int, storage: str = "") -> None:
    """Check that a strided view of ``itemsize``-byte elements stays within ``available`` bytes.

    The view's elements are ``offset + sum(i_k * stride_k)`` for ``0 <= i_k < shape_k``;
    its last byte, and its offset even when it is empty, must lie within the storage
    (``storage``: its name, for messages).

    Raises:
        BoundsError: the view, its element count or its reach exceeds int64 or the storage.
    """
    if len(shape) != len(stride):
        raise BoundsError(f"has a stride of {len(stride)} dimensions")
    element_count(shape, itemsize * 8)
    if offset * itemsize > available:
        raise BoundsError(f"starts at element {offset}, past the end of {_storage(storage)} ({available} bytes)")
    if 0 in shape:
        return
    last = offset
    for dim, step in zip(shape, stride):
        last += (dim - 1) * step
        if last > INT64_MAX:
            raise BoundsError("has strides reaching beyond element 2**63-1")
    if (last + 1) * itemsize > available:
        raise BoundsError(f"reaches past the end of {_storage(storage)} ({available} bytes)")


def _storage(name: str) -> str:
    return f"storage '{printable(name)}'" if name else "its storage"


def _short(value: Any) -> str:
    """How a message shows a declared value: small integers as themselves, anything else by its kind."""
    if type(value) is int:
        return str(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, (list, tuple)) and len(value) <= MAX_DIMS and all(type(v) is int and v.bit_length() <= 64 for v in value):
        return str(list(value))
    return f"a {type(value).__name__}"
