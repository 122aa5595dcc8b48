"""The query parameters of the pages, checked strictly before any page is built.

A page number is ASCII digits only (Python's ``int`` also takes Arabic-Indic digits,
and ``str.isdigit`` takes superscripts it cannot convert); text is bounded and free
of control characters; a parameter given twice is refused rather than guessed at.
Unknown parameters are ignored, as links shared with tracking tags carry them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.datastructures import QueryParams

from mreg.errors import InvalidInputError
from mreg.text import printable

MAX_PAGE = 10**6  # far beyond any table (pages of 100 rows)
MAX_TEXT = 500  # a reference is at most ~270 characters, a name filter far less
_PAGE = re.compile(r"[1-9][0-9]{0,6}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def page_number(text: str) -> int:
    """A page number from a URL: ``1`` to ``MAX_PAGE`` in ASCII digits.

    Raises:
        InvalidInputError: anything else.
    """
    if not _PAGE.fullmatch(text) or int(text) > MAX_PAGE:
        raise InvalidInputError(f"page must be a whole number from 1 to {MAX_PAGE} in digits 0-9, not '{printable(text, 20)}'")
    return int(text)


def query(params: QueryParams, defaults: Mapping[str, str]) -> dict[str, str]:
    """The parameters named in ``defaults`` (each given at most once, else its default).

    Raises:
        InvalidInputError: one is given twice, is longer than ``MAX_TEXT`` or holds a control character.
    """
    found = dict(defaults)
    seen: set[str] = set()
    for key, value in params.multi_items():
        if key not in defaults:
            continue
        if key in seen:
            raise InvalidInputError(f"'{key}' is given more than once; give it once")
        if len(value) > MAX_TEXT:
            raise InvalidInputError(f"'{key}' is longer than {MAX_TEXT} characters")
        if _CONTROL.search(value):
            raise InvalidInputError(f"'{key}' holds a control character")
        seen.add(key)
        found[key] = value
    return found
