"""Model cards: what a model is for, what it takes, and how it was trained and tested.

A card is what a reviewer reads before a model touches a patient's images:
intended use, modality, the input contract, training and evaluation data,
performance overall and by subgroup, and known limitations. Cards are plain
data: :meth:`ModelCard.to_dict` gives maps, lists, strings and numbers that JSON
and msgpack hold as they are, always with every field, so one card always
encodes the same way; :meth:`ModelCard.from_dict` checks every field, since a card
may come from a store mreg does not control. Constructing a card checks it too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mreg.errors import InvalidInputError, MregError
from mreg.records.manifest import Dataset
from mreg.records.names import is_digest, validate_key
from mreg.text import printable

MAX_TEXT = 8192  # characters of intended use or limitations
MAX_NAME = 200  # characters of a name, modality, dtype, subgroup or channel meaning
MAX_URI = 2048
MAX_ITEMS = 256  # inputs, datasets, subgroups, channel meanings
MAX_METRICS = 1000  # metrics in one group
MAX_DIMS = 16
MAX_CHANNELS = 1 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all control characters but tab and newline
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class InputContract:
    """One input a model takes: what it is, its layout and its values."""

    name: str
    modality: str = ""
    channels: int | None = None
    spatial_shape: tuple[int, ...] | None = None  # -1 marks a dimension of any size
    dtype: str = ""
    value_range: tuple[float, float] | None = None
    channel_meanings: tuple[tuple[int, str], ...] = ()  # (channel index, what it holds), by index

    def __post_init__(self) -> None:
        _name(self.name, "input name")
        _name(self.modality, f"modality of input '{self.name}'", empty=True)
        _name(self.dtype, f"dtype of input '{self.name}'", empty=True)
        if self.channels is not None and not _whole(self.channels, 0, MAX_CHANNELS):
            raise InvalidInputError(f"channels of input '{self.name}' must be a whole number from 0 to {MAX_CHANNELS}")
        if self.spatial_shape is not None:
            object.__setattr__(self, "spatial_shape", _shape(self.spatial_shape, self.name))
        if self.value_range is not None:
            object.__setattr__(self, "value_range", _range(self.value_range, self.name))
        object.__setattr__(self, "channel_meanings", _meanings(self.channel_meanings, self.name))

    def to_dict(self) -> dict[str, Any]:
        """The contract as plain data; channel meanings keyed by the index as text."""
        return {
            "name": self.name,
            "modality": self.modality,
            "channels": self.channels,
            "spatial_shape": list(self.spatial_shape) if self.spatial_shape is not None else None,
            "dtype": self.dtype,
            "value_range": list(self.value_range) if self.value_range is not None else None,
            "channel_meanings": {str(index): meaning for index, meaning in self.channel_meanings},
        }

    @classmethod
    def from_dict(cls, raw: Any) -> InputContract:
        """Check and build a contract from :meth:`to_dict` output.

        Raises:
            InvalidInputError: a field is unknown, missing its name, or invalid.
        """
        raw = _map(raw, "an input contract", cls)
        meanings = _map(_field(raw, "channel_meanings", {}), "channel meanings")
        if not all(isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 7 for key in meanings):
            raise InvalidInputError("channel meanings must be keyed by channel indices such as \"0\"")
        return cls(
            name=raw.get("name"),  # checked by __post_init__
            modality=_field(raw, "modality", ""),
            channels=raw.get("channels"),
            spatial_shape=_tuple(raw.get("spatial_shape"), "spatial shape"),
            dtype=_field(raw, "dtype", ""),
            value_range=_tuple(raw.get("value_range"), "value range"),
            channel_meanings=tuple((int(key), meaning) for key, meaning in meanings.items()),
        )

    def summary(self) -> str:
        """One line: ``CT, 1 channel, 96x96x96, float32, values 0..1; channels: 0 image``."""
        parts = [self.modality] if self.modality else []
        if self.channels is not None:
            parts.append(f"{self.channels} channel" + ("" if self.channels == 1 else "s"))
        if self.spatial_shape is not None:
            parts.append("x".join("?" if dim == -1 else str(dim) for dim in self.spatial_shape))
        parts += [self.dtype] if self.dtype else []
        if self.value_range is not None:
            parts.append(f"values {_number(self.value_range[0])}..{_number(self.value_range[1])}")
        text = ", ".join(parts) or "no details"
        if self.channel_meanings:
            text += "; channels: " + ", ".join(f"{index} {meaning}" for index, meaning in self.channel_meanings)
        return text


@dataclass(frozen=True)
class ModelCard:
    """What a model is for, what it takes, what it learnt from and how well it does."""

    intended_use: str = ""
    modality: str = ""
    inputs: tuple[InputContract, ...] = ()
    training_data: tuple[Dataset, ...] = ()
    evaluation_data: tuple[Dataset, ...] = ()
    performance: Mapping[str, float] = field(default_factory=dict)  # metric -> value, on the evaluation data
    subgroup_performance: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # subgroup -> metric -> value
    limitations: str = ""

    def __post_init__(self) -> None:
        _long_text(self.intended_use, "intended use")
        _name(self.modality, "modality", empty=True)
        object.__setattr__(self, "inputs", _limited(self.inputs, "inputs", InputContract))
        if len({contract.name for contract in self.inputs}) != len(self.inputs):
            raise InvalidInputError("a model card names each input once")
        for what in ("training_data", "evaluation_data"):
            object.__setattr__(self, what, tuple(_dataset(item, what.replace("_", " ")) for item in _limited(getattr(self, what), what)))
        object.__setattr__(self, "performance", _metrics(self.performance, "performance"))
        groups = _map(self.subgroup_performance, "subgroup performance")
        if len(groups) > MAX_ITEMS:
            raise InvalidInputError(f"a model card holds at most {MAX_ITEMS} subgroups")
        object.__setattr__(
            self,
            "subgroup_performance",
            {_name(group, "subgroup name"): _metrics(values, f"performance of subgroup '{group}'") for group, values in groups.items()},
        )
        _long_text(self.limitations, "limitations")

    @property
    def is_empty(self) -> bool:
        """True when the card says nothing at all."""
        return self == ModelCard()

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data, every field present (JSON- and msgpack-ready)."""
        return {
            "intended_use": self.intended_use,
            "modality": self.modality,
            "inputs": [contract.to_dict() for contract in self.inputs],
            "training_data": [item.to_dict() for item in self.training_data],
            "evaluation_data": [item.to_dict() for item in self.evaluation_data],
            "performance": dict(self.performance),
            "subgroup_performance": {group: dict(values) for group, values in self.subgroup_performance.items()},
            "limitations": self.limitations,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> ModelCard:
        """Check and build a card from :meth:`to_dict` output (missing fields are empty).

        Raises:
            InvalidInputError: an unknown field, a wrong type, a bound broken.
        """
        raw = _map(raw, "a model card", cls)
        data = {name: [_data_source(item, name) for item in _list(raw.get(name), name)] for name in ("training_data", "evaluation_data")}
        return cls(
            intended_use=_field(raw, "intended_use", ""),
            modality=_field(raw, "modality", ""),
            inputs=tuple(InputContract.from_dict(item) for item in _list(raw.get("inputs"), "inputs")),
            training_data=tuple(data["training_data"]),
            evaluation_data=tuple(data["evaluation_data"]),
            performance=_field(raw, "performance", {}),
            subgroup_performance=_field(raw, "subgroup_performance", {}),
            limitations=_field(raw, "limitations", ""),
        )

    def overridden_by(self, other: ModelCard) -> ModelCard:
        """This card with every field that ``other`` fills in taken from ``other``.

        How a card given by hand completes the one a bundle's metadata supports:
        the hand-written fields win whole (a field is not merged item by item).
        """
        chosen = {f.name: getattr(other, f.name) or getattr(self, f.name) for f in fields(self)}
        return ModelCard(**chosen)

    def lines(self) -> list[str]:
        """The card as a few plain-text lines for ``mreg show`` (nothing for an empty card)."""
        rows: list[tuple[str, str]] = []
        if self.intended_use:
            rows.append(("Intended use", one_line(self.intended_use)))
        if self.modality:
            rows.append(("Modality", self.modality))
        rows += [(f"Input {contract.name}", contract.summary()) for contract in self.inputs]
        if self.training_data:
            rows.append(("Trained on", "; ".join(_describe(item) for item in self.training_data)))
        if self.evaluation_data:
            rows.append(("Evaluated on", "; ".join(_describe(item) for item in self.evaluation_data)))
        if self.performance:
            rows.append(("Performance", _scores(self.performance)))
        rows += [(f"  {group}", _scores(values)) for group, values in self.subgroup_performance.items()]
        if self.limitations:
            rows.append(("Limitations", one_line(self.limitations)))
        width = max((len(label) for label, _ in rows), default=0) + 2
        return [f"{label + ':':<{width}}{one_line(value)}" for label, value in rows]


# ------------------------------------------------------------------------ validators


def _map(value: Any, what: str, record: type | None = None) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InvalidInputError(f"{what} must be a map with text keys, not {type(value).__name__}")
    if record is not None:
        known = {f.name for f in fields(record)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise InvalidInputError(f"{what} has an unknown field '{printable(unknown[0])}'; known: {', '.join(sorted(known))}")
    return dict(value)


def _field(raw: dict[str, Any], key: str, default: Any) -> Any:
    """A field's value, or ``default`` when it is absent or null (never for another falsy value)."""
    value = raw.get(key)
    return default if value is None else value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"{what} must be a list, not {type(value).__name__}")
    return list(value)


def _tuple(value: Any, what: str) -> tuple[Any, ...] | None:
    return None if value is None else tuple(_list(value, what))


def _limited(items: Any, what: str, kind: type | None = None) -> tuple[Any, ...]:
    items = _list(items, what.replace("_", " "))
    if len(items) > MAX_ITEMS:
        raise InvalidInputError(f"a model card holds at most {MAX_ITEMS} {what.replace('_', ' ')}")
    if kind is not None and not all(isinstance(item, kind) for item in items):
        raise InvalidInputError(f"{what} must be {kind.__name__} records")
    return tuple(items)


def _text(value: Any, what: str, limit: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise InvalidInputError(f"{what} is longer than {limit} characters")
    bad = _CONTROL.search(value) or (None if multiline else re.search(r"[\n\t]", value))
    if bad:
        raise InvalidInputError(f"{what} holds a control character ({printable(bad.group())})")
    return value


def _name(value: Any, what: str, *, empty: bool = False) -> str:
    text = _text(value, what, MAX_NAME)
    if not empty and not text.strip():
        raise InvalidInputError(f"{what} is empty")
    return text


def _long_text(value: Any, what: str) -> str:
    return _text(value, what, MAX_TEXT, multiline=True)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shape(shape: Any, name: str) -> tuple[int, ...]:
    dims = _list(shape, f"spatial shape of input '{name}'")
    if not 0 < len(dims) <= MAX_DIMS or not all(_whole(dim, 1, 1 << 31) or _whole(dim, -1, -1) for dim in dims):
        raise InvalidInputError(
            f"spatial shape of input '{name}' must be 1 to {MAX_DIMS} positive sizes, -1 for any size"
        )
    return tuple(dims)


def _range(value_range: Any, name: str) -> tuple[float, float]:
    pair = _list(value_range, f"value range of input '{name}'")
    if len(pair) != 2 or not all(_finite(v) for v in pair) or pair[0] > pair[1]:
        raise InvalidInputError(f"value range of input '{name}' must be [min, max], two finite numbers")
    return (float(pair[0]), float(pair[1]))


def _meanings(meanings: Any, name: str) -> tuple[tuple[int, str], ...]:
    pairs = _limited(meanings, f"channel meanings of input '{name}'")
    checked = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and _whole(pair[0], 0, MAX_CHANNELS)):
            raise InvalidInputError(f"channel meanings of input '{name}' must be (index, text) pairs")
        checked.append((pair[0], _name(pair[1], f"meaning of channel {pair[0]} of input '{name}'")))
    if len({index for index, _ in checked}) != len(checked):
        raise InvalidInputError(f"channel meanings of input '{name}' give a channel twice")
    return tuple(sorted(checked))


def _dataset(item: Any, what: str) -> Dataset:
    if not isinstance(item, Dataset):
        raise InvalidInputError(f"{what} must be Dataset records")
    _name(item.name, f"a dataset name in {what}")
    if item.digest is not None and not (isinstance(item.digest, str) and is_digest(item.digest)):
        raise InvalidInputError(f"the digest of dataset '{printable(item.name)}' must be sha256: and 64 hex digits")
    if item.uri is not None:
        _text(item.uri, f"the uri of dataset '{printable(item.name)}'", MAX_URI)
    return item


def _data_source(raw: Any, what: str) -> Dataset:
    raw = _map(raw, f"a dataset in {what}")
    unknown = sorted(set(raw) - set(Dataset._fields))
    if unknown:
        raise InvalidInputError(f"a dataset in {what} has an unknown field '{printable(unknown[0])}'")
    return Dataset(raw.get("name"), raw.get("digest"), raw.get("uri"))  # checked next


def _metrics(values: Any, what: str) -> dict[str, float]:
    values = _map(values, what)
    if len(values) > MAX_METRICS:
        raise InvalidInputError(f"{what} holds more than {MAX_METRICS} metrics")
    for key, value in values.items():
        try:
            validate_key(key, "metric name")
        except MregError as exc:
            raise InvalidInputError(f"{what}: {exc.message}") from None
        if not _finite(value):
            raise InvalidInputError(f"{what}: metric '{key}' must be a finite number, not {printable(repr(value), 30)}")
    return {key: float(value) for key, value in values.items()}


# ------------------------------------------------------------------------- rendering


def one_line(text: str) -> str:
    return shortened(_SPACES.sub(" ", text).strip(), 300)


def shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: float) -> str:
    return f"{value:.4g}"


def _scores(values: Mapping[str, float]) -> str:
    return ", ".join(f"{metric} {_number(value)}" for metric, value in values.items())


def _describe(item: Dataset) -> str:
    return " ".join(part for part in (item.name, item.digest[:19] if item.digest else "", item.uri or "") if part)
