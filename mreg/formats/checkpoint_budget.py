"""How much work and memory one checkpoint pickle may cost the pickle machine.

A pickle of a few bytes per opcode can ask for far more than its size: an empty
set is one byte and 216 bytes of memory, a memoized object can be passed again
and again to a constructor that copies it, and a tuple nested a million deep
(or forty tuples each holding the previous one twice) takes the interpreter's C
stack (or 2**40 steps) to hash. :class:`Budget` bounds each of these, so reading
any file takes bounded time and memory; checkpoints torch.save writes stay far
below every limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mreg.formats.containers import FormatError
from mreg.formats.pickle_globals import Device, Dtype

MAX_OPERATIONS = 1 << 22  # opcodes one pickle may run (ResNet-18's has 4 245)
MAX_WORK = 1 << 23  # units of work done by opcodes beyond their own step (see Budget.charge)
MAX_INT_BYTES = 256  # the largest integer a pickle may hold, in bytes (LONG1 holds at most 255)
MAX_ARGUMENTS = 8  # the most arguments any constructor of the table takes
MAX_NAME = 256  # bytes of a module or a global's name
MAX_KEY_NODES = 256  # values inside one tuple or frozenset used as a dict key or set member
MAX_HASHED = 1 << 14  # such values (and keys other than text and 64-bit integers) in one pickle
INT64 = 1 << 63
CONTAINER_COST = 4  # an empty dict or list: some 64 bytes, where most opcodes make 8 to 50
SET_COST = 16  # an empty set: 216 bytes
TEXT_UNIT = 16  # bytes of text or bytes a constructor may copy per unit of work
_TEXT = {str, Dtype, Device}


class Budget:
    """The work left to one pickle: copies and containers (``work``) and hashed keys (``hashed``)."""

    def __init__(self) -> None:
        self.work = MAX_WORK
        self.hashed = MAX_HASHED

    def charge(self, units: int) -> None:
        """Spend ``units`` of work: one per item a constructor copies or checks.

        Raises:
            FormatError: the pickle has spent more than MAX_WORK.
        """
        self.work -= units
        if self.work < 0:
            raise FormatError(f"checkpoint pickle asks for more than {MAX_WORK} units of work (copies, sets, containers)")

    def charge_arguments(self, args: tuple[Any, ...]) -> None:
        """Spend what a constructor called with ``args`` may copy: containers by item, text by TEXT_UNIT bytes."""
        units = 1
        for arg in args:
            if isinstance(arg, (str, bytes, bytearray)):
                units += len(arg) // TEXT_UNIT
            elif isinstance(arg, (list, tuple, dict, set, frozenset)):
                units += len(arg)
        self.charge(units)

    def keys(self, values: Iterable[Any]) -> None:
        """Check values about to be hashed (dict keys, set members); see :meth:`key`."""
        values = list(values)
        if set(map(type, values)) <= _TEXT:  # the common case (state dict keys), at C speed
            return
        for value in values:
            self.key(value)

    def key(self, value: Any) -> None:
        """Check one value about to be hashed.

        Text, bytes and 64-bit integers hash in bounded time and, for text and
        bytes, with a per-process random seed; they are free. Anything else (tuples,
        frozensets, floats, big integers) is hashed without a cache, or can be made
        to collide on purpose, so it is counted, nested values included.

        Raises:
            FormatError: a tuple or frozenset holds more than MAX_KEY_NODES values, or
                the pickle hashes more than MAX_HASHED such values.
        """
        kind = type(value)
        if kind is str or kind is bytes or value is None or kind is bool or kind is Dtype or kind is Device:
            return
        if kind is int and -INT64 <= value < INT64:
            return
        nodes, pending = 0, [value]
        while pending:
            item = pending.pop()
            nodes += 1
            if nodes > MAX_KEY_NODES:
                raise FormatError(f"a dict key or set member of the checkpoint holds more than {MAX_KEY_NODES} values")
            if isinstance(item, (tuple, frozenset)):
                pending.extend(item)
            elif isinstance(item, (list, dict, set, bytearray)):
                raise FormatError(f"a dict key or set member of the checkpoint holds a {type(item).__name__}")
        self.hashed -= nodes
        if self.hashed < 0:
            raise FormatError(f"checkpoint hashes more than {MAX_HASHED} keys other than text and integers")
