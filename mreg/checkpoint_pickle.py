"""A pickle machine that knows only what a weights-only PyTorch checkpoint holds.

It interprets the opcodes ``torch.save`` emits (protocol 2, and the few of later
protocols a hand-made file might use) and resolves globals against a fixed table
of harmless constructors: tensor and parameter rebuilds become :class:`TensorRef`
or :class:`SparseRef` descriptions, ``OrderedDict``/``Counter``/``set`` become
Python containers, dtypes, sizes and devices become marked strings and tuples.
Any other global, or an opcode that could build another object, refuses the file.
No function named by the file is ever called, and no byte of it is executed.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, NamedTuple

from .formats import FormatError

MAX_PICKLE = 64 << 20  # bytes of pickle we agree to interpret
_U32 = struct.Struct("<I")
MAX_DEPTH = 200  # containers nested deeper than this are refused
# torch dtype name -> bytes per element
ITEMSIZE = {
    "bool": 1, "uint8": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
    "int64": 8, "uint64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
    "complex32": 4, "complex64": 8, "complex128": 16, "float8_e5m2": 1, "float8_e4m3fn": 1,
    "float8_e5m2fnuz": 1, "float8_e4m3fnuz": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1,
}  # fmt: skip
# legacy storage classes (``torch.FloatStorage``) -> the dtype they hold
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
}  # fmt: skip
LAYOUTS = {"torch.sparse_coo", "torch.sparse_csr", "torch.sparse_csc", "torch.sparse_bsr", "torch.sparse_bsc"}


class UnsafeCheckpointError(FormatError):
    """A checkpoint that holds something other than tensors and plain data."""


@dataclass(frozen=True)
class Storage:
    """Where one storage's bytes are: ``[start, start + nbytes)`` of the file, or a deflated member."""

    key: str
    nbytes: int
    start: int  # for a deflated member, where its compressed bytes start
    member: str | None = None  # set when the bytes must be inflated from this zip member


@dataclass(frozen=True)
class TensorRef:
    """A dense tensor: ``dtype``, ``shape`` and ``stride`` over storage ``storage`` from element ``offset``."""

    storage: str
    dtype: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    requires_grad: bool = False
    parameter: bool = False

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.dtype]


@dataclass(frozen=True)
class SparseRef:
    """A sparse tensor: ``layout`` (``sparse_coo``, ``sparse_csr``...) built from dense parts."""

    layout: str
    parts: tuple[TensorRef, ...]  # (indices, values) or (compressed, plain, values)
    shape: tuple[int, ...]
    coalesced: bool | None = None

    @property
    def values(self) -> TensorRef:
        return self.parts[-1]


class Dtype(str):
    """A dtype held as a value (``torch.float32`` in the pickle)."""


class Size(tuple):  # type: ignore[type-arg]
    """A ``torch.Size`` held as a value."""


class Device(str):
    """A ``torch.device`` held as a value."""


class AttributedDict(OrderedDict):  # type: ignore[type-arg]
    """An OrderedDict with attributes (``state_dict()._metadata``), kept apart from its keys."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.attributes: dict[str, Any] = {}


class Buffer:
    """Pickle bytes: all of them, or a stream read ahead in blocks up to a limit.

    ``offset + pos`` is the position in the stream of the next byte to interpret.
    """

    def __init__(self, data: bytes = b"", stream: BinaryIO | None = None, limit: int = MAX_PICKLE) -> None:
        if len(data) > limit:
            raise FormatError(f"checkpoint pickle is larger than {limit} bytes")
        self.data, self.pos, self.offset = data, 0, 0
        self.stream, self.left = stream, limit - len(data)

    def ensure(self, count: int, strict: bool = True) -> None:
        """Make ``count`` bytes from ``pos`` available (strict: or fail)."""
        missing = self.pos + count - len(self.data)
        if missing > 0 and self.stream is not None and self.left > 0:
            more = self.stream.read(min(self.left, max(missing, 1 << 16)))
            self.left -= len(more)
            self.offset += self.pos
            self.data, self.pos = self.data[self.pos :] + more, 0
            missing = count - len(self.data)
        if strict and missing > 0:
            raise FormatError(f"checkpoint pickle is truncated or larger than {MAX_PICKLE} bytes")

    def read(self, count: int) -> bytes:
        self.ensure(count)
        start = self.pos
        self.pos += count
        return self.data[start : self.pos]

    def readline(self) -> bytes:
        self.ensure(256, strict=False)
        end = self.data.find(b"\n", self.pos, self.pos + 256)
        if end < 0:
            raise FormatError("malformed pickle: a GLOBAL name longer than 256 bytes")
        return self.read(end + 1 - self.pos)


class StorageArg(NamedTuple):
    """What ``BINPERSID`` yields: a storage key, the dtype it was saved as, its size."""

    key: str
    dtype: str
    nbytes: int


class _Global(NamedTuple):
    """A resolved global: a marker value or one of the constructors below."""

    name: str
    value: Any


class _Mark:
    """The MARK sentinel on the stack."""


MARK = _Mark()
StorageCallback = Callable[[str, int], None]


class Machine:
    """Runs one pickle from ``stream``; ``on_storage(key, nbytes)`` is told of each new storage."""

    def __init__(self, buffer: Buffer, on_storage: StorageCallback) -> None:
        self.buffer = buffer
        self.on_storage = on_storage
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.storages: dict[str, int] = {}

    def load(self, what: str = "checkpoint") -> Any:
        """The object the pickle builds.

        Raises:
            UnsafeCheckpointError: it names a global or uses an opcode outside the table.
            FormatError: it is malformed or truncated.
        """
        try:
            self._run()
            if len(self.stack) != 1 or self.marks:
                raise FormatError(f"{what} pickle ends with a malformed stack")
            return self.stack.pop()
        except FormatError:
            raise
        except (IndexError, KeyError, TypeError, ValueError, AttributeError, RecursionError, OverflowError, struct.error) as exc:
            raise FormatError(f"malformed {what} pickle ({type(exc).__name__})") from None

    def _run(self) -> None:
        """The interpreter loop; the opcodes torch.save emits most are handled inline (speed)."""
        buffer, stack, memo = self.buffer, self.stack, self.memo
        push = stack.append
        data, pos = buffer.data, buffer.pos
        while True:
            if pos + 9 > len(data):  # every inline opcode's argument fits in 9 bytes
                buffer.pos = pos
                buffer.ensure(9, strict=False)
                data, pos = buffer.data, buffer.pos
            code = data[pos]
            pos += 1
            if code == 0x71:  # BINPUT
                memo[data[pos]] = stack[-1]
                pos += 1
            elif code == 0x68:  # BINGET
                push(memo[data[pos]])
                pos += 1
            elif code == 0x72:  # LONG_BINPUT
                memo[_U32.unpack_from(data, pos)[0]] = stack[-1]
                pos += 4
            elif code == 0x6A:  # LONG_BINGET
                push(memo[_U32.unpack_from(data, pos)[0]])
                pos += 4
            elif code == 0x4B:  # BININT1
                push(data[pos])
                pos += 1
            elif code == 0x28:  # MARK
                self.marks.append(len(stack))
            elif code == 0x58 and pos + 4 + _U32.unpack_from(data, pos)[0] <= len(data):  # BINUNICODE, whole in the buffer
                end = pos + 4 + _U32.unpack_from(data, pos)[0]
                push(data[pos + 4 : end].decode("utf-8", "surrogatepass"))
                pos = end
            elif code == 0x74:  # TUPLE
                push(tuple(self._pop_mark()))
            elif code == 0x29:  # EMPTY_TUPLE
                push(())
            elif code == 0x85:  # TUPLE1
                stack[-1] = (stack[-1],)
            elif code == 0x86:  # TUPLE2
                stack[-2:] = [(stack[-2], stack[-1])]
            elif code == 0x89:  # NEWFALSE
                push(False)
            elif code == 0x2E:  # STOP
                buffer.pos = pos
                return
            else:
                handler = _OPCODES.get(bytes((code,)))
                if handler is None:
                    raise UnsafeCheckpointError(f"pickle opcode {bytes((code,))!r} is not used by weights-only checkpoints")
                buffer.pos = pos
                handler(self)
                data, pos = buffer.data, buffer.pos

    # ------------------------------------------------------------- reading

    def _read(self, count: int) -> bytes:
        return self.buffer.read(count)

    def _int(self, fmt: str) -> int:
        data = self._read(struct.calcsize(fmt))
        return int(struct.unpack(fmt, data)[0])

    def _pop_mark(self) -> list[Any]:
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    # ------------------------------------------------------------- opcodes

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def mark(self) -> None:
        self.marks.append(len(self.stack))

    def frame(self) -> None:
        self._read(8)

    def proto(self) -> None:
        if self._read(1)[0] > 5:
            raise FormatError("unknown pickle protocol")

    def text(self, fmt: str) -> None:
        self.push(self._read(self._int(fmt)).decode("utf-8", "surrogatepass"))

    def binary(self, fmt: str) -> None:
        self.push(self._read(self._int(fmt)))

    def long(self, fmt: str) -> None:
        self.push(int.from_bytes(self._read(self._int(fmt)), "little", signed=True))

    def put(self, index: int) -> None:
        self.memo[index] = self.stack[-1]

    def get(self, index: int) -> None:
        self.push(self.memo[index])

    def tuple_n(self, count: int) -> None:
        items = self.stack[len(self.stack) - count :] if count else []
        del self.stack[len(self.stack) - count :]
        self.push(tuple(items))

    def append(self) -> None:
        value = self.stack.pop()
        _list(self.stack[-1]).append(value)

    def appends(self) -> None:
        items = self._pop_mark()
        _list(self.stack[-1]).extend(items)

    def setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        _dict(self.stack[-1])[key] = value

    def setitems(self) -> None:
        items = self._pop_mark()
        target = _dict(self.stack[-1])
        for index in range(0, len(items) - 1, 2):
            target[items[index]] = items[index + 1]

    def additems(self) -> None:
        items = self._pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise UnsafeCheckpointError("ADDITEMS on something other than a set")
        target.update(items)

    def global_text(self) -> None:
        module = self.buffer.readline().decode("utf-8").rstrip("\n")
        name = self.buffer.readline().decode("utf-8").rstrip("\n")
        self.push(_resolve(module, name))

    def global_stack(self) -> None:
        name, module = self.stack.pop(), self.stack.pop()
        self.push(_resolve(str(module), str(name)))

    def reduce(self) -> None:
        args, function = self.stack.pop(), self.stack.pop()
        if not isinstance(function, _Global) or not callable(function.value) or not isinstance(args, tuple):
            raise UnsafeCheckpointError(f"the checkpoint calls {_label(function)}, which weights-only loading refuses")
        self.push(function.value(*args))

    def build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, AttributedDict) and isinstance(state, dict):
            target.attributes.update({str(k): v for k, v in state.items()})
        elif state not in (None, {}) and not (isinstance(state, tuple) and not any(state)):
            raise UnsafeCheckpointError(f"the checkpoint sets the state of a {type(target).__name__}")

    def persistent(self) -> None:
        pid = self.stack.pop()
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeCheckpointError("the checkpoint refers to an object other than a storage")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise FormatError("storage views of very old checkpoints are not supported")
        if not isinstance(storage_type, _Global) or not isinstance(storage_type.value, StorageType):
            raise UnsafeCheckpointError(f"storage of type {_label(storage_type)} is not a tensor storage")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise FormatError("malformed storage reference")
        dtype = storage_type.value.dtype
        nbytes = numel * ITEMSIZE[dtype]
        if key not in self.storages:
            self.storages[key] = nbytes
            self.on_storage(key, nbytes)
        elif self.storages[key] != nbytes:
            raise FormatError(f"storage '{key}' is given two sizes")
        self.push(StorageArg(key, dtype, nbytes))


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise UnsafeCheckpointError("APPEND to something other than a list")
    return value


def _dict(value: Any) -> dict[Any, Any]:
    if type(value) not in (dict, AttributedDict, Counter):
        raise UnsafeCheckpointError("SETITEM on something other than a dict")
    return value


def _label(value: Any) -> str:
    return value.name if isinstance(value, _Global) else type(value).__name__


def _pop_to_mark_tuple(machine: Machine) -> None:
    machine.push(tuple(machine._pop_mark()))


def _pop_to_mark_list(machine: Machine) -> None:
    machine.push(machine._pop_mark())


def _pop_to_mark_dict(machine: Machine) -> None:
    items = machine._pop_mark()
    machine.push({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})


_OPCODES: dict[bytes, Callable[[Machine], None]] = {
    b"\x80": Machine.proto,
    b"\x95": Machine.frame,
    b"(": Machine.mark,
    b"0": lambda m: m.stack.pop(),
    b"1": lambda m: m._pop_mark() and None,
    b"2": lambda m: m.push(m.stack[-1]),
    b"}": lambda m: m.push({}),
    b"]": lambda m: m.push([]),
    b")": lambda m: m.push(()),
    b"\x8f": lambda m: m.push(set()),
    b"\x90": Machine.additems,
    b"\x91": lambda m: m.push(frozenset(m._pop_mark())),
    b"t": _pop_to_mark_tuple,
    b"l": _pop_to_mark_list,
    b"d": _pop_to_mark_dict,
    b"\x85": lambda m: m.tuple_n(1),
    b"\x86": lambda m: m.tuple_n(2),
    b"\x87": lambda m: m.tuple_n(3),
    b"a": Machine.append,
    b"e": Machine.appends,
    b"s": Machine.setitem,
    b"u": Machine.setitems,
    b"q": lambda m: m.put(m._read(1)[0]),
    b"r": lambda m: m.put(m._int("<I")),
    b"\x94": lambda m: m.put(len(m.memo)),
    b"h": lambda m: m.get(m._read(1)[0]),
    b"j": lambda m: m.get(m._int("<I")),
    b"J": lambda m: m.push(m._int("<i")),
    b"K": lambda m: m.push(m._read(1)[0]),
    b"M": lambda m: m.push(m._int("<H")),
    b"\x8a": lambda m: m.long("<B"),
    b"\x8b": lambda m: m.long("<i"),
    b"G": lambda m: m.push(struct.unpack(">d", m._read(8))[0]),
    b"N": lambda m: m.push(None),
    b"\x88": lambda m: m.push(True),
    b"\x89": lambda m: m.push(False),
    b"\x8c": lambda m: m.text("<B"),
    b"X": lambda m: m.text("<I"),
    b"\x8d": lambda m: m.text("<Q"),
    b"C": lambda m: m.binary("<B"),
    b"B": lambda m: m.binary("<I"),
    b"\x8e": lambda m: m.binary("<Q"),
    b"c": Machine.global_text,
    b"\x93": Machine.global_stack,
    b"R": Machine.reduce,
    b"b": Machine.build,
    b"Q": Machine.persistent,
}


# ------------------------------------------------------------------- globals


@dataclass(frozen=True)
class StorageType:
    """``torch.FloatStorage`` and friends (``UntypedStorage`` holds bytes)."""

    dtype: str


class TensorClass(NamedTuple):
    """``torch.Tensor`` or ``torch.nn.Parameter`` as a value."""

    parameter: bool


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(d) is int and d >= 0 for d in value):
        raise FormatError(f"tensor {what} must be a tuple of non-negative integers")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: str) -> TensorRef:
    if not isinstance(storage, StorageArg):
        raise FormatError("a tensor is rebuilt from something other than a storage")
    if hooks not in (None, {}) or type(offset) is not int or offset < 0 or type(requires_grad) is not bool:
        raise FormatError("malformed tensor rebuild")
    shape, strides = _shape(size, "size"), _shape(stride, "stride")
    if len(shape) != len(strides):
        raise FormatError("tensor size and stride differ in length")
    itemsize = ITEMSIZE[dtype]
    extent = offset + (sum((d - 1) * s for d, s in zip(shape, strides)) + 1 if all(shape) else 0)
    if extent * itemsize > storage.nbytes:
        raise FormatError(f"a tensor reaches past the end of storage '{storage.key}'")
    return TensorRef(storage.key, dtype, offset, shape, strides, requires_grad)


def _rebuild_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None) -> TensorRef:
    if metadata:
        raise UnsafeCheckpointError("tensor carries Python metadata")
    dtype = storage.dtype if isinstance(storage, StorageArg) else ""
    return _tensor(storage, offset, size, stride, requires_grad, hooks, dtype)


def _rebuild_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, metadata: Any = None) -> TensorRef:
    if metadata or not isinstance(dtype, Dtype) or dtype not in ITEMSIZE:
        raise UnsafeCheckpointError("tensor of an unsupported dtype or with Python metadata")
    return _tensor(storage, offset, size, stride, requires_grad, hooks, str(dtype))


def _parameter(data: Any, requires_grad: Any = True, hooks: Any = None, state: Any = None) -> TensorRef:
    if not isinstance(data, TensorRef) or type(requires_grad) is not bool or hooks not in (None, {}) or state:
        raise UnsafeCheckpointError("parameter with hooks, state or non-tensor data")
    return TensorRef(data.storage, data.dtype, data.offset, data.shape, data.stride, requires_grad, parameter=True)


def _sparse(layout: Any, data: Any) -> SparseRef:
    if not isinstance(layout, Layout) or not isinstance(data, tuple):
        raise FormatError("malformed sparse tensor")
    if layout == "torch.sparse_coo" and len(data) in (3, 4):
        parts, size, coalesced = data[:2], data[2], data[3] if len(data) == 4 else None
    elif layout != "torch.sparse_coo" and len(data) == 4:
        parts, size, coalesced = data[:3], data[3], None
    else:
        raise FormatError("malformed sparse tensor")
    if not all(isinstance(p, TensorRef) for p in parts) or coalesced not in (None, True, False):
        raise FormatError("malformed sparse tensor")
    return SparseRef(layout.removeprefix("torch."), tuple(parts), _shape(tuple(size), "size"), coalesced)


def _from_type(function: Any, new_type: Any, args: Any, state: Any) -> Any:
    if not isinstance(function, _Global) or function.value not in (_rebuild_v2, _rebuild_v3, _parameter):
        raise UnsafeCheckpointError(f"tensor rebuilt by {_label(function)}")
    if not isinstance(new_type, _Global) or not isinstance(new_type.value, TensorClass) or state:
        raise UnsafeCheckpointError(f"tensor subclass {_label(new_type)} or tensor with Python state")
    tensor = function.value(*args)
    return _parameter(tensor, tensor.requires_grad) if new_type.value.parameter else tensor


class Layout(str):
    """A sparse layout name (``torch.sparse_coo``)."""


def _layout(name: Any) -> Layout:
    if name not in LAYOUTS:
        raise UnsafeCheckpointError(f"unknown tensor layout {name!r}")
    return Layout(name)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise FormatError("malformed bytes value")
    return text.encode(encoding)


def _device(*args: Any) -> Device:
    if not args or not all(isinstance(a, (str, int)) for a in args):
        raise FormatError("malformed device")
    return Device(":".join(str(a) for a in args))


def _set(items: Any = ()) -> set[Any]:
    return set(items)


_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": lambda *args: AttributedDict(*args),
    "collections.Counter": lambda *args: Counter(*args),
    "builtins.set": _set,
    "builtins.bytearray": lambda *args: bytearray(_encode(*args) if args and isinstance(args[0], str) else bytes(*args[:1])),
    "builtins.complex": lambda real=0.0, imag=0.0: complex(float(real), float(imag)),
    "_codecs.encode": _encode,
    "torch.Size": lambda items=(): Size(_shape(tuple(items), "size")),
    "torch.device": _device,
    "torch.serialization._get_layout": _layout,
    "torch._utils._rebuild_tensor_v2": _rebuild_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_v3,
    "torch._utils._rebuild_parameter": _parameter,
    "torch._utils._rebuild_parameter_with_state": _parameter,
    "torch._utils._rebuild_sparse_tensor": _sparse,
    "torch._tensor._rebuild_from_type_v2": _from_type,
    "torch.Tensor": TensorClass(False),
    "torch.nn.parameter.Parameter": TensorClass(True),
    "torch.storage.UntypedStorage": StorageType("uint8"),
    **{f"torch.{name}": StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
    **{f"torch.{name}": Dtype(name) for name in ITEMSIZE},
}


def _resolve(module: str, name: str) -> Any:
    """A dtype as itself; anything else in the table wrapped with its name; the rest refused."""
    qualified = f"{'builtins' if module == '__builtin__' else module}.{name}"  # protocol 2 writes Python 2 names
    value = _GLOBALS.get(qualified)
    if value is None:
        raise UnsafeCheckpointError(f"Unsupported global: GLOBAL {qualified} is not a tensor, a storage or plain data")
    return value if isinstance(value, Dtype) else _Global(qualified, value)
