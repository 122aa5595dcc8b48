"""Tensor-level differences between stored weight files."""

from __future__ import annotations

import torch

from ..diff import TensorChange, TensorDiff, TensorSpec, VersionDiff, diff_versions
from ..objects import FileEntry
from ..registry import Registry
from .models import read_weights
from .tensors import dtype_name


def diff(registry: Registry, old_ref: str, new_ref: str) -> VersionDiff:
    """Compare two versions, weight files included tensor by tensor (what ``mreg diff`` shows)."""
    return diff_versions(registry, old_ref, new_ref, compare_tensors=compare_weight_files)


def compare_weight_files(registry: Registry, old: FileEntry, new: FileEntry) -> TensorDiff:
    """Added, removed and changed tensors, and how many bytes are unchanged.

    Tensors are compared bit for bit; where dtype and shape match, the largest
    absolute difference of their values is reported.
    """
    before, after = read_weights(registry, old), read_weights(registry, new)
    changed, unchanged, unchanged_bytes = [], 0, 0
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        if a.dtype == b.dtype and a.shape == b.shape and _same_bits(a, b):
            unchanged += 1
            unchanged_bytes += a.numel() * a.element_size()
            continue
        comparable = a.dtype == b.dtype and a.shape == b.shape
        changed.append(TensorChange(_spec(name, a), _spec(name, b), _max_abs_diff(a, b) if comparable else None))
    return TensorDiff(
        added=tuple(_spec(name, after[name]) for name in sorted(after.keys() - before.keys())),
        removed=tuple(_spec(name, before[name]) for name in sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        unchanged=unchanged,
        unchanged_bytes=unchanged_bytes,
    )


def _spec(name: str, tensor: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, dtype_name(tensor.dtype), tuple(tensor.shape))


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() == 0:
        return True
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    wide = torch.complex128 if a.is_complex() else torch.float64
    return float((a.to(wide) - b.to(wide)).abs().max())
