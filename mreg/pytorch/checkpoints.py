"""PyTorch checkpoint files (``.pt``, ``.pth``) turned into tensors, without unpickling.

:mod:`mreg.checkpoints` reads a checkpoint's pickle with its own restricted
machine (the rule of ``torch.load(weights_only=True)``: tensors and plain data,
nothing executed) and says where each storage's bytes are. Here those bytes become
tensors: stored storages are memory-mapped copy-on-write, as safetensors loads are,
and deflated ones are inflated, bounded by the size the checkpoint declares.
Tensors that shared a storage when saved share it again.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mreg.errors import InvalidInputError
from mreg.formats.checkpoints import Checkpoint, inflate_members
from mreg.formats.containers import FormatError
from mreg.formats.pickle_globals import (
    MAX_DEPTH,
    AttributedDict,
    Device,
    Dtype,
    Size,
    SparseRef,
    Storage,
    TensorRef,
)
from mreg.formats.weights import describe_checkpoint
from mreg.pytorch.tensors import MappedFile, MappedReader
from mreg.storage.blobs import Segment
from mreg.text import printable


def load_checkpoint(source: str | Path, *, device: str | torch.device = "cpu", name: str = "") -> Any:
    """Load a checkpoint file as ``torch.load(source, weights_only=True)`` would, memory-mapped.

    Raises:
        InvalidInputError: the file holds Python objects other than tensors and
            containers (refused, not executed), or is not a PyTorch checkpoint.
    """
    path = Path(source)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInputError(f"cannot read '{path}': {exc.strerror or exc}") from None
    return load_segments([Segment(str(path), 0, size, "")], device=device, name=name or str(path))


def load_segments(segments: Sequence[Segment], *, device: str | torch.device = "cpu", name: str = "") -> Any:
    """Load a checkpoint held by ``segments`` (a stored file, whole or chunked)."""
    mapped = MappedFile(segments)
    with MappedReader(mapped) as stream:  # unbuffered: reads copy straight from the maps
        checkpoint = describe_checkpoint(stream, mapped.size, name)
        try:
            inflated = inflate_members(stream, checkpoint.storages.values())
        except FormatError as exc:
            raise InvalidInputError(f"cannot read '{name}' as a PyTorch checkpoint: {exc.message}") from None
    bases = {key: _storage_bytes(mapped, storage, inflated) for key, storage in checkpoint.storages.items()}
    return _Builder(checkpoint, bases, torch.device(device)).build(checkpoint.root, 0)


def _storage_bytes(mapped: MappedFile, storage: Storage, inflated: dict[str, bytes]) -> torch.Tensor:
    if storage.member is None:
        return mapped.tensor(storage.start, storage.start + storage.nbytes, torch.uint8)
    data = inflated[storage.key]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


class _Builder:
    """Turns a checkpoint description into the objects torch.load returns."""

    def __init__(self, checkpoint: Checkpoint, bases: dict[str, torch.Tensor], device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.bases = bases
        self.device = device
        # One object per description: what was shared when saved (tensors, containers,
        # tuples) is shared again, and a container reached along many paths is built once.
        self.built: dict[int, Any] = {}

    def build(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"checkpoint nests containers more than {MAX_DEPTH} deep")
        if id(value) in self.built:
            return self.built[id(value)]
        result = self._build(value, depth + 1)
        if isinstance(value, (TensorRef, SparseRef, dict, list, tuple)):
            self.built[id(value)] = result
        return result

    def _build(self, value: Any, depth: int) -> Any:
        if isinstance(value, TensorRef):
            return self.tensor(value)
        if isinstance(value, SparseRef):
            return self.sparse(value)
        if isinstance(value, AttributedDict):
            result = OrderedDict((key, self.build(inner, depth)) for key, inner in value.items())
            for attribute, inner in value.attributes.items():
                if not hasattr(OrderedDict, attribute):  # never shadow a method
                    setattr(result, attribute, self.build(inner, depth))
            return result
        if isinstance(value, Counter):
            return Counter({key: self.build(inner, depth) for key, inner in value.items()})
        if isinstance(value, dict):
            return {key: self.build(inner, depth) for key, inner in value.items()}
        if isinstance(value, list):
            return [self.build(inner, depth) for inner in value]
        if isinstance(value, Size):
            return torch.Size(value)
        if isinstance(value, tuple):
            return tuple(self.build(inner, depth) for inner in value)
        if isinstance(value, Dtype):
            return _torch_dtype(value)
        if isinstance(value, Device):
            try:
                return torch.device(value)
            except RuntimeError:
                raise InvalidInputError(f"checkpoint names an unknown device {printable(str(value))}") from None
        return value

    def tensor(self, ref: TensorRef) -> torch.Tensor:
        tensor = torch.empty((0,), dtype=_torch_dtype(ref.dtype))
        tensor.set_(self.bases[ref.storage].untyped_storage(), ref.offset, ref.shape, ref.stride)
        if self.device.type != "cpu":
            tensor = tensor.to(self.device)
        if ref.parameter:
            return torch.nn.Parameter(tensor, requires_grad=ref.requires_grad)
        return tensor.requires_grad_() if ref.requires_grad else tensor

    def sparse(self, ref: SparseRef) -> torch.Tensor:
        parts = [self.build(part, 0) for part in ref.parts]
        try:
            if ref.layout == "sparse_coo":
                return torch.sparse_coo_tensor(*parts, ref.shape, check_invariants=True, is_coalesced=ref.coalesced)
            layout = getattr(torch, ref.layout)
            return torch.sparse_compressed_tensor(*parts, ref.shape, layout=layout, check_invariants=True)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"checkpoint holds an invalid sparse tensor: {' '.join(str(exc).split())}") from None


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise InvalidInputError(f"checkpoint holds {name} tensors, which this version of torch does not know")
    return dtype


def as_state_dict(loaded: Any, name: str) -> dict[str, torch.Tensor]:
    """Check that a loaded checkpoint is a flat mapping of names to tensors."""
    if isinstance(loaded, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        return dict(loaded)
    raise InvalidInputError(
        f"'{name}' is not a state dict (a mapping of names to tensors); it holds a {type(loaded).__name__}: "
        "load it with mreg.pytorch.load_object"
    )
