"""Tensor-level differences between stored weight files.

Nested checkpoints (a model, an optimizer, an epoch...) are compared leaf by leaf,
each under its path in the structure (``model.fc.weight``, ``optimizer.state.0.step``).
Values are compared bit for bit; for changed values of one dtype and shape the
largest difference is reported over the positions where both are finite (exactly,
for integers), and positions whose NaN or infinity changed are counted.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from mreg.formats.checkpoints import leaves
from mreg.formats.containers import is_safetensors_name
from mreg.pytorch.checkpoints import load_segments
from mreg.pytorch.tensors import dtype_name, read_safetensors
from mreg.records.diffs import TensorChange, TensorDiff, TensorSpec, VersionDiff

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry
    from mreg.registry import Registry
    from mreg.store.store import Store

DENSE_LIMIT = 1 << 24  # sparse tensors with other indices are compared densely up to this many elements
Comparison = tuple[bool, "float | int | None", int]  # (same, max |diff|, non-finite positions changed)


def diff(registry: Registry, old_ref: str, new_ref: str) -> VersionDiff:
    """Compare two versions, weight files included tensor by tensor (what ``mreg diff`` shows)."""
    return registry.diff(old_ref, new_ref, compare_tensors=compare_weight_files)


def compare_weight_files(store: Store, old: FileEntry, new: FileEntry) -> TensorDiff:
    """Added, removed and changed tensors (and plain values), and how many bytes are unchanged."""
    before, after = read_leaves(store, old), read_leaves(store, new)
    changed, unchanged, unchanged_bytes = [], 0, 0
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        same, max_diff, nonfinite = compare(a, b)
        if same:
            unchanged += 1
            unchanged_bytes += _nbytes(a)
        else:
            changed.append(TensorChange(_spec(name, a), _spec(name, b), max_diff, nonfinite))
    return TensorDiff(
        added=tuple(_spec(name, after[name]) for name in sorted(after.keys() - before.keys())),
        removed=tuple(_spec(name, before[name]) for name in sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        unchanged=unchanged,
        unchanged_bytes=unchanged_bytes,
    )


def read_leaves(store: Store, entry: FileEntry) -> dict[str, Any]:
    """Every tensor and plain value of a stored weight file, by its path in the structure."""
    segments = store.segments(entry)
    if is_safetensors_name(entry.path):
        return dict(read_safetensors(segments))
    return dict(leaves(load_segments(segments, name=entry.path), atomic=(torch.Size,)))


def compare(a: Any, b: Any) -> Comparison:
    """Whether two leaves are the same, and how far apart they are."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return _compare_plain(a, b)
    if a.dtype != b.dtype or a.shape != b.shape or a.layout != b.layout:
        return False, None, 0
    if a.layout != torch.strided:
        return _compare_sparse(a, b)
    if a.numel() > DENSE_LIMIT and (_views_past_storage(a) or _views_past_storage(b)):
        # A view repeating its storage (stride 0) may claim 2**60 elements of 4 bytes:
        # compare how it views, and what, rather than copying it out (as rawdiff does).
        same = a.stride() == b.stride() and a.storage_offset() == b.storage_offset() and torch.equal(_storage_bytes(a), _storage_bytes(b))
        return same, None, 0
    if a.numel() == 0 or torch.equal(_bits(a), _bits(b)):
        return True, None, 0
    if a.dtype == torch.bool or not (a.is_floating_point() or a.is_complex()):
        return False, _integer_max_diff(a, b) if _is_integer(a.dtype) else None, 0
    return (False, *_float_diff(a, b))


def _compare_plain(a: Any, b: Any) -> Comparison:
    if type(a) is not type(b) or (a != b and not (isinstance(a, float) and math.isnan(a) and math.isnan(b))):
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool)
        return False, abs(a - b) if numbers and math.isfinite(a - b) else None, 0
    return True, None, 0


def _compare_sparse(a: torch.Tensor, b: torch.Tensor) -> Comparison:
    if a.layout == torch.sparse_coo:
        a, b = a.coalesce(), b.coalesce()
        if torch.equal(a.indices(), b.indices()):
            return compare(a.values(), b.values())
    elif all(torch.equal(x, y) for x, y in zip(_compressed_parts(a), _compressed_parts(b))):
        return compare(a.values(), b.values())
    if a.numel() <= DENSE_LIMIT:
        return compare(a.to_dense(), b.to_dense())
    return False, None, 0


def _views_past_storage(t: torch.Tensor) -> bool:
    return t.numel() * t.element_size() > t.untyped_storage().nbytes()


def _storage_bytes(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())


def _compressed_parts(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return t.crow_indices(), t.col_indices()
    return t.ccol_indices(), t.row_indices()


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def _is_integer(dtype: torch.dtype) -> bool:
    return dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32, torch.int64, torch.uint64)


def _integer_max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    """max |a - b|, exactly, even for 64-bit values (computed in two 32-bit halves)."""
    unsigned = a.dtype == torch.uint64
    x, y = (_as_int64(t) for t in (a.detach(), b.detach()))
    if a.dtype not in (torch.int64, torch.uint64):
        return int((x - y).abs().max())
    low_mask = 0xFFFFFFFF
    high = [(t >> 32) & low_mask if unsigned else t >> 32 for t in (x, y)]
    d_high, d_low = high[0] - high[1], (x & low_mask) - (y & low_mask)
    negative = (d_high < 0) | ((d_high == 0) & (d_low < 0))
    d_high, d_low = torch.where(negative, -d_high, d_high), torch.where(negative, -d_low, d_low)
    borrow = d_low < 0
    d_high, d_low = d_high - borrow.long(), d_low + borrow.long() * (1 << 32)
    top = d_high.max()
    return int(top) * (1 << 32) + int(d_low[d_high == top].max())


def _as_int64(t: torch.Tensor) -> torch.Tensor:
    if t.dtype in (torch.int64, torch.uint64):
        return t.contiguous().view(torch.int64).reshape(-1)
    if t.dtype == torch.uint32:
        return t.contiguous().view(torch.int32).reshape(-1).long() & 0xFFFFFFFF
    if t.dtype == torch.uint16:
        return t.contiguous().view(torch.int16).reshape(-1).long() & 0xFFFF
    return t.reshape(-1).long()


def _float_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float | None, int]:
    """(max |a - b| where both are finite, positions whose NaN/inf changed)."""
    wide = torch.complex128 if a.is_complex() else torch.float64
    try:
        x, y = a.detach().reshape(-1).to(wide), b.detach().reshape(-1).to(wide)
    except (RuntimeError, TypeError):  # packed dtypes without arithmetic: bits only
        return None, 0
    fx, fy = torch.isfinite(x), torch.isfinite(y)
    both = fx & fy
    same_special = (~fx & ~fy) & ((x == y) | (torch.isnan(x) & torch.isnan(y)))
    nonfinite = int((~both & ~same_special).sum())
    if not bool(both.any()):
        return None, nonfinite
    largest = float((x[both] - y[both]).abs().max())
    return (largest if math.isfinite(largest) else None), nonfinite


def _spec(name: str, value: Any) -> TensorSpec:
    if isinstance(value, torch.Tensor):
        return TensorSpec(name, dtype_name(value.dtype), tuple(value.shape))
    return TensorSpec(name, type(value).__name__, ())


def _nbytes(value: Any) -> int:
    if not isinstance(value, torch.Tensor):
        return 0
    if value.layout == torch.sparse_coo:
        value = value.coalesce()
        return _nbytes(value.indices()) + _nbytes(value.values())
    if value.layout != torch.strided:
        return sum(_nbytes(part) for part in (*_compressed_parts(value), value.values()))
    return value.numel() * value.element_size()
