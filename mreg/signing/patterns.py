"""OpenSSH pattern lists (PATTERNS in ssh_config(5)), as allowed signers files use them.

A pattern list is comma-separated patterns; ``*`` matches any run of characters,
``?`` exactly one, and a pattern starting with ``!`` excludes what it matches: a
text is in the list when some plain pattern matches it and no negated one does.
Matching is case-sensitive, as ssh-keygen's is for principals and namespaces.
"""

from __future__ import annotations


def matches(text: str, pattern: str) -> bool:
    """Does ``pattern`` (with ``*`` and ``?``) match all of ``text``?

    Greedy matching that returns to the last ``*`` on a mismatch: time proportional
    to ``len(text) * len(pattern)`` at worst, never exponential.
    """
    t = p = 0
    star = -1  # index in pattern of the last '*' seen
    resume = 0  # where in text that star's match would extend to next
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            t += 1
            p += 1
        elif star >= 0:
            resume += 1
            t, p = resume, star + 1
        else:
            return False
    return all(character == "*" for character in pattern[p:])


def in_list(text: str, patterns: tuple[str, ...]) -> bool:
    """Is ``text`` in the pattern list (some plain pattern matches, no ``!`` pattern does)?"""
    found = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if matches(text, pattern[1:]):
                return False
        elif matches(text, pattern):
            found = True
    return found
