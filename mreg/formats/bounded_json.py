"""JSON from files users give us, parsed only once its nesting is known to be shallow.

:func:`json.loads` recurses once per nested array or object; a header of a million
``[`` exhausts the interpreter's stack (``RecursionError``) after holding it for a
while. :func:`loads` first measures the nesting with a few passes of C-speed byte
operations (strings removed, then innermost bracket pairs peeled), and refuses text
nested deeper than asked before the parser sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A JSON string (escapes included), as the parser reads one; brackets inside it are text.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JSONDepthError(ValueError):
    """JSON nested deeper than allowed (or with brackets that do not pair)."""


def loads(data: bytes, max_depth: int) -> Any:
    """Parse UTF-8 JSON whose arrays and objects nest at most ``2 * max_depth`` deep.

    Text nested at most ``max_depth`` deep is always accepted.

    Raises:
        JSONDepthError: it nests deeper than that.
        ValueError: it is not valid JSON (``json.JSONDecodeError``, ``UnicodeDecodeError``).
    """
    check_depth(data, max_depth)
    return json.loads(data.decode("utf-8"))


def check_depth(data: bytes, max_depth: int) -> None:
    """Refuse JSON text whose brackets, outside strings, nest deeper than about ``max_depth``.

    Each pass removes every innermost ``[]`` and ``{}`` pair (a pass may peel two
    levels, never more), so what is left after ``max_depth`` passes nests deeper
    than ``max_depth``, or does not pair and would not parse.

    Raises:
        JSONDepthError: brackets remain after ``max_depth`` passes.
    """
    if b"\\" in data:  # escapes: strings end only where the parser ends them
        outside = _STRING.sub(b"", data)
    else:  # no escapes (the usual header): every other quote opens a string
        outside = b"".join(data.split(b'"')[0::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not peeled:
            return
        if len(peeled) == len(brackets):  # no pair left to peel: it never will be empty
            break
        brackets = peeled
    if brackets:
        raise JSONDepthError(f"JSON nested more than {max_depth} deep, or with brackets that do not pair")
