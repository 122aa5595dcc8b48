"""Tensor metadata of weight files: how many parameters, which dtypes, how many bytes.

The same summary is recorded whether weights are registered from Python
(:func:`mreg.pytorch.register`) or from the shell (``mreg add model.pt``).
safetensors headers are read here without torch; PyTorch checkpoints are opened by
the adapter with ``torch.load(weights_only=True)``, which imports torch only then.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from .formats import is_safetensors_name, is_weights_name, read_safetensors_layout
from .objects import Framework
from .registration import collect_files

# safetensors dtype codes under the names PyTorch users know
DTYPE_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "C64": "complex64",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
}

TensorFacts = tuple[str, int, int]
"""``(dtype name, number of elements, number of bytes)`` of one tensor."""


def summarize(tensors: Iterable[TensorFacts]) -> dict[str, Any]:
    """The metadata recorded for a set of tensors.

    ``parameters`` counts the elements of every tensor, buffers included, as the
    Hugging Face Hub counts them for safetensors files.
    """
    dtypes: Counter[str] = Counter()
    elements = size = count = 0
    for dtype, numel, nbytes in tensors:
        dtypes[dtype] += 1
        elements += numel
        size += nbytes
        count += 1
    return {"parameters": elements, "weights": {"tensors": count, "bytes": size, "dtypes": dict(sorted(dtypes.items()))}}


def safetensors_facts(path: Path) -> list[TensorFacts]:
    """Tensor facts from a safetensors header, without reading the tensors."""
    layout = read_safetensors_layout(path)
    facts = []
    for tensor in layout.tensors:
        numel = 1
        for dim in tensor.shape:
            numel *= dim
        facts.append((DTYPE_NAMES[tensor.dtype], numel, tensor.nbytes))
    return facts


def describe_files(sources: Sequence[str | Path]) -> tuple[dict[str, Any], Framework | None]:
    """Metadata for the weight files among files and directories, and the framework they imply.

    Returns ``({}, None)`` when there are no weight files.

    Raises:
        InvalidInputError: a weight file is malformed, or a PyTorch checkpoint holds
            Python objects other than tensors (it is refused, never executed).
    """
    files = [item.source for item in collect_files(list(sources)) if isinstance(item.source, Path)]
    weight_files = [path for path in files if is_weights_name(path.name)]
    if not weight_files:
        return {}, None
    facts: list[TensorFacts] = []
    for path in weight_files:
        if is_safetensors_name(path.name):
            facts += safetensors_facts(path)
        else:
            from .pytorch.checkpoints import checkpoint_facts  # imports torch

            facts += checkpoint_facts(path)
    return summarize(facts), Framework("pytorch", installed_version("torch"))


def installed_version(distribution: str) -> str | None:
    """The installed version of a package, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
