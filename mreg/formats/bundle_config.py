"""MONAI bundle config files read as plain data: bounded, never evaluated.

A bundle's configs (``configs/*.json``, or YAML) are data for MONAI's
ConfigParser, which evaluates ``$`` expressions and instantiates ``_target_``
classes. mreg only reads them: each file is size-capped, decoded with the
standard library (YAML with PyYAML's ``safe_load``, if it is installed), and walked
once to bound nesting and size and to refuse any value JSON cannot hold.
:func:`check_network_def` states which network definitions mreg is willing to hand
to MONAI later; it runs nothing either.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from mreg.errors import InvalidInputError
from mreg.text import printable

MAX_CONFIG_SIZE = 4 << 20  # bytes; real metadata and inference configs are a few KiB
MAX_DEPTH = 32  # nested maps and lists; MONAI's own configs stay under 10
MAX_VALUES = 200_000  # values in one config, counted as walked (YAML aliases share values)
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")

NETWORK_KEY = "network_def"
ID_SEPARATORS = ("::", "#")  # MONAI's id separator, and the older one it still accepts
SPECIAL_KEYS = {"_target_", "_disabled_", "_desc_", "_mode_"}  # what check_network_def lets through
_SPECIAL_KEY = re.compile(r"_\w*_", re.ASCII)
_REFERENCE = re.compile(r"@\w+(?:(?:::|#)\w+)*", re.ASCII)  # a whole-string reference, as MONAI matches it
_CLASS_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", re.ASCII)


def read_config_file(path: Path, label: str, root: Path | None = None) -> dict[str, Any]:
    """Read one config file (JSON, or YAML by its suffix) as a bounded dict.

    Args:
        path: the file.
        label: how errors name it, e.g. ``configs/inference.json``.
        root: if given, the file's real path must lie inside this directory.

    Returns:
        The top-level map, made of dicts, lists, str, int, float, bool and None.

    Raises:
        InvalidInputError: the file is missing, not a regular file, too big, leads
            outside ``root``, does not parse, or breaks a bound.
    """
    return parse_config(read_bounded(path, label, root), label)


def read_bounded(path: Path, label: str, root: Path | None = None) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_SIZE bytes (a FIFO never blocks)."""
    real = os.path.realpath(path)
    if root is not None and not real.startswith(os.path.realpath(root) + os.sep):
        raise InvalidInputError(f"{label} leads outside the bundle directory (a symbolic link); refused")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidInputError(f"{label} is missing") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {label}: {exc.strerror or exc}") from None
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInputError(f"{label} is not a regular file")
        data = handle.read(MAX_CONFIG_SIZE + 1)
    if len(data) > MAX_CONFIG_SIZE:
        raise InvalidInputError(f"{label} is larger than {MAX_CONFIG_SIZE >> 20} MiB; a bundle config is a few KiB")
    return data


def parse_config(data: bytes, label: str) -> dict[str, Any]:
    """Decode config bytes (YAML if ``label`` ends in .yaml or .yml, else JSON) and bound them.

    Raises:
        InvalidInputError: too big, not UTF-8, does not parse, not a map at the top,
            or nested or sized beyond the bounds.
    """
    if len(data) > MAX_CONFIG_SIZE:
        raise InvalidInputError(f"{label} is larger than {MAX_CONFIG_SIZE >> 20} MiB; a bundle config is a few KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{label} is not UTF-8 text") from None
    value = _load_yaml(text, label) if label.lower().endswith(YAML_SUFFIXES) else _load_json(text, label)
    if not isinstance(value, dict):
        raise InvalidInputError(f"{label} must hold a map at its top level, not {_kind(value)}")
    check_plain(value, label)
    return value


def _load_json(text: str, label: str) -> Any:
    def refuse_constant(name: str) -> Any:
        raise InvalidInputError(f"{label} is not valid JSON: {name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{label} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInputError(f"{label} is nested more than {MAX_DEPTH} levels deep") from None


def _load_yaml(text: str, label: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]  # optional: only YAML configs need it
    except ImportError:
        raise InvalidInputError(
            f"{label} is YAML, which needs PyYAML: install it (pip install pyyaml) or convert the config to JSON"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
        raise InvalidInputError(f"{label} is not valid YAML{at}: {printable(getattr(exc, 'problem', None) or exc)}") from None
    except RecursionError:
        raise InvalidInputError(f"{label} is nested more than {MAX_DEPTH} levels deep") from None


def check_plain(value: Any, label: str) -> None:
    """Refuse anything but JSON data within the bounds: depth, value count, string keys.

    The walk is iterative and counts every value it visits, so YAML aliases that
    repeat one list a billion times are refused instead of walked.

    Raises:
        InvalidInputError: naming ``label`` and what is wrong.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while pending:
        item, depth = pending.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise InvalidInputError(f"{label} holds more than {MAX_VALUES} values")
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"{label} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidInputError(f"{label} has a map key {printable(key)} that is not a string")
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif not (item is None or isinstance(item, (str, bool, int, float))):
            raise InvalidInputError(f"{label} holds a {_kind(item)}, which JSON cannot hold")


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a map", list: "a list", str: "a string"}
    return names.get(type(value), f"a {type(value).__name__}")


# --------------------------------------------------------------- network definitions


def check_network_def(network_def: Any, label: str) -> None:
    """Refuse a ``network_def`` that would make MONAI's ConfigParser run code.

    Allowed: maps, lists and literals; components whose ``_target_`` is a string
    naming a class (which class is checked when the network is built, see
    :mod:`mreg.pytorch.bundle`); the special keys ``_target_``, ``_disabled_``,
    ``_desc_`` and ``_mode_`` set to ``"default"``; and whole-string references
    ``@network_def::path`` to another part of the network definition.

    Refused: strings starting with ``$`` (Python expressions) or ``%`` (macros
    that read other files), references that leave ``network_def``, point at
    themselves or at what contains them, other special keys (``_requires_`` runs
    dependencies, ``_debug_`` starts a debugger), keys holding an id separator.

    Raises:
        InvalidInputError: naming ``label``, the place in the config and the rule.
    """
    if not isinstance(network_def, dict):
        raise InvalidInputError(f"{label}: '{NETWORK_KEY}' must be a map with a '_target_', not {_kind(network_def)}")
    if not isinstance(network_def.get("_target_"), str):
        raise InvalidInputError(f"{label}: '{NETWORK_KEY}' has no '_target_' naming the network class")
    pending: list[tuple[Any, tuple[str, ...]]] = [(network_def, (NETWORK_KEY,))]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict):
            _check_component(item, path, label)
            pending.extend((child, (*path, key)) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, (*path, str(index))) for index, child in enumerate(item))
        elif isinstance(item, str):
            _check_string(item, path, network_def, label)


def _check_component(item: dict[str, Any], path: tuple[str, ...], label: str) -> None:
    where = _place(path)
    for key in item:
        if any(separator in key for separator in ID_SEPARATORS):
            raise InvalidInputError(f"{label}: key {printable(key)} in {where} holds '::' or '#', MONAI's id separators")
        if _SPECIAL_KEY.fullmatch(key) and key not in SPECIAL_KEYS:
            raise InvalidInputError(
                f"{label}: {where} sets {printable(key)}; a network definition may use only "
                "_target_, _disabled_, _desc_ and _mode_"
            )
    target = item.get("_target_")
    if "_target_" in item and not (isinstance(target, str) and _CLASS_NAME.fullmatch(target)):
        raise InvalidInputError(
            f"{label}: the _target_ of {where} must be a class name such as UNet or "
            f"monai.networks.nets.UNet, not {printable(target, 40)}"
        )
    if item.get("_mode_", "default") != "default":
        raise InvalidInputError(f"{label}: {where} sets _mode_ {printable(item['_mode_'])}; only 'default' is allowed")
    disabled = item.get("_disabled_", False)
    if not (isinstance(disabled, bool) or disabled in ("true", "false", "True", "False")):
        raise InvalidInputError(f"{label}: _disabled_ of {where} must be true or false")


def _check_string(text: str, path: tuple[str, ...], network_def: dict[str, Any], label: str) -> None:
    where = _place(path)
    if text.startswith("$"):
        raise InvalidInputError(
            f"{label}: {where} is a Python expression ({printable(text, 40)}); "
            "mreg builds networks only from literal arguments"
        )
    if text.startswith("%"):
        raise InvalidInputError(f"{label}: {where} is a macro ({printable(text, 40)}) that reads other configs; refused")
    if not text.startswith("@"):
        return
    if not _REFERENCE.fullmatch(text):
        raise InvalidInputError(f"{label}: {where} is not a plain reference ({printable(text, 40)}); refused")
    target = tuple(re.split("::|#", text[1:]))
    if target[0] != NETWORK_KEY:
        raise InvalidInputError(
            f"{label}: {where} refers to {printable(text, 40)}, outside '{NETWORK_KEY}'; "
            f"only references inside '{NETWORK_KEY}' are followed"
        )
    if path[: len(target)] == target:
        raise InvalidInputError(f"{label}: {where} refers to {printable(text, 40)}, which contains it")
    if not _exists(network_def, target[1:]):
        raise InvalidInputError(f"{label}: {where} refers to {printable(text, 40)}, which does not exist")


def _exists(value: Any, keys: tuple[str, ...]) -> bool:
    for key in keys:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and len(key) <= 18 and int(key) < len(value):
            value = value[int(key)]
        else:
            return False
    return True


def _place(path: tuple[str, ...]) -> str:
    return printable("::".join(path), 80)
