"""Tensor differences without torch: which tensors changed, by their bytes.

When torch is not installed, ``mreg diff`` still compares weight files tensor by
tensor: names, dtypes and shapes come from the safetensors header or the
checkpoint's description (:mod:`mreg.checkpoints`), and each tensor's elements are
compared by a hash of their bytes. The size of a change (``max |diff|``) is computed
in Python for tensors of common dtypes up to a million elements; beyond that, or for
other dtypes, it needs torch and is left empty.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from mreg.formats.checkpoints import inflate_members, leaves
from mreg.formats.containers import (
    header_length,
    is_safetensors_name,
    parse_safetensors,
)
from mreg.formats.pickle_globals import ITEMSIZE, SparseRef, Storage, TensorRef
from mreg.formats.weights import DTYPE_NAMES, describe_checkpoint
from mreg.records.diffs import TensorChange, TensorDiff, TensorSpec
from mreg.storage.blobs import SegmentReader

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry
    from mreg.store.store import Store

GATHER_LIMIT = 1 << 20  # non-contiguous tensors up to this many elements are gathered exactly
MEASURE_LIMIT = 1 << 20  # changed tensors up to this many elements get a max |diff| without torch
FORMATS = {
    "float16": "e", "float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "bool": "?",
}  # fmt: skip
Values = Callable[[], bytes]


class Leaf(NamedTuple):
    """A tensor or plain value: its spec, a digest of its values, its bytes, and how to read them."""

    spec: TensorSpec
    digest: bytes
    nbytes: int
    values: Values | None = None


def compare_raw(store: Store, old: FileEntry, new: FileEntry) -> TensorDiff:
    """Added, removed and changed tensors of two stored weight files, by their bytes."""
    with ExitStack() as files:
        before, after = raw_leaves(store, old, files), raw_leaves(store, new, files)
        changed, unchanged, unchanged_bytes = [], 0, 0
        for name in sorted(before.keys() & after.keys()):
            a, b = before[name], after[name]
            if a.spec == b.spec and a.digest == b.digest:
                unchanged += 1
                unchanged_bytes += a.nbytes
            elif a.spec == b.spec and a.spec.dtype in FORMATS and a.values and b.values and a.nbytes <= MEASURE_LIMIT * 8:
                changed.append(TensorChange(a.spec, b.spec, *_measure(a.spec.dtype, a.values(), b.values())))
            else:
                changed.append(TensorChange(a.spec, b.spec, None))
    return TensorDiff(
        added=tuple(after[name].spec for name in sorted(after.keys() - before.keys())),
        removed=tuple(before[name].spec for name in sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        unchanged=unchanged,
        unchanged_bytes=unchanged_bytes,
    )


def raw_leaves(store: Store, entry: FileEntry, files: ExitStack) -> dict[str, Leaf]:
    """Every tensor (and plain value) of a stored weight file; ``files`` keeps it open for reading."""
    stream = files.enter_context(io.BufferedReader(SegmentReader(store.segments(entry))))
    if is_safetensors_name(entry.path):
        prefix = stream.read(8)
        layout = parse_safetensors(prefix + stream.read(header_length(prefix)), entry.size)
        return {t.name: _leaf(TensorSpec(t.name, DTYPE_NAMES[t.dtype], t.shape), _Span(stream, t.start, t.nbytes)) for t in layout.tensors}
    checkpoint = describe_checkpoint(stream, entry.size, entry.path)
    inflated = inflate_members(stream, checkpoint.storages.values())
    result = {}
    for name, value in leaves(checkpoint.root):
        if isinstance(value, TensorRef):
            result[name] = _leaf(TensorSpec(name, value.dtype, value.shape), _tensor_reader(stream, checkpoint.storages[value.storage], inflated, value))
        elif isinstance(value, SparseRef):
            parts = [_tensor_reader(stream, checkpoint.storages[p.storage], inflated, p) for p in value.parts]
            digest = _digest(b"".join(_digest(read()) for read in parts))
            result[name] = Leaf(TensorSpec(name, value.values.dtype, value.shape), digest, sum(p.nbytes for p in value.parts))
        else:
            result[name] = Leaf(TensorSpec(name, type(value).__name__, ()), _digest(repr(value).encode()), 0)
    return result


def _leaf(spec: TensorSpec, values: Values) -> Leaf:
    if isinstance(values, _Span):  # hashed in blocks: a large tensor is never held whole
        return Leaf(spec, values.digest(), values.size, values)
    data = values()
    return Leaf(spec, _digest(data), len(data), values)


class _Span:
    """Reads (or hashes) ``size`` bytes of a stream from ``start``."""

    def __init__(self, stream: BinaryIO, start: int, size: int) -> None:
        self.stream, self.start, self.size = stream, start, size

    def __call__(self) -> bytes:
        self.stream.seek(self.start)
        return self.stream.read(self.size)

    def digest(self) -> bytes:
        hasher = hashlib.sha256()
        self.stream.seek(self.start)
        left = self.size
        while left > 0:
            block = self.stream.read(min(left, 8 << 20))
            if not block:
                break
            hasher.update(block)
            left -= len(block)
        return hasher.digest()


def _tensor_reader(stream: BinaryIO, storage: Storage, inflated: dict[str, bytes], ref: TensorRef) -> Values:
    """How to read a tensor's elements in order (only its own bytes when it is contiguous)."""
    size = ITEMSIZE[ref.dtype]
    contiguous: list[int] = []
    step = 1
    for dim in reversed(ref.shape):
        contiguous.insert(0, step)
        step *= dim
    whole = (lambda: inflated[storage.key]) if storage.member else _Span(stream, storage.start, storage.nbytes)
    if ref.numel == 0 or tuple(contiguous) == ref.stride:
        if storage.member:
            return lambda: inflated[storage.key][ref.offset * size : (ref.offset + ref.numel) * size]
        return _Span(stream, storage.start + ref.offset * size, ref.numel * size)
    if ref.numel > GATHER_LIMIT:  # rare and large: compare the layout and the storage instead
        return lambda: repr((ref.offset, ref.stride)).encode() + whole()

    def gather() -> bytes:
        data = whole()
        positions = (ref.offset + sum(i * s for i, s in zip(index, ref.stride)) for index in itertools.product(*map(range, ref.shape)))
        return b"".join(data[p * size : (p + 1) * size] for p in positions)

    return gather


def _measure(dtype: str, old: bytes, new: bytes) -> tuple[float | int | None, int]:
    """(max |diff| where both are finite, positions whose NaN/inf changed), as the torch comparer reports."""
    largest: float | int | None = None
    nonfinite = 0
    for x, y in zip(_numbers(dtype, old), _numbers(dtype, new)):
        if isinstance(x, float) and not (math.isfinite(x) and math.isfinite(y)):
            nonfinite += not (x == y or (math.isnan(x) and math.isnan(y)))
            continue
        gap = abs(int(x) - int(y)) if isinstance(x, bool) else abs(x - y)
        largest = gap if largest is None or gap > largest else largest
    if isinstance(largest, float) and not math.isfinite(largest):
        largest = None
    return largest, nonfinite


def _numbers(dtype: str, data: bytes) -> Iterator[Any]:
    if dtype == "float16":  # memoryview cannot cast to half floats; struct can read them
        return (value for (value,) in struct.iter_unpack("<e", data))
    view: Any = memoryview(data)  # typeshed types cast() only for literal format strings
    return iter(view.cast(FORMATS[dtype]))


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
