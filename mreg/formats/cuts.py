"""Where to cut weight files so that tensors shared between versions are stored once.

A weight file is cut at the start and end of every tensor of at least
``MIN_CHUNK`` bytes. Each such tensor becomes a chunk object of its own; the bytes
between them (headers, small tensors such as biases and norms) become "glue"
chunks. Two fine-tunes that share a backbone then share every backbone chunk.

Cut points never affect correctness, only how much is shared: whatever the cuts,
the chunks concatenate to the file's exact bytes and its digest is checked over all
of them. A file with no tensor that large is not cut at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from mreg.formats.containers import (
    FormatError,
    SafetensorsLayout,
    header_length,
    parse_safetensors,
    zip_member_spans,
)

MIN_CHUNK = 16 << 10  # tensors smaller than this stay in the glue between big ones
MAX_SAFETENSORS_PREFIX = 16 << 20  # give up on a header bigger than this


def safetensors_prefix_length(prefix: bytes) -> int | None:
    """How many leading bytes decide the cuts of a possible safetensors stream (None: not one)."""
    if len(prefix) < 8:
        return None
    try:
        length = 8 + header_length(prefix)
    except FormatError:
        return None
    return length if length <= MAX_SAFETENSORS_PREFIX else None


def safetensors_cuts(header: bytes) -> list[int]:
    """Cut points from a safetensors header (the whole header, nothing after it)."""
    # While streaming, the file size is unknown: if the data does not end where the
    # header says, the cuts are merely less useful.
    try:
        layout = parse_safetensors(header, None)
    except FormatError:
        return []
    return layout_cuts(layout)


def layout_cuts(layout: SafetensorsLayout) -> list[int]:
    """Cut points around the tensors of a parsed safetensors header."""
    return _cuts([(t.start, t.end) for t in layout.tensors], first=layout.data_start)


def member_cuts(spans: Iterable[tuple[str, int, int]]) -> list[int]:
    """Cut points around the tensor storages among a zip checkpoint's ``(member, start, end)``."""
    return _cuts(sorted((start, end) for name, start, end in spans if "/data/" in name))


def zip_cuts(path: Path) -> list[int]:
    """Cut points around the tensor storages of a PyTorch zip checkpoint."""
    return member_cuts(zip_member_spans(path))


def file_cuts(path: Path, size: int) -> list[int]:
    """Cut points for a file on disk: safetensors or a zip checkpoint, else none."""
    with open(path, "rb") as stream:
        prefix = stream.read(8)
        needed = safetensors_prefix_length(prefix)
        if needed is not None and needed <= size:
            cuts = safetensors_cuts(prefix + stream.read(needed - 8))
            if cuts:
                return [c for c in cuts if c < size]
    return [c for c in zip_cuts(path) if c < size]


def _cuts(spans: list[tuple[int, int]], first: int | None = None) -> list[int]:
    points = {first} if first else set()
    for start, end in spans:
        if end - start >= MIN_CHUNK:
            points.update((start, end))
    points.discard(0)
    return sorted(points) if any(end - start >= MIN_CHUNK for start, end in spans) else []


def stream_cuts(blocks: Iterable[bytes | memoryview]) -> tuple[list[int], Iterator[bytes | memoryview]]:
    """Peek at the start of a stream for a safetensors header; return cuts and the whole stream."""
    blocks = iter(blocks)
    prefix = bytearray()
    needed: int | None = 8
    while needed is not None and len(prefix) < needed:
        block = next(blocks, None)
        if block is None:
            break
        prefix += block
        if len(prefix) >= 8 and needed == 8:
            needed = safetensors_prefix_length(bytes(prefix[:8]))
    cuts = safetensors_cuts(bytes(prefix[:needed])) if needed is not None and len(prefix) >= needed else []
    return cuts, itertools.chain([memoryview(prefix)], blocks)
