"""Weight files made without torch, for tests that need files stored as chunks."""

from __future__ import annotations

import json
import struct
from pathlib import Path

TENSOR_BYTES = 32 << 10  # above the chunking threshold


def write_safetensors(path: Path, *, seed: int = 0, tensors: int = 3) -> Path:
    """A safetensors file of ``tensors`` float32 tensors of 32 KiB each, distinct per ``seed``."""
    header, offset = {}, 0
    for index in range(tensors):
        header[f"t{index}"] = {"dtype": "F32", "shape": [TENSOR_BYTES // 4], "data_offsets": [offset, offset + TENSOR_BYTES]}
        offset += TENSOR_BYTES
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    body = b"".join(bytes([(seed * 31 + index) % 251]) * TENSOR_BYTES for index in range(tensors))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path
