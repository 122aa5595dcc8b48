"""Tensor metadata of weight files: how many parameters, which dtypes, how many bytes.

The same summary is recorded whether weights are registered from Python
(:func:`mreg.pytorch.register`) or from the shell (``mreg add model.pt``), and it
is read without torch: safetensors headers by :mod:`mreg.formats`, PyTorch
checkpoints by :mod:`mreg.checkpoints` (a pickle reader that runs nothing).
Weight files are described from the bytes that were stored, so the recorded
metadata always matches them.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from mreg.formats.checkpoints import Checkpoint, read_checkpoint
from mreg.formats.containers import (
    DTYPES,
    FormatError,
    header_length,
    is_safetensors_name,
    is_weights_name,
    parse_safetensors,
)
from mreg.formats.cuts import layout_cuts, member_cuts
from mreg.formats.pickle_globals import SparseRef, UnsafeCheckpointError
from mreg.records.manifest import MAX_INT, Framework

# safetensors dtype codes under the names PyTorch users know
DTYPE_NAMES = {code: name for code, (_, name) in DTYPES.items()}

TensorFacts = tuple[str, int, int]
"""``(dtype name, number of elements, number of bytes)`` of one tensor."""


class Weights(NamedTuple):
    """What reading weight files found: the metadata to record, the framework they imply,
    and where to cut each file (by its path in the version) so tensors are stored apart."""

    properties: dict[str, Any]
    framework: Framework | None
    cuts: dict[str, list[int]]


def summarize(tensors: Iterable[TensorFacts]) -> dict[str, Any]:
    """The metadata recorded for a set of tensors.

    ``parameters`` counts the elements of every tensor, buffers included, as the
    Hugging Face Hub counts them for safetensors files.

    Raises:
        FormatError: the totals exceed what a manifest records (2**63-1).
    """
    dtypes: Counter[str] = Counter()
    elements = size = count = 0
    for dtype, numel, nbytes in tensors:
        dtypes[dtype] += 1
        elements += numel
        size += nbytes
        count += 1
    if max(elements, size) > MAX_INT:  # views repeating their storage (stride 0) may each claim 2**62
        raise FormatError(f"the tensors hold {elements} elements of {size} bytes in all, more than a manifest records (2**63-1)")
    return {"parameters": elements, "weights": {"tensors": count, "bytes": size, "dtypes": dict(sorted(dtypes.items()))}}


def safetensors_facts(stream: BinaryIO, size: int) -> tuple[list[TensorFacts], list[int]]:
    """Tensor facts from a safetensors header, without reading the tensors, and its cut points."""
    prefix = stream.read(8)
    layout = parse_safetensors(prefix + stream.read(header_length(prefix)), size)
    facts = []
    for tensor in layout.tensors:
        numel = 1
        for dim in tensor.shape:
            numel *= dim
        facts.append((DTYPE_NAMES[tensor.dtype], numel, tensor.nbytes))
    return facts, [cut for cut in layout_cuts(layout) if cut < size]


def describe_checkpoint(stream: BinaryIO, size: int, label: str) -> Checkpoint:
    """Read a PyTorch checkpoint's description, with errors that name the file.

    Raises:
        InvalidInputError: the file holds Python objects other than tensors and plain
            data (refused, never executed), or is not a checkpoint torch.save writes.
    """
    try:
        return read_checkpoint(stream, size)
    except UnsafeCheckpointError as exc:
        raise FormatError(
            f"refused '{label}': it holds Python objects other than tensors ({exc.message}); mreg reads "
            "checkpoints by the rule of torch.load(weights_only=True) and never runs them"
        ) from None
    except FormatError as exc:
        raise FormatError(f"cannot read '{label}' as a PyTorch checkpoint: {exc.message}") from None


def checkpoint_facts(checkpoint: Checkpoint) -> list[TensorFacts]:
    """Tensor facts of every tensor in a checkpoint, nested containers included.

    A sparse tensor counts its stored values (and its bytes include its indices).
    """
    facts = []
    for _, tensor in checkpoint.tensors():
        if isinstance(tensor, SparseRef):
            facts.append((tensor.values.dtype, tensor.values.numel, sum(p.nbytes for p in tensor.parts)))
        else:
            facts.append((tensor.dtype, tensor.numel, tensor.nbytes))
    return facts


def weight_facts(path: str, stream: BinaryIO, size: int) -> tuple[list[TensorFacts], list[int]]:
    """Tensor facts of one weight file (named ``path``) read from ``stream``, and its cut points."""
    if is_safetensors_name(path):
        try:
            return safetensors_facts(stream, size)
        except FormatError as exc:
            raise FormatError(f"cannot read '{path}' as safetensors: {exc.message}") from None
    checkpoint = describe_checkpoint(stream, size, path)
    return checkpoint_facts(checkpoint), [cut for cut in member_cuts(checkpoint.spans) if cut < size]


def describe_weights(files: Sequence[tuple[str, BinaryIO, int]]) -> Weights:
    """Metadata for the weight files among ``(path, stream, size)``, the framework they
    imply and their cut points (the header of each is parsed once).

    Returns ``Weights({}, None, {})`` when there are no weight files.

    Raises:
        InvalidInputError: a weight file is malformed, or a PyTorch checkpoint holds
            Python objects other than tensors (it is refused, never executed).
    """
    facts: list[TensorFacts] = []
    cuts: dict[str, list[int]] = {}
    for path, stream, size in files:
        if is_weights_name(path):
            found, cuts[path] = weight_facts(path, stream, size)
            facts += found
    if not cuts:
        return Weights({}, None, {})
    return Weights(summarize(facts), Framework("pytorch", installed_version("torch")), cuts)


def describe_paths(files: Sequence[tuple[str, Path]]) -> Weights:
    """:func:`describe_weights` of files on disk, given as ``(path in the version, file)``."""
    weights = [(name, source) for name, source in files if is_weights_name(name)]
    streams = []
    try:
        for name, source in weights:
            stream = io.BufferedReader(io.FileIO(source, "rb"))
            streams.append((name, stream, source.stat().st_size))
        return describe_weights(streams)
    except OSError as exc:
        raise FormatError(f"cannot read weights: {exc.strerror or exc}") from None
    finally:
        for _, stream, _ in streams:
            stream.close()


def installed_version(distribution: str) -> str | None:
    """The installed version of a package, without importing it."""
    from importlib import (
        metadata,  # start-up: it pulls in email and zipfile, only to name torch's version
    )

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
