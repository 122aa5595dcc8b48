"""Mutated weight files for fuzzing the readers: seeds, mutators, and the property they must keep.

Seeds are small real files (``torch.save`` in both layouts, safetensors). Mutators
work at three levels, so that mutations reach past each container's own checks:
the raw bytes of a file; the pickle inside a zip checkpoint (mutated op by op, then
zipped again with a valid CRC); and the JSON header of a safetensors file (mutated
as a value, then length-prefixed again). Pickles are also generated from scratch,
opcode by opcode, from the table of opcodes and globals the machine knows.

:func:`check_file` is the property: every reader either returns or raises an
:class:`mreg.errors.MregError`, within a time bound, and with bounded memory.
"""

from __future__ import annotations

import faulthandler
import io
import itertools
import json
import pickle
import pickletools
import random
import resource
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mreg.errors import MregError

SECONDS = 20.0  # an input taking longer than this is a finding (a hang, or near one)
HANG = 120  # an input still running after this is dumped and the process stopped
MEMORY_GROWTH = 1 << 30  # peak resident memory may not grow by more than this (bytes)


# ---------------------------------------------------------------------- seeds


def seeds(directory: Path) -> dict[str, bytes]:
    """Small real weight files: zip and legacy checkpoints of various contents, and safetensors."""
    import torch
    from safetensors.torch import save as save_safetensors

    base = torch.arange(12.0).reshape(3, 4)
    contents: dict[str, Any] = {
        "state": {"w": base, "b": torch.zeros(2, dtype=torch.float16), "i": torch.tensor([1, 2], dtype=torch.int64)},
        "nested": {
            "model": {"w": base[:, ::2], "p": torch.nn.Parameter(torch.ones(2))},
            "optimizer": {"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
            "epoch": 3,
            "names": ("a", "b"),
            "size": torch.Size([2, 3]),
            "dtype": torch.float32,
            "tags": {"x", "y"},
            "blob": b"\x00\x01",
        },
        "sparse": {"s": torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.tensor([1.0, 2.0]), (4,), check_invariants=True), "e": torch.empty(0)},
    }
    files: dict[str, bytes] = {}
    for name, content in contents.items():
        for legacy in (False, True):
            buffer = io.BytesIO()
            torch.save(content, buffer, _use_new_zipfile_serialization=not legacy)
            files[f"{name}{'-legacy' if legacy else ''}.pt"] = buffer.getvalue()
    files["state.safetensors"] = save_safetensors({"w": base.contiguous(), "b": torch.zeros(2, dtype=torch.bfloat16), "e": torch.zeros(0, 3)}, {"k": "v"})
    return files


# ------------------------------------------------------------------- mutators

INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, -1, -5, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]


def mutate_bytes(data: bytes, rng: random.Random, rounds: int = 3) -> bytes:
    """Flip, overwrite, insert, delete, duplicate or truncate bytes of ``data``."""
    out = bytearray(data)
    for _ in range(rounds):
        if not out:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            continue
        where = rng.randrange(len(out))
        kind = rng.randrange(7)
        if kind == 0:
            out[where] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[where] = rng.randrange(256)
        elif kind == 2:  # an interesting integer over a length, a count or an offset
            width = rng.choice([1, 2, 4, 8])
            out[where : where + width] = (rng.choice(INTERESTING) % (1 << (8 * width))).to_bytes(width, "little")
        elif kind == 3:
            out[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 4:
            del out[where : where + rng.randint(1, 16)]
        elif kind == 5:
            start = rng.randrange(len(out))
            out[where:where] = out[start : start + rng.randint(1, 64)] * rng.randint(1, 4)
        else:
            del out[where:]
    return bytes(out)


def pickle_ops(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each opcode of a pickle (as far as it parses)."""
    spans: list[tuple[int, int]] = []
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # noqa: BLE001 - a mutated pickle: keep what parsed
        return spans
    starts = [pos for _, _, pos in ops if pos is not None] + [len(data)]
    return list(itertools.pairwise(starts))


def mutate_pickle(data: bytes, rng: random.Random) -> bytes:
    """Delete, duplicate, move or corrupt whole opcodes, or insert generated ones."""
    spans = pickle_ops(data)
    if not spans:
        return mutate_bytes(data, rng)
    out = data
    for _ in range(rng.randint(1, 3)):
        spans = pickle_ops(out) or spans
        start, end = rng.choice(spans)
        kind = rng.randrange(6)
        if kind == 0:
            out = out[:start] + out[end:]
        elif kind == 1:
            out = out[:end] + out[start:end] * rng.randint(1, 40) + out[end:]
        elif kind == 2:
            other_start, other_end = rng.choice(spans)
            out = out[:start] + out[other_start:other_end] + out[start:]
        elif kind == 3:
            out = out[:start] + generate_ops(rng, rng.randint(1, 12)) + out[start:]
        elif kind == 4 and end - start > 1:  # corrupt an argument, keep the opcode
            out = out[: start + 1] + mutate_bytes(out[start + 1 : end], rng, 1)[: end - start - 1].ljust(end - start - 1, b"\0") + out[end:]
        else:
            out = mutate_bytes(out, rng, 1)
    return out


GLOBALS = [
    b"collections\nOrderedDict\n", b"collections\nCounter\n", b"__builtin__\nset\n", b"builtins\nbytearray\n",
    b"builtins\ncomplex\n", b"_codecs\nencode\n", b"torch\nSize\n", b"torch\ndevice\n", b"torch._utils\n_rebuild_tensor_v2\n",
    b"torch._utils\n_rebuild_parameter\n", b"torch._utils\n_rebuild_sparse_tensor\n", b"torch\nFloatStorage\n",
    b"torch\nfloat32\n", b"torch.serialization\n_get_layout\n", b"torch._tensor\n_rebuild_from_type_v2\n", b"torch\nTensor\n",
    b"os\nsystem\n", b"builtins\neval\n",
]  # fmt: skip


def generate_ops(rng: random.Random, count: int) -> bytes:
    """``count`` opcodes with arguments, drawn from what weights-only pickles use (and a few others)."""
    out = bytearray()
    for _ in range(count):
        choice = rng.randrange(30)
        if choice < 10:
            out += bytes([rng.choice(b"()]}N\x88\x89t\x85\x86\x87ldaesuRbQ012\x8f\x90\x91\x94\x93.")])
        elif choice < 13:
            out += b"K" + bytes([rng.randrange(256)])
        elif choice < 15:
            out += b"J" + struct.pack("<I", (rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(2**32)) % 2**32)
        elif choice < 17:
            out += rng.choice([b"q", b"h"]) + bytes([rng.randrange(4)])
        elif choice < 18:
            out += rng.choice([b"r", b"j"]) + struct.pack("<I", rng.choice([0, 1, 2, 300, 0xFFFFFFFF]))
        elif choice < 20:
            size = rng.choice([0, 1, 8, 255, -1, -5, 2**31 - 1, 1 << 20])
            body = bytes(rng.randrange(256) for _ in range(max(0, min(size, 16))))
            if rng.random() < 0.5:
                out += b"\x8a" + bytes([size & 0xFF]) + body
            else:
                out += b"\x8b" + struct.pack("<i", max(-(2**31), min(size, 2**31 - 1))) + body
        elif choice < 23:
            text = rng.choice([b"storage", b"0", b"1", b"cpu", b"x" * rng.randint(0, 40), b"\xff\xfe", b"latin1"])
            out += b"X" + struct.pack("<I", (len(text) if rng.random() < 0.9 else rng.choice(INTERESTING)) % 2**32) + text
        elif choice < 25:
            out += b"c" + rng.choice(GLOBALS)
        elif choice < 26:
            out += b"G" + struct.pack(">d", rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e308]))
        elif choice < 27:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 8)))
            out += b"C" + bytes([len(data)]) + data
        elif choice < 28:
            out += b"\x8c" + bytes([rng.randrange(256)])
        else:
            out += rng.choice([b"\x80\x02", b"\x80\x05", b"\x95" + struct.pack("<Q", rng.choice([0, 10, 2**63]))])
    return bytes(out)


# The three pickles that open a legacy torch.save stream: magic number, protocol, system info.
LEGACY_HEADER = b"".join(
    pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
)


def generated_pickle(rng: random.Random) -> bytes:
    """A pickle made from scratch: a protocol header, generated opcodes, STOP."""
    return b"\x80\x02" + generate_ops(rng, rng.randint(1, 60)) + b"."


def rezip(archive: bytes, replace: Callable[[str, bytes], bytes]) -> bytes:
    """The zip archive with each member's bytes passed through ``replace`` (names kept, CRCs valid)."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, replace(info.filename, source.read(info)))
    return out.getvalue()


def mutate_header(data: bytes, rng: random.Random) -> bytes:
    """A safetensors file whose JSON header is mutated as a value, then length-prefixed again."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    names = [name for name in header if name != "__metadata__"]
    depth = 0
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(names)
        entry = header[name]
        if not isinstance(entry, dict):
            continue
        kind = rng.randrange(8)
        if kind == 0:
            entry["shape"] = [rng.choice([0, 1, 3, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -1]) for _ in range(rng.randint(0, 4))]
        elif kind == 1:
            entry["data_offsets"] = [rng.choice([0, 8, 48, 2**63 - 1, 2**64, -8]) for _ in range(rng.choice([2, 2, 1, 3]))]
        elif kind == 2:
            entry["dtype"] = rng.choice(["F32", "F4", "BF16", "C64", "XYZ", 5, ["F32"], {"a": 1}, None])
        elif kind == 3:
            header[name] = rng.choice([[], "x", 5, None, {"dtype": "F32"}])
        elif kind == 4:
            header["__metadata__"] = rng.choice([{"k": 1}, [], "x", 0, {"k": "v" * rng.randint(0, 10)}])
        elif kind == 5:  # spliced in as text below: json.dumps itself would recurse
            entry[rng.choice(["shape", "extra"])] = "@NEST@"
            depth = rng.choice([3, 10, 100, 5000, 100000])
        elif kind == 6:
            header[f"n{rng.randrange(100)}\n\x1b[31m"] = dict(entry)
        else:
            shape = entry.get("shape")
            entry["shape"] = [*(shape if isinstance(shape, list) else []), rng.choice([0, 1, 2**62])]
    text = json.dumps(header).encode()
    if b'"@NEST@"' in text:
        text = text.replace(b'"@NEST@"', b"[" * depth + b"0" + b"]" * depth)
    text += b" " * (-len(text) % 8)
    if rng.random() < 0.2:
        body = mutate_bytes(body, rng, 1)
    return struct.pack("<Q", len(text)) + text + body


def mutate(name: str, data: bytes, rng: random.Random) -> bytes:
    """One mutation of a seed at a level chosen at random (see the module's docstring)."""
    level = rng.randrange(4)
    if name.endswith(".safetensors"):
        return mutate_header(data, rng) if level < 3 else mutate_bytes(data, rng)
    if data.startswith(b"PK") and level < 3:
        generated = level == 2 and rng.random() < 0.5
        return rezip(data, lambda member, body: (generated_pickle(rng) if generated else mutate_pickle(body, rng)) if member.endswith("data.pkl") else body)
    if level == 1:  # a legacy stream: its pickles are back to back at the start
        return mutate_pickle(data, rng)
    return mutate_bytes(data, rng, rng.randint(1, 4))


# ------------------------------------------------------------------- property


def read_every_way(path: Path, name: str) -> None:
    """Run every reader of weight files on ``path`` (named ``name`` in a version), as mreg does."""
    import torch

    from mreg.formats.checkpoints import inflate_members, leaves
    from mreg.formats.cuts import file_cuts, safetensors_cuts, stream_cuts
    from mreg.formats.weights import describe_checkpoint, weight_facts
    from mreg.pytorch.checkpoints import load_checkpoint
    from mreg.pytorch.compare import compare
    from mreg.pytorch.tensors import read_safetensors
    from mreg.storage.blobs import Segment

    data = path.read_bytes()
    file_cuts(path, len(data))  # never raises: a damaged file is merely not cut
    stream_cuts([memoryview(data)])  # a pulled stream: the same
    safetensors_cuts(data[: 8 + 4096])
    for step in (
        lambda: weight_facts(name, io.BytesIO(data), len(data)),
        lambda: _raw_leaves(data, name),
    ):
        try:
            step()
        except MregError:
            pass
    try:
        if name.endswith(".safetensors"):
            loaded: Any = read_safetensors([Segment(str(path), 0, len(data), "")])  # type: ignore[arg-type]
        else:
            loaded = load_checkpoint(path)
        for _, value in leaves(loaded, atomic=(torch.Size,)):
            compare(value, value)
    except MregError:
        pass
    del describe_checkpoint, inflate_members  # imported to keep the readers' modules loaded


def _raw_leaves(data: bytes, name: str) -> None:
    """What the torch-free diff reads: every leaf's bytes (see mreg.operations.raw_compare)."""
    from mreg.formats.checkpoints import inflate_members, leaves
    from mreg.formats.containers import header_length, parse_safetensors
    from mreg.formats.weights import describe_checkpoint

    stream = io.BytesIO(data)
    if name.endswith(".safetensors"):
        parse_safetensors(data[: 8 + header_length(data[:8])], len(data))
        return
    checkpoint = describe_checkpoint(stream, len(data), name)
    inflate_members(stream, checkpoint.storages.values())
    for _, value in leaves(checkpoint.root):
        repr(value)


def peak_memory() -> int:
    """Peak resident memory of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check_file(path: Path, name: str, baseline: int) -> float:
    """Read ``path`` every way; fail on any other exception, a slow read or a memory peak. Returns seconds.

    A read that hangs is stopped after HANG seconds with every thread's traceback.
    """
    faulthandler.dump_traceback_later(HANG, exit=True)
    try:
        start = time.perf_counter()
        read_every_way(path, name)
        elapsed = time.perf_counter() - start
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert elapsed < SECONDS, f"{name}: {elapsed:.1f} s"
    assert peak_memory() - baseline < MEMORY_GROWTH, f"{name}: peak memory grew by {(peak_memory() - baseline) >> 20} MiB"
    return elapsed
