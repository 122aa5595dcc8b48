"""What a user may have meant: existing names close to one that was not found."""

from __future__ import annotations

from collections.abc import Iterable

MAX_SUGGESTIONS = 3


def similar(word: str, candidates: Iterable[str], limit: int = MAX_SUGGESTIONS) -> tuple[str, ...]:
    """The candidates closest to ``word``, best first (at most ``limit``; none if none is close).

    First those that differ only in case, then those whose last '/'-separated segment
    is the word's (``cls`` for ``team/vision/cls``), then difflib's close matches.
    """
    import difflib  # start-up: only a name that was not found needs it

    pool = [candidate for candidate in dict.fromkeys(candidates) if candidate != word]
    folded = [c for c in pool if c.casefold() == word.casefold()]
    tail = word.rsplit("/", 1)[-1]
    same_tail = [c for c in pool if c.rsplit("/", 1)[-1] == tail]
    close = difflib.get_close_matches(word, pool, n=limit, cutoff=0.6)
    return tuple(dict.fromkeys([*folded, *same_tail, *close]))[:limit]
