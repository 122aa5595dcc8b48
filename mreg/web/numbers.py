"""Numbers as the pages show them: finite, or a dash.

Metrics are finite when registered, but what the pages compute from them need not
be: the change between 1e308 and -1e308 overflows to infinity, and a tensor-level
difference of float32 weights can be infinite or NaN. Nothing shown, drawn or sent
as JSON is ever NaN or infinite: it is ``–`` on a page and ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

DASH = "–"


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (for None, NaN, infinities and non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return number if math.isfinite(number) else None


def difference(old: float | None, new: float | None) -> float | None:
    """``new - old``, or None when either is missing or the difference overflows."""
    if old is None or new is None:
        return None
    return finite(new - old)


def number(value: Any, spec: str = ".4g") -> str:
    """A number for a page (``spec`` as for ``format``), or a dash when it is not a finite number."""
    shown = finite(value)
    return DASH if shown is None else format(shown, spec)


def signed(value: Any) -> str:
    """A change with its sign (``+0.02``), or nothing when it is not a finite number."""
    shown = finite(value)
    return "" if shown is None else f"{shown:+.4g}"


def json_bytes(data: Any) -> bytes:
    """``data`` as JSON, with any NaN or infinity (which JSON cannot hold) as ``null``."""
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # rare: walk the data only when a value is out of range
        text = json.dumps(_without_nan(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def _without_nan(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _without_nan(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_without_nan(value) for value in data]
    return data
