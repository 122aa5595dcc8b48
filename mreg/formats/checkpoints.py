"""PyTorch checkpoints (``torch.save`` files) read without torch, and without running them.

A checkpoint is a pickle, and unpickling can run any code. This module never calls
:mod:`pickle`: it runs its own small pickle machine that knows only what a
weights-only checkpoint holds (the rule of ``torch.load(weights_only=True)``):
tensor and parameter rebuilds, storages, (ordered) dicts, lists, tuples, sets,
numbers, strings, bytes, dtypes, sizes and devices. Any other global, and any
opcode that builds other objects, refuses the whole file; nothing is executed.

What it yields is a description: the object tree with :class:`TensorRef` leaves,
each naming a storage, its dtype, shape, stride and offset; and the byte span of
each storage in the file. Describing a file needs nothing more, and
:mod:`mreg.pytorch` memory-maps tensors straight from those spans.

Both layouts ``torch.save`` writes are read: the zip archive (``archive/data.pkl``
plus one member per storage; members may be stored or deflated) and the legacy
stream (``_use_new_zipfile_serialization=False``: five pickles, then each storage's
element count and bytes).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from mreg.formats.checkpoint_walk import check_structure, leaves
from mreg.formats.containers import ZIP_ERRORS, FormatError, stored_member_spans
from mreg.formats.pickle_buffer import Buffer
from mreg.formats.pickle_globals import (
    MAX_PICKLE,
    SparseRef,
    Storage,
    TensorRef,
)
from mreg.formats.pickle_machine import Machine
from mreg.formats.zip_bounds import open_zip

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
NOT_A_CHECKPOINT = "neither a zip archive nor a legacy torch.save stream"
DEFLATE_MAX_RATIO = 1032  # deflate cannot inflate more than this: larger claims are lies


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's object tree and the storages its tensors live in."""

    root: Any
    storages: dict[str, Storage]
    spans: tuple[tuple[str, int, int], ...] = ()  # (member, start, end) of each stored zip member

    def tensors(self) -> Iterator[tuple[str, TensorRef | SparseRef]]:
        """Every tensor with its path in the tree (``model.conv.weight``, ``optimizer.state.0.exp_avg``)."""
        yield from leaves(self.root, wanted=(TensorRef, SparseRef))  # subtrees without tensors are skipped


def is_checkpoint_zip(head: bytes) -> bool:
    """torch's own test: a zip checkpoint starts with a local file header."""
    return head[:4] == b"PK\x03\x04"


def read_checkpoint(stream: BinaryIO, size: int) -> Checkpoint:
    """Describe the checkpoint in a seekable binary stream of ``size`` bytes.

    Raises:
        UnsafeCheckpointError: it holds objects other than tensors and plain data.
        FormatError: it is not a checkpoint torch.save writes, or is damaged.
    """
    stream.seek(0)
    head = stream.read(4)
    stream.seek(0)
    try:
        checkpoint = _read_zip(stream, size) if is_checkpoint_zip(head) else _read_legacy(stream, size)
        check_structure(checkpoint.root)  # no cycle, no deep nesting: later walks may recurse
        return checkpoint
    except FormatError:
        raise
    except ZIP_ERRORS as exc:
        raise FormatError(f"damaged zip archive ({' '.join(str(exc).split()) or type(exc).__name__})") from None


# ------------------------------------------------------------------ zip layout


def _read_zip(stream: BinaryIO, size: int) -> Checkpoint:
    with open_zip(stream) as archive:
        spans = {name: (start, end) for name, start, end in stored_member_spans(stream, archive)}
        members = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in members if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise FormatError("not a PyTorch checkpoint: no single '<archive>/data.pkl' record")
        prefix = pickles[0][: -len("data.pkl")]
        order = members.get(prefix + "byteorder")
        if order is not None and _read_member(archive, order, 16) != b"little":
            raise FormatError("checkpoint stores big-endian tensors, which mreg cannot read")
        data = _read_member(archive, members[pickles[0]], MAX_PICKLE)
        storages: dict[str, Storage] = {}

        def storage(key: str, nbytes: int) -> None:
            info = members.get(f"{prefix}data/{key}")
            if info is None:
                raise FormatError(f"storage '{key}' has no member in the archive")
            if info.file_size != nbytes:
                raise FormatError(f"storage '{key}' should hold {nbytes} bytes, its member holds {info.file_size}")
            if info.filename in spans:
                storages[key] = Storage(key, nbytes, spans[info.filename][0])
            elif info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size <= size and nbytes <= DEFLATE_MAX_RATIO * max(info.compress_size, 1):
                storages[key] = Storage(key, nbytes, info.header_offset, member=info.filename)
            else:
                raise FormatError(f"storage '{key}' is compressed in a way mreg does not read")

        root = Machine(Buffer(data), storage).load()
    if any(s.member is None and s.start + s.nbytes > size for s in storages.values()):
        raise FormatError("a storage runs past the end of the file")
    return Checkpoint(root, storages, tuple((name, start, end) for name, (start, end) in spans.items()))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, refusing one that would inflate beyond ``limit``."""
    if info.file_size > limit:
        raise FormatError(f"archive member '{info.filename}' is larger than {limit} bytes")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # others inflate without a bound
        raise FormatError(f"archive member '{info.filename}' is compressed in a way mreg does not read")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise FormatError(f"archive member '{info.filename}' is larger than {limit} bytes")
    return data


def inflate_members(stream: BinaryIO, storages: Iterable[Storage]) -> dict[str, bytes]:
    """The bytes of the deflated storages among ``storages``, checked against their size and CRC.

    Raises:
        FormatError: a member inflates to other bytes than it declares.
    """
    wanted = [storage for storage in storages if storage.member is not None]
    if not wanted:
        return {}
    inflated = {}
    try:
        with open_zip(stream) as archive:
            for storage in wanted:
                with archive.open(str(storage.member)) as member:
                    data = member.read(storage.nbytes + 1)  # zipfile also stops at the declared size and checks the CRC
                if len(data) != storage.nbytes:
                    raise FormatError(f"storage '{storage.key}' inflates to {len(data)} bytes, not {storage.nbytes}")
                inflated[storage.key] = data
    except (*ZIP_ERRORS, KeyError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"a storage cannot be inflated ({exc})") from None
    return inflated


# --------------------------------------------------------------- legacy layout


def _read_legacy(stream: BinaryIO, size: int) -> Checkpoint:
    head = stream.read(2)
    if len(head) != 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:  # a legacy stream opens with a pickle
        raise FormatError(NOT_A_CHECKPOINT)
    stream.seek(0)
    buffer = Buffer(stream=stream, limit=min(size, MAX_PICKLE))

    def header(what: str) -> Any:
        return Machine(buffer, _no_storages).load(what)

    if header("magic number") != LEGACY_MAGIC:
        raise FormatError(NOT_A_CHECKPOINT)
    if header("protocol version") != LEGACY_PROTOCOL:
        raise FormatError("legacy checkpoint of an unknown protocol version")
    info = header("system information")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise FormatError("checkpoint stores big-endian tensors, which mreg cannot read")
    declared: dict[str, int] = {}
    root = Machine(buffer, declared.__setitem__).load()
    keys = header("storage list")
    if not isinstance(keys, list) or not all(type(key) is str for key in keys) or sorted(keys) != sorted(declared) or len(keys) != len(declared):
        raise FormatError("legacy checkpoint's storage list does not match its tensors")
    position = buffer.offset + buffer.pos
    storages = {}
    for key in keys:
        stream.seek(position)
        count = stream.read(8)
        if len(count) != 8:
            raise FormatError("legacy checkpoint is truncated")
        storages[key] = Storage(key, declared[key], position + 8)
        position += 8 + declared[key]
        if position > size:
            raise FormatError("legacy checkpoint is truncated")
        (elements,) = struct.unpack("<q", count)
        if elements < 0 or (elements == 0) != (declared[key] == 0) or (elements and declared[key] % elements):
            raise FormatError(f"storage '{key}' announces {elements} elements for {declared[key]} bytes")
    return Checkpoint(root, storages)


def _no_storages(key: str, nbytes: int) -> None:
    raise FormatError("a legacy checkpoint header refers to a storage")
