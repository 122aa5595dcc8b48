"""What a weights-only PyTorch checkpoint may name, and the descriptions it is read into.

The pickle machine (:mod:`mreg.checkpoint_pickle`) resolves each global a checkpoint
names against :data:`GLOBALS` and refuses any other. The entries are harmless
constructors of descriptions (:class:`TensorRef`, :class:`SparseRef`) and of plain
Python values; none of them calls into torch, and every argument is checked.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from mreg.formats.containers import FormatError
from mreg.formats.tensor_bounds import BoundsError, check_dims, check_view, element_count

MAX_PICKLE = 64 << 20  # bytes of pickle we agree to interpret
MAX_DEPTH = 200  # containers nested deeper than this are refused

# torch dtype name -> bytes per element
ITEMSIZE = {
    "bool": 1, "uint8": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
    "int64": 8, "uint64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
    "complex32": 4, "complex64": 8, "complex128": 16, "float8_e5m2": 1, "float8_e4m3fn": 1,
    "float8_e5m2fnuz": 1, "float8_e4m3fnuz": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1,
}  # fmt: skip
GRADIENT_DTYPES = {name for name in ITEMSIZE if not name.startswith(("bool", "int", "uint"))}
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


class Size(tuple):
    """A ``torch.Size`` held as a value."""


class Device(str):
    """A ``torch.device`` held as a value."""


class AttributedDict(OrderedDict):
    """An OrderedDict with attributes (``state_dict()._metadata``), kept apart from its keys."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.attributes: dict[str, Any] = {}


class StorageArg(NamedTuple):
    """What ``BINPERSID`` yields: a storage key, the dtype it was saved as, its size."""

    key: str
    dtype: str
    nbytes: int


class Global(NamedTuple):
    """A resolved global: a marker value or one of the constructors below."""

    name: str
    value: Any


def label(value: Any) -> str:
    """How an error names a value the pickle tried to call or use."""
    return value.name if isinstance(value, Global) else type(value).__name__


@dataclass(frozen=True)
class StorageType:
    """``torch.FloatStorage`` and friends (``UntypedStorage`` holds bytes)."""

    dtype: str


class TensorClass(NamedTuple):
    """``torch.Tensor`` or ``torch.nn.Parameter`` as a value."""

    parameter: bool


def _shape(value: Any, what: str) -> tuple[int, ...]:
    try:
        return check_dims(value, what)
    except BoundsError as exc:
        raise FormatError(f"a tensor {exc}") from None


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: str) -> TensorRef:
    if not isinstance(storage, StorageArg):
        raise FormatError("a tensor is rebuilt from something other than a storage")
    if hooks not in (None, {}) or type(offset) is not int or offset < 0 or type(requires_grad) is not bool:
        raise FormatError("malformed tensor rebuild")
    if requires_grad and dtype not in GRADIENT_DTYPES:
        raise FormatError(f"a tensor of dtype {dtype} requires gradients; only floating point and complex tensors have them")
    shape, strides = _shape(size, "size"), _shape(stride, "stride")
    try:
        check_view(shape, strides, offset, ITEMSIZE[dtype], storage.nbytes, storage.key)
    except BoundsError as exc:
        raise FormatError(f"a tensor of size {list(shape)} {exc}") from None
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
    if requires_grad and data.dtype not in GRADIENT_DTYPES:
        raise FormatError(f"a parameter of dtype {data.dtype} requires gradients; only floating point and complex tensors have them")
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
    shape = _shape(size, "size")
    try:
        element_count(shape, ITEMSIZE[parts[-1].dtype] * 8)
    except BoundsError as exc:
        raise FormatError(f"a sparse tensor of size {list(shape)} {exc}") from None
    return SparseRef(layout.removeprefix("torch."), tuple(parts), shape, coalesced)


def _from_type(function: Any, new_type: Any, args: Any, state: Any) -> Any:
    if not isinstance(function, Global) or function.value not in (_rebuild_v2, _rebuild_v3, _parameter):
        raise UnsafeCheckpointError(f"tensor rebuilt by {label(function)}")
    if not isinstance(new_type, Global) or not isinstance(new_type.value, TensorClass) or state:
        raise UnsafeCheckpointError(f"tensor subclass {label(new_type)} or tensor with Python state")
    if not isinstance(args, tuple) or len(args) > 8:
        raise FormatError("malformed tensor rebuild")
    tensor = function.value(*args)
    return _parameter(tensor, tensor.requires_grad) if new_type.value.parameter else tensor


class Layout(str):
    """A sparse layout name (``torch.sparse_coo``)."""


def _layout(name: Any) -> Layout:
    if type(name) is not str or name not in LAYOUTS:
        raise UnsafeCheckpointError(f"unknown tensor layout {name!r}")
    return Layout(name)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise FormatError("malformed bytes value")
    return text.encode(encoding)


def _bytes(data: Any = b"") -> bytes:
    if not isinstance(data, bytes):  # never bytearray(n): n zero bytes would be allocated
        raise FormatError("malformed bytearray value")
    return data


def _device(*args: Any) -> Device:
    if not args or not all(isinstance(a, (str, int)) for a in args):
        raise FormatError("malformed device")
    return Device(":".join(str(a) for a in args))


def _set(items: Any = ()) -> set[Any]:
    return set(items)


def _pair_keys(items: Iterable[Any]) -> Iterable[Any]:
    """The keys ``OrderedDict(items)`` hashes when ``items`` are pairs."""
    return (item[0] for item in items if isinstance(item, (list, tuple)) and item)


# Constructors whose work grows with their arguments (copies, parsing, hashing): the
# pickle machine charges it to the checkpoint's budget (see checkpoint_budget).
COPYING_CONSTRUCTORS = {
    "collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.bytearray", "builtins.complex",
    "_codecs.encode", "torch.Size", "torch.device",
}  # fmt: skip
# Constructors that hash what their first argument holds when it is a list or a tuple,
# and how to find those values: the pickle machine checks them first (see checkpoint_budget).
HASHING_CONSTRUCTORS: dict[str, Callable[[Iterable[Any]], Iterable[Any]]] = {
    "builtins.set": lambda items: items,
    "collections.Counter": lambda items: items,
    "collections.OrderedDict": _pair_keys,
}


GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": lambda *args: AttributedDict(*args),
    "collections.Counter": lambda *args: Counter(*args),
    "builtins.set": _set,
    "builtins.bytearray": lambda *args: bytearray(_encode(*args) if args and isinstance(args[0], str) else _bytes(*args)),
    "builtins.complex": lambda real=0.0, imag=0.0: complex(float(real), float(imag)),
    "_codecs.encode": _encode,
    "torch.Size": lambda items=(): Size(_shape(items, "size")),
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


def resolve(module: str, name: str) -> Any:
    """A dtype as itself; anything else in the table wrapped with its name; the rest refused."""
    qualified = f"{'builtins' if module == '__builtin__' else module}.{name}"  # protocol 2 writes Python 2 names
    value = GLOBALS.get(qualified)
    if value is None:
        raise UnsafeCheckpointError(f"Unsupported global: GLOBAL {qualified} is not a tensor, a storage or plain data")
    return value if isinstance(value, Dtype) else Global(qualified, value)
