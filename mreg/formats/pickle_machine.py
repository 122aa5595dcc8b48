"""A pickle machine that knows only what a weights-only PyTorch checkpoint holds.

It interprets the opcodes ``torch.save`` emits (protocol 2, and the few of later
protocols a hand-made file might use) and resolves globals against a fixed table
of harmless constructors: tensor and parameter rebuilds become :class:`TensorRef`
or :class:`SparseRef` descriptions, ``OrderedDict``/``Counter``/``set`` become
Python containers, dtypes, sizes and devices become marked strings and tuples.
Any other global, or an opcode that could build another object, refuses the file.
The functions a file names are never called (stand-ins in
:mod:`mreg.checkpoint_globals` build descriptions instead), and no byte of it is executed.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mreg.formats.checkpoint_budget import CONTAINER_COST, MAX_ARGUMENTS, MAX_INT_BYTES, MAX_NAME, MAX_OPERATIONS, SET_COST, Budget
from mreg.formats.containers import FormatError
from mreg.formats.pickle_globals import (
    COPYING_CONSTRUCTORS,
    HASHING_CONSTRUCTORS,
    ITEMSIZE,
    AttributedDict,
    Global,
    StorageArg,
    StorageType,
    UnsafeCheckpointError,
    label,
    resolve,
)
from mreg.formats.tensor_bounds import INT64_MAX

if TYPE_CHECKING:
    from mreg.formats.pickle_buffer import Buffer

_U32 = struct.Struct("<I")




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
        self.budget = Budget()

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
        for _ in range(MAX_OPERATIONS):
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
        raise FormatError(f"checkpoint pickle runs more than {MAX_OPERATIONS} operations")

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
        size = self._int(fmt)
        if not 0 <= size <= MAX_INT_BYTES:
            raise FormatError(f"checkpoint pickle holds an integer of {size} bytes (at most {MAX_INT_BYTES})")
        self.push(int.from_bytes(self._read(size), "little", signed=True))

    def put(self, index: int) -> None:
        self.memo[index] = self.stack[-1]

    def get(self, index: int) -> None:
        self.push(self.memo[index])

    def tuple_n(self, count: int) -> None:
        if len(self.stack) < count:
            raise FormatError("malformed pickle: a tuple of more items than the stack holds")
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
        self.budget.key(key)
        _dict(self.stack[-1])[key] = value

    def setitems(self) -> None:
        items = self._pop_mark()
        target = _dict(self.stack[-1])
        self.budget.keys(items[0::2])
        for index in range(0, len(items) - 1, 2):
            target[items[index]] = items[index + 1]

    def additems(self) -> None:
        items = self._pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise UnsafeCheckpointError("ADDITEMS on something other than a set")
        self.budget.keys(items)
        target.update(items)

    def global_text(self) -> None:
        module = self.buffer.readline().decode("utf-8").rstrip("\n")
        name = self.buffer.readline().decode("utf-8").rstrip("\n")
        self.push(resolve(module, name))

    def global_stack(self) -> None:
        name, module = self.stack.pop(), self.stack.pop()
        if not (type(module) is str and type(name) is str and len(module) + len(name) <= MAX_NAME):
            raise FormatError(f"malformed pickle: STACK_GLOBAL names need two strings of at most {MAX_NAME} bytes")
        self.push(resolve(module, name))

    def reduce(self) -> None:
        args, function = self.stack.pop(), self.stack.pop()
        if not isinstance(function, Global) or not callable(function.value) or not isinstance(args, tuple):
            raise UnsafeCheckpointError(f"the checkpoint calls {label(function)}, which weights-only loading refuses")
        if len(args) > MAX_ARGUMENTS:
            raise FormatError(f"the checkpoint calls {function.name} with {len(args)} arguments")
        if function.name in COPYING_CONSTRUCTORS:
            self.budget.charge_arguments(args)
        if function.name in HASHING_CONSTRUCTORS and args and isinstance(args[0], (list, tuple)):
            self.budget.keys(HASHING_CONSTRUCTORS[function.name](args[0]))
        self.push(function.value(*args))

    def build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, AttributedDict) and isinstance(state, dict):
            if not all(type(k) is str for k in state):
                raise FormatError("the checkpoint sets attributes whose names are not strings")
            self.budget.charge(len(state))
            target.attributes.update(state)
        elif state not in (None, {}) and not (isinstance(state, tuple) and len(state) <= 2 and not any(state)):
            raise UnsafeCheckpointError(f"the checkpoint sets the state of a {type(target).__name__}")

    def persistent(self) -> None:
        pid = self.stack.pop()
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeCheckpointError("the checkpoint refers to an object other than a storage")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise FormatError("storage views of very old checkpoints are not supported")
        if not isinstance(storage_type, Global) or not isinstance(storage_type.value, StorageType):
            raise UnsafeCheckpointError(f"storage of type {label(storage_type)} is not a tensor storage")
        if not isinstance(key, str) or len(key) > MAX_NAME or type(numel) is not int or numel < 0:
            raise FormatError("malformed storage reference")
        dtype = storage_type.value.dtype
        nbytes = numel * ITEMSIZE[dtype]
        if nbytes > INT64_MAX:
            raise FormatError(f"storage '{key}' declares {numel} elements, more bytes than 2**63-1")
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


def _empty_dict(machine: Machine) -> None:
    machine.budget.charge(CONTAINER_COST)
    machine.push({})


def _empty_list(machine: Machine) -> None:
    machine.budget.charge(CONTAINER_COST)
    machine.push([])


def _empty_set(machine: Machine) -> None:
    machine.budget.charge(SET_COST)
    machine.push(set())


def _frozenset(machine: Machine) -> None:
    items = machine._pop_mark()
    machine.budget.charge(SET_COST)
    machine.budget.keys(items)
    machine.push(frozenset(items))


def _pop_to_mark(machine: Machine) -> None:
    machine._pop_mark()


def _pop_to_mark_tuple(machine: Machine) -> None:
    machine.push(tuple(machine._pop_mark()))


def _pop_to_mark_list(machine: Machine) -> None:
    machine.push(machine._pop_mark())


def _pop_to_mark_dict(machine: Machine) -> None:
    items = machine._pop_mark()
    machine.budget.keys(items[0::2])
    machine.push({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})


_OPCODES: dict[bytes, Callable[[Machine], None]] = {
    b"\x80": Machine.proto,
    b"\x95": Machine.frame,
    b"(": Machine.mark,
    b"0": lambda m: m.stack.pop(),
    b"1": _pop_to_mark,
    b"2": lambda m: m.push(m.stack[-1]),
    b"}": _empty_dict,
    b"]": _empty_list,
    b")": lambda m: m.push(()),
    b"\x8f": _empty_set,
    b"\x90": Machine.additems,
    b"\x91": _frozenset,
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
