"""The store's git-style config file, ``.mreg/config``.

The syntax is git's: ``[section]`` or ``[section "subsection"]`` headers, then
``key = value`` lines; ``#`` and ``;`` start comments. Section and key names are
case-insensitive, subsections are not, and a key may repeat (``fallback.url`` does:
the order of the lines is the order of the fallbacks). Keys are written
``section.key`` or ``section.subsection.key``, as ``git config`` spells them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from mreg.errors import InvalidInputError, MregError
from mreg.storage.files import write_atomically
from mreg.storage.locks import FileLock
from mreg.text import printable

_SECTION = re.compile(r'\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]', re.ASCII)
_ENTRY = re.compile(r"([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*))?", re.ASCII)
_SECRET_KEY = re.compile(r"secret|passw|token|credential|access-key|account-key|sas|private", re.ASCII | re.IGNORECASE)
_KEY = re.compile(r"([A-Za-z0-9-]+)(?:\.(.+))?\.([A-Za-z][A-Za-z0-9-]*)", re.ASCII)


class ConfigError(MregError):
    """A config file that cannot be parsed."""


class Entry(NamedTuple):
    """One ``key = value`` line, with the section it is in."""

    section: str  # lower case
    subsection: str | None
    key: str  # lower case
    value: str

    @property
    def name(self) -> str:
        middle = f".{self.subsection}" if self.subsection is not None else ""
        return f"{self.section}{middle}.{self.key}"


def parse_key(name: str) -> tuple[str, str | None, str]:
    """``fallback.url`` -> ``("fallback", None, "url")``; ``remote.origin.url`` -> subsection ``origin``."""
    match = _KEY.fullmatch(name)
    if match is None:
        raise InvalidInputError(f"invalid config key '{printable(name)}': expected SECTION.KEY or SECTION.NAME.KEY")
    return match[1].lower(), match[2], match[3].lower()


class Config:
    """The entries of one config file, in file order."""

    def __init__(self, path: Path, entries: list[Entry]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def load(cls, path: Path) -> Config:
        """Read a config file (a missing file is an empty config)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, [])
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text") from None
        return cls(path, _parse(text, path))

    def get_all(self, name: str) -> list[str]:
        """Every value of a key, in file order."""
        wanted = parse_key(name)
        return [e.value for e in self.entries if (e.section, e.subsection, e.key) == wanted]

    def get(self, name: str) -> str | None:
        """The last value of a key, as git reads it, or None."""
        values = self.get_all(name)
        return values[-1] if values else None

    def subsections(self, section: str) -> list[str]:
        """The subsections of a section, e.g. the names of remotes."""
        found: list[str] = []
        for entry in self.entries:
            if entry.section == section.lower() and entry.subsection is not None and entry.subsection not in found:
                found.append(entry.subsection)
        return found

    def encode(self) -> str:
        """The file's text (comments are not kept)."""
        lines: list[str] = []
        current = None
        for entry in self.entries:
            if (entry.section, entry.subsection) != current:
                current = (entry.section, entry.subsection)
                quoted = entry.subsection.replace("\\", "\\\\").replace('"', '\\"') if entry.subsection is not None else None
                lines.append(f'[{entry.section} "{quoted}"]' if quoted is not None else f"[{entry.section}]")
            lines.append(f"\t{entry.key} = {_quote(entry.value)}")
        return "\n".join(lines) + "\n"


def update(path: Path, name: str, value: str | None, *, add: bool = False) -> Config:
    """Change a key under the config lock: set (replacing every value), add, or unset (None).

    Returns:
        The config as written.
    """
    section, subsection, key = parse_key(name)
    if value is not None and ("\n" in value or "\0" in value):
        raise InvalidInputError("config values are one line of text")
    if value is not None:
        _refuse_secret(key, value)
    with FileLock(path.with_name(path.name + ".lock"), what="the config file"):
        config = Config.load(path)
        same = [i for i, e in enumerate(config.entries) if (e.section, e.subsection, e.key) == (section, subsection, key)]
        entries = list(config.entries)
        if value is None or not add:
            entries = [e for i, e in enumerate(entries) if i not in same]
        if value is not None:
            new = Entry(section, subsection, key, value)
            in_section = [i for i, e in enumerate(entries) if (e.section, e.subsection) == (section, subsection)]
            entries.insert(in_section[-1] + 1 if in_section else len(entries), new)
        written = Config(path, entries)
        write_atomically(path, written.encode().encode("utf-8"))
    return written


def _refuse_secret(key: str, value: str) -> None:
    """Secrets stay out of ``.mreg/config`` (it is copied, shared, committed)."""
    if _SECRET_KEY.search(key):
        raise InvalidInputError(
            f"'{printable(key)}' looks like a secret, and mreg never writes secrets to its config: "
            "use the provider's environment variables or files (AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, "
            "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY)"
        )


def _parse(text: str, path: Path) -> list[Entry]:
    entries: list[Entry] = []
    section: tuple[str, str | None] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        header = _SECTION.fullmatch(line)
        if header is not None:
            subsection = re.sub(r"\\(.)", r"\1", header[2]) if header[2] is not None else None
            section = (header[1].lower(), subsection)
            continue
        entry = _ENTRY.fullmatch(line)
        if entry is None or section is None:
            raise ConfigError(f"{path} line {number} cannot be parsed: {printable(raw)}")
        # "key" alone means true, as in git; "key =" is the empty string.
        value = "true" if entry[2] is None else _value(entry[2], f"{path} line {number}")
        entries.append(Entry(section[0], section[1], entry[1].lower(), value))
    return entries


def _value(raw: str, where: str) -> str:
    """A value as git reads it: quotes protect '#', ';' and spaces; backslash escapes."""
    chars: list[tuple[str, bool]] = []  # (character, inside quotes)
    quoted = False
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            if index + 1 == len(raw):
                raise ConfigError(f"{where}: the value ends with a backslash")
            chars.append(({"n": "\n", "t": "\t"}.get(raw[index + 1], raw[index + 1]), True))
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "#;":
            break
        else:
            chars.append((char, quoted))
        index += 1
    if quoted:
        raise ConfigError(f"{where}: a quote is not closed")
    while chars and chars[-1][0].isspace() and not chars[-1][1]:
        chars.pop()
    while chars and chars[0][0].isspace() and not chars[0][1]:
        chars.pop(0)
    return "".join(char for char, _ in chars)


def _quote(value: str) -> str:
    if not value or value != value.strip() or any(c in value for c in '#;"\\'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value
