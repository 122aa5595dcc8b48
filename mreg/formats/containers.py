"""Weight-file containers, read without torch: safetensors and PyTorch zip checkpoints.

mreg needs the layout of weight files in two places that must not import torch:
the object store splits them at tensor boundaries, and ``mreg add`` describes them.
The tensors themselves are decoded by :mod:`mreg.pytorch`.

safetensors (https://github.com/huggingface/safetensors) is an 8-byte little-endian
header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets}}`` padded
with spaces, then the tensors' bytes back to back. Headers come from files users
give us, so every field is checked before it is trusted.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mreg.errors import InvalidInputError
from mreg.formats.bounded_json import loads as bounded_loads
from mreg.formats.tensor_bounds import INT64_MAX, BoundsError, check_dims, element_count
from mreg.formats.zip_bounds import open_zip
from mreg.text import printable

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth")
MAX_HEADER_SIZE = 100_000_000  # safetensors' own limit, in bytes
HEADER_ALIGNMENT = 8
MAX_HEADER_DEPTH = 8  # a header nests three deep ({name: {"shape": [...]}}); deeper is an attack

# safetensors dtype code -> (bits per element, the torch dtype it is read as).
# F4 packs two values in a byte: its header counts 4-bit values, torch counts pairs.
DTYPES = {
    "BOOL": (8, "bool"),
    "U8": (8, "uint8"),
    "I8": (8, "int8"),
    "F8_E5M2": (8, "float8_e5m2"),
    "F8_E4M3": (8, "float8_e4m3fn"),
    "F8_E4M3FNUZ": (8, "float8_e4m3fnuz"),
    "F8_E5M2FNUZ": (8, "float8_e5m2fnuz"),
    "F8_E8M0": (8, "float8_e8m0fnu"),
    "F4": (4, "float4_e2m1fn_x2"),
    "I16": (16, "int16"),
    "U16": (16, "uint16"),
    "F16": (16, "float16"),
    "BF16": (16, "bfloat16"),
    "I32": (32, "int32"),
    "U32": (32, "uint32"),
    "F32": (32, "float32"),
    "C64": (64, "complex64"),
    "F64": (64, "float64"),
    "I64": (64, "int64"),
    "U64": (64, "uint64"),
}
PACKED_CODES = {code for code, (bits, _) in DTYPES.items() if bits < 8}


def torch_shape(code: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape torch gives a tensor whose safetensors header says ``code`` and ``shape``."""
    if code in PACKED_CODES and shape:
        return (*shape[:-1], shape[-1] * DTYPES[code][0] // 8)
    return tuple(shape)


def header_shape(code: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The inverse of :func:`torch_shape`: what a safetensors header records."""
    if code in PACKED_CODES and shape:
        return (*shape[:-1], shape[-1] * 8 // DTYPES[code][0])
    return tuple(shape)


@dataclass(frozen=True)
class TensorLayout:
    """Where one tensor's bytes are in a file: ``[start, end)`` are absolute offsets."""

    name: str
    dtype: str  # the safetensors code
    shape: tuple[int, ...]  # as torch sees it (see torch_shape)
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsLayout:
    """A parsed safetensors header: tensors sorted by offset, plus free metadata."""

    data_start: int  # 8 + header length: where tensor data begins
    tensors: tuple[TensorLayout, ...]
    metadata: dict[str, str]


class FormatError(InvalidInputError):
    """A weight file whose container is malformed."""


def is_safetensors_name(name: str) -> bool:
    return name.endswith(SAFETENSORS_SUFFIX)


def is_weights_name(name: str) -> bool:
    """True for the file names mreg treats as PyTorch weights."""
    return is_safetensors_name(name) or name.endswith(TORCH_SUFFIXES)


def header_length(prefix: bytes) -> int:
    """The JSON header length a safetensors file announces in its first 8 bytes."""
    if len(prefix) < 8:
        raise FormatError("not a safetensors file: shorter than 8 bytes")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_SIZE:
        raise FormatError(f"not a safetensors file: header of {length} bytes announced")
    return length


def parse_safetensors(head: bytes, file_size: int | None) -> SafetensorsLayout:
    """Parse and check a safetensors header; ``head`` holds at least the header bytes.

    ``file_size`` None (a stream of unknown length) skips the check that the data
    ends exactly at the end of the file.

    Raises:
        FormatError: the header is not valid JSON, names an unknown dtype, or its
            offsets overlap, leave holes, or run past the end of the file.
    """
    length = header_length(head)
    data_start = 8 + length
    if len(head) < data_start or (file_size is not None and file_size < data_start):
        raise FormatError("safetensors header is truncated")
    try:
        raw = bounded_loads(bytes(head[8:data_start]), MAX_HEADER_DEPTH)
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, JSONDepthError
        raise FormatError(f"safetensors header is not valid JSON ({printable(str(exc), 120)})") from None
    if not isinstance(raw, dict):
        raise FormatError("safetensors header is not a JSON object")
    metadata = raw.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError("safetensors __metadata__ must map text to text")
    tensors = sorted((_tensor(name, info, data_start) for name, info in raw.items()), key=lambda t: (t.start, t.end))
    cursor = data_start
    for tensor in tensors:
        if tensor.start != cursor:
            raise FormatError(f"tensor '{printable(tensor.name)}' does not start where the previous one ends")
        cursor = tensor.end
    if file_size is not None and cursor != file_size:
        raise FormatError(f"tensor data ends at byte {cursor} but the file has {file_size} bytes")
    return SafetensorsLayout(data_start, tuple(tensors), metadata)


def _tensor(name: Any, info: Any, data_start: int) -> TensorLayout:
    try:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    except (TypeError, KeyError, ValueError):
        raise FormatError(f"safetensors entry '{printable(name)}' lacks dtype, shape or data_offsets") from None
    if type(dtype) is not str or dtype not in DTYPES:
        raise FormatError(f"tensor '{printable(name)}' has unknown dtype {printable(str(dtype))}")
    if not isinstance(shape, list):
        raise FormatError(f"tensor '{printable(name)}' has an invalid shape")
    if not (type(begin) is int and type(end) is int and 0 <= begin <= end <= INT64_MAX - data_start):
        raise FormatError(f"tensor '{printable(name)}' has invalid data offsets")
    try:
        bits = element_count(check_dims(shape, "shape"), DTYPES[dtype][0]) * DTYPES[dtype][0]
    except BoundsError as exc:
        raise FormatError(f"tensor '{printable(name)}' {exc}") from None
    if bits % 8 or (end - begin) != bits // 8:
        raise FormatError(f"tensor '{printable(name)}' has {end - begin} bytes, which does not fit {dtype} {shape}")
    return TensorLayout(str(name), dtype, torch_shape(dtype, shape), data_start + begin, data_start + end)


def encode_safetensors_header(
    tensors: Sequence[tuple[str, str, Sequence[int], int]], metadata: dict[str, str] | None = None
) -> bytes:
    """The 8-byte length and padded JSON header for tensors laid out in the given order.

    Args:
        tensors: ``(name, dtype code, torch shape, byte length)`` in the order their bytes follow.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(header_shape(dtype, shape)), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % HEADER_ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OverflowError, struct.error, NotImplementedError,
    zlib.error,  # a deflated member that does not inflate
    RuntimeError,  # an encrypted member
    OSError,  # a seek before the start of the file
)  # fmt: skip
"""What :mod:`zipfile` raises on a damaged archive."""


def zip_member_spans(path: Path) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of the stored bytes of each member of a zip checkpoint.

    Only uncompressed members are listed (``torch.save`` stores tensors that way).
    Returns an empty list for files that are not zip archives, or damaged ones.
    """
    try:
        with open(path, "rb") as stream:
            return stored_member_spans(stream)
    except ZIP_ERRORS:
        return []


def stored_member_spans(stream: BinaryIO, archive: zipfile.ZipFile | None = None) -> list[tuple[str, int, int]]:
    """:func:`zip_member_spans` of an open, seekable stream (``archive``: the stream, already opened as a zip).

    Raises:
        zipfile.BadZipFile (or another of ``ZIP_ERRORS``): a damaged archive.
    """
    if archive is None:
        if not zipfile.is_zipfile(stream):
            return []
        with open_zip(stream) as opened:
            return stored_member_spans(stream, opened)
    spans = []
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED:
            continue
        if info.header_offset < 0:  # a directory offset before the start of the archive
            raise zipfile.BadZipFile(f"member '{info.filename}' has a negative offset")
        stream.seek(info.header_offset)
        local = stream.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"member '{info.filename}' has no local header")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        spans.append((info.filename, start, start + info.compress_size))
    return spans
