"""Tensor differences without torch: which tensors changed, by their bytes.

When torch is not installed, ``mreg diff`` still compares weight files tensor by
tensor: names, dtypes and shapes come from the safetensors header or the
checkpoint's description (:mod:`mreg.checkpoints`), and each tensor's elements are
compared by a hash of their bytes. Only the size of a change (``max |diff|``) needs
torch; without it that field is empty.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from typing import TYPE_CHECKING, BinaryIO

from .checkpoints import ITEMSIZE, SparseRef, TensorRef, inflate_members, leaves
from .diff import TensorChange, TensorDiff, TensorSpec
from .formats import header_length, is_safetensors_name, parse_safetensors
from .objects import FileEntry
from .segments import SegmentReader
from .weights import DTYPE_NAMES, describe_checkpoint

if TYPE_CHECKING:
    from .registry import Registry

Leaf = tuple[TensorSpec, bytes, int]  # (spec, fingerprint of the values, bytes)
GATHER_LIMIT = 1 << 20  # non-contiguous tensors up to this many elements are gathered exactly


def compare_raw(registry: Registry, old: FileEntry, new: FileEntry) -> TensorDiff:
    """Added, removed and changed tensors of two stored weight files, by their bytes."""
    before, after = raw_leaves(registry, old), raw_leaves(registry, new)
    changed, unchanged, unchanged_bytes = [], 0, 0
    for name in sorted(before.keys() & after.keys()):
        (a, a_print, size), (b, b_print, _) = before[name], after[name]
        if a == b and a_print == b_print:
            unchanged += 1
            unchanged_bytes += size
        else:
            changed.append(TensorChange(a, b, None))
    return TensorDiff(
        added=tuple(after[name][0] for name in sorted(after.keys() - before.keys())),
        removed=tuple(before[name][0] for name in sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        unchanged=unchanged,
        unchanged_bytes=unchanged_bytes,
    )


def raw_leaves(registry: Registry, entry: FileEntry) -> dict[str, Leaf]:
    """Every tensor (and plain value) of a stored weight file with a fingerprint of its values."""
    with io.BufferedReader(SegmentReader(registry.segments(entry))) as stream:
        if is_safetensors_name(entry.path):
            prefix = stream.read(8)
            layout = parse_safetensors(prefix + stream.read(header_length(prefix)), entry.size)
            return {
                t.name: (TensorSpec(t.name, DTYPE_NAMES[t.dtype], t.shape), _digest(_span(stream, t.start, t.nbytes)), t.nbytes)
                for t in layout.tensors
            }
        checkpoint = describe_checkpoint(stream, entry.size, entry.path)
        inflated = inflate_members(stream, checkpoint.storages.values())
        storages = {key: inflated[key] if s.member else _span(stream, s.start, s.nbytes) for key, s in checkpoint.storages.items()}
        result = {}
        for name, value in leaves(checkpoint.root):
            if isinstance(value, TensorRef):
                result[name] = (TensorSpec(name, value.dtype, value.shape), _digest(_elements(storages[value.storage], value)), value.nbytes)
            elif isinstance(value, SparseRef):
                parts = b"".join(_digest(_elements(storages[p.storage], p)) for p in value.parts)
                spec = TensorSpec(name, value.values.dtype, value.shape)
                result[name] = (spec, _digest(parts), sum(p.nbytes for p in value.parts))
            else:
                result[name] = (TensorSpec(name, type(value).__name__, ()), _digest(repr(value).encode()), 0)
        return result


def _span(stream: BinaryIO, start: int, size: int) -> bytes:
    stream.seek(start)
    return stream.read(size)


def _elements(data: bytes, ref: TensorRef) -> bytes:
    """A tensor's elements in order, from its storage's bytes."""
    size = ITEMSIZE[ref.dtype]
    contiguous, step = [], 1
    for dim in reversed(ref.shape):
        contiguous.insert(0, step)
        step *= dim
    if ref.numel == 0 or tuple(contiguous) == ref.stride:
        return data[ref.offset * size : (ref.offset + ref.numel) * size]
    if ref.numel > GATHER_LIMIT:  # rare and large: compare the layout and the storage instead
        return repr((ref.offset, ref.stride)).encode() + data
    positions = (ref.offset + sum(i * s for i, s in zip(index, ref.stride)) for index in itertools.product(*map(range, ref.shape)))
    return b"".join(data[p * size : (p + 1) * size] for p in positions)


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
