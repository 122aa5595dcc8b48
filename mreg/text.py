"""Text shown to people: escaping and sizes, shared by every front end."""

from __future__ import annotations


def printable(text: object, limit: int = 60) -> str:
    """Shorten and escape user text so that it is safe to show in a one-line message."""
    text = text if isinstance(text, str) else repr(text)
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return shown.encode("unicode_escape").decode("ascii")


def human_size(size: int) -> str:
    """``46828555`` -> ``44.7 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def plural(count: int, noun: str) -> str:
    """``1 model``, ``2 models``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def short(digest: str | None) -> str:
    """``sha256:abcdef0123...`` -> ``sha256:abcdef01`` (what git calls an abbreviated id)."""
    return digest[:15] if digest else "-"


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def safe(text: object) -> str:
    """Text from a manifest, a log or another store, with control characters escaped.

    Escape sequences (C0, DEL, C1) and bidirectional overrides would otherwise reach
    the terminal: they could rewrite the screen or disguise what is shown.
    """
    return str(text).translate(_CONTROLS)
