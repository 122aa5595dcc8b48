"""PyTorch checkpoint files (``.pt``, ``.pth``): read with ``weights_only=True`` only.

A pickle can run arbitrary code when loaded. mreg never unpickles with the full
unpickler: ``torch.load(weights_only=True)`` only rebuilds tensors and plain
containers, and anything else is refused with a clear error.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import torch

from ..errors import InvalidInputError
from ..weights import TensorFacts
from .tensors import tensor_facts


def load_checkpoint(source: str | Path | BinaryIO, *, device: str | torch.device = "cpu", name: str = "") -> Any:
    """``torch.load(source, weights_only=True)``, memory-mapped when ``source`` is a path.

    Raises:
        InvalidInputError: the file holds Python objects other than tensors and
            containers (refused, not executed), or is not a PyTorch checkpoint.
    """
    label = name or str(source)
    try:
        if isinstance(source, (str, Path)):
            return torch.load(source, map_location=device, weights_only=True, mmap=_is_zip(Path(source)))
        return torch.load(source, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InvalidInputError(
            f"refused '{label}': it holds Python objects other than tensors, and mreg loads checkpoints "
            f"with weights_only=True only ({_unpickling_reason(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails on garbage in many ways
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InvalidInputError(f"cannot read '{label}' as a PyTorch checkpoint: {detail}") from None


def as_state_dict(loaded: Any, name: str) -> dict[str, torch.Tensor]:
    """Check that a loaded checkpoint is a flat mapping of names to tensors."""
    if isinstance(loaded, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        return dict(loaded)
    raise InvalidInputError(
        f"'{name}' is not a state dict (a mapping of names to tensors); it holds a {type(loaded).__name__}"
    )


def checkpoint_facts(path: Path) -> list[TensorFacts]:
    """Tensor facts of every tensor in a checkpoint, nested containers included."""
    return tensor_facts(dict(_tensors(load_checkpoint(path), prefix="")))


def _tensors(value: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, Mapping):
        return [item for key, inner in value.items() for item in _tensors(inner, f"{prefix}{key}.")]
    if isinstance(value, (list, tuple)):
        return [item for i, inner in enumerate(value) for item in _tensors(inner, f"{prefix}{i}.")]
    return []


def _unpickling_reason(exc: Exception) -> str:
    """The line of torch's long weights_only message that names the refused object."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or [type(exc).__name__])[0]


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(4) == b"PK\x03\x04"
