"""State dicts to and from safetensors, the format mreg stores weights in.

Writing streams the header and then each tensor's bytes straight into the object
store (no temporary file). Reading memory-maps the stored objects copy-on-write and
wraps the tensors around the mapped bytes, so loading copies nothing until a tensor
is written to (chunks under 64 KiB are read instead: cheaper than a map); the tensors
are writable and never change the store.
"""

from __future__ import annotations

import bisect
import mmap
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from mreg.errors import CorruptObjectError, InvalidInputError, ObjectNotFoundError
from mreg.formats.containers import (
    DTYPES,
    FormatError,
    encode_safetensors_header,
    header_length,
    parse_safetensors,
)
from mreg.formats.weights import TensorFacts, summarize
from mreg.storage.blobs import SeekableReader, Segment

# every dtype both safetensors and the installed torch know
TORCH_TO_SAFETENSORS = {getattr(torch, name): code for code, (_, name) in DTYPES.items() if hasattr(torch, name)}
SAFETENSORS_TO_TORCH = {code: dtype for dtype, code in TORCH_TO_SAFETENSORS.items()}

StateDict = Mapping[str, torch.Tensor]
# Segments smaller than this are read into memory rather than mapped: one read costs
# less than a map, its unmapping and its first page fault (a ResNet-18 has a dozen
# such chunks: headers, biases, norms).
SMALL_SEGMENT = 64 << 10


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32``."""
    return str(dtype).removeprefix("torch.")


def tensor_facts(state_dict: StateDict) -> list[TensorFacts]:
    """``(dtype, elements, bytes)`` for each tensor, as :func:`mreg.weights.summarize` takes them."""
    return [(dtype_name(t.dtype), t.numel(), t.numel() * t.element_size()) for t in state_dict.values()]


def describe(state_dict: StateDict) -> dict:
    """The tensor metadata recorded for a state dict."""
    return summarize(tensor_facts(state_dict))


def _prepared(state_dict: StateDict) -> list[tuple[str, torch.Tensor]]:
    """Tensors on the CPU, contiguous, largest element size first (keeps every tensor aligned)."""
    tensors = []
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise InvalidInputError(f"state dict entry {name!r} is not a named tensor")
        if tensor.dtype not in TORCH_TO_SAFETENSORS:
            raise InvalidInputError(f"tensor '{name}' has dtype {tensor.dtype}, which safetensors cannot store")
        tensors.append((name, tensor.detach().to("cpu").contiguous()))
    return sorted(tensors, key=lambda item: (-item[1].element_size(), item[0]))


def safetensors_blocks(state_dict: StateDict, metadata: dict[str, str] | None = None) -> Iterator[memoryview]:
    """The bytes of a safetensors file holding ``state_dict``, header first."""
    tensors = _prepared(state_dict)
    header = encode_safetensors_header(
        [(name, TORCH_TO_SAFETENSORS[t.dtype], t.shape, t.numel() * t.element_size()) for name, t in tensors],
        metadata,
    )
    yield memoryview(header)
    for _, tensor in tensors:
        if tensor.numel():
            yield memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


class MappedFile:
    """A stored file's segments, each made private on first use: read when small, else
    memory-mapped copy-on-write. Either way, writing to them never changes the store."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = list(segments)
        self.size = sum(s.size for s in self.segments)
        self._starts = [s.start for s in self.segments]
        self._buffers: dict[int, mmap.mmap | bytearray] = {}

    def _buffer(self, index: int) -> mmap.mmap | bytearray:
        buffer = self._buffers.get(index)
        if buffer is None:
            buffer = self._buffers[index] = private_bytes(self.segments[index])
        return buffer

    def tensor(self, start: int, end: int, dtype: torch.dtype) -> torch.Tensor:
        """A 1-D tensor over bytes ``[start, end)``; zero-copy when one segment holds them."""
        count = (end - start) // dtype.itemsize
        if count == 0:
            return torch.empty(0, dtype=dtype)
        index = bisect.bisect_right(self._starts, start) - 1
        segment = self.segments[index]
        if end <= segment.start + segment.size:
            return torch.frombuffer(self._buffer(index), dtype=dtype, count=count, offset=start - segment.start)
        return torch.frombuffer(bytearray(self.read(start, end)), dtype=dtype, count=count)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` across segment boundaries (fewer at the end of the file)."""
        end = min(end, self.size)  # a file shorter than its header claims: never past the last segment
        parts = []
        index = bisect.bisect_right(self._starts, start) - 1
        while start < end:
            segment = self.segments[index]
            stop = min(end, segment.start + segment.size)
            parts.append(self._buffer(index)[start - segment.start : stop - segment.start])
            start = stop
            index += 1
        return b"".join(parts)


def private_bytes(segment: Segment) -> mmap.mmap | bytearray:
    """A segment's bytes as writable memory of this process alone: read when small, else
    mapped copy-on-write (one open, and no buffered file object)."""
    try:
        fd = os.open(segment.path, os.O_RDONLY)
    except FileNotFoundError:
        raise ObjectNotFoundError(segment.digest) from None
    try:
        if segment.size >= SMALL_SEGMENT:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
        data = bytearray(segment.size)
        if os.readv(fd, [data]) != segment.size:
            raise CorruptObjectError(segment.digest, "it is shorter than its chunk index says")
        return data
    finally:
        os.close(fd)


class MappedReader(SeekableReader):
    """A seekable, read-only file over a :class:`MappedFile` (reads copy from the maps)."""

    def __init__(self, mapped: MappedFile) -> None:
        super().__init__(mapped.size)
        self.mapped = mapped

    def readinto(self, buffer: Any) -> int:
        data = self.mapped.read(self.position, min(self.position + len(buffer), self.size))
        memoryview(buffer).cast("B")[: len(data)] = data
        self.position += len(data)
        return len(data)


def read_safetensors(segments: Sequence[Segment], *, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a stored safetensors file as a state dict (zero-copy on the CPU).

    Raises:
        InvalidInputError: the file is not valid safetensors.
    """
    mapped = MappedFile(segments)
    try:
        head = mapped.read(0, min(8 + header_length(mapped.read(0, 8)), mapped.size))
        layout = parse_safetensors(head, mapped.size)
    except FormatError as exc:
        raise InvalidInputError(f"cannot load weights: {exc.message}") from None
    state_dict = {}
    for info in layout.tensors:
        tensor = mapped.tensor(info.start, info.end, SAFETENSORS_TO_TORCH[info.dtype]).reshape(info.shape)
        state_dict[info.name] = tensor if str(device) == "cpu" else tensor.to(device)
    return state_dict
