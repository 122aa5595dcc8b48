"""The model card as part of a version: the reserved metadata key ``card``, checked both ways.

A version's card lives in its manifest's free metadata under :data:`CARD_KEY`, as
:meth:`ModelCard.to_dict` gives it (every field present, so one card always encodes
the same way and a version re-added with the same card is the same version). It is
checked when a version is registered (:func:`with_card`) and again when it is read
(:func:`card_of`): a manifest may come from a store mreg does not control.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mreg.errors import CorruptObjectError, InvalidInputError
from mreg.records.card import ModelCard
from mreg.records.limits import MAX_CARD_SIZE
from mreg.text import printable

CARD_KEY = "card"

CardInput = ModelCard | Mapping[str, Any]


def as_card(card: CardInput, what: str = "the model card") -> ModelCard:
    """A :class:`ModelCard` from a card or the plain data of one, checked.

    Raises:
        InvalidInputError: ``invalid model card: ...`` naming the field at fault.
    """
    if isinstance(card, ModelCard):
        return card
    if not isinstance(card, Mapping):
        raise InvalidInputError(
            f"{what} must be a ModelCard or a map of its fields, not {type(card).__name__}: give it as {{card}}", options=("card",)
        )
    try:
        return ModelCard.from_dict(card)
    except InvalidInputError as exc:
        raise InvalidInputError(f"invalid model card: {exc.message}") from None


def with_card(properties: Any, card: CardInput | None) -> Any:
    """Free metadata with the model card under :data:`CARD_KEY`, checked and in its stored form.

    The card comes from ``card`` or from ``properties`` itself (a :class:`ModelCard` or
    its plain data; never both); an empty card is not stored. ``properties`` that are
    not a map come back as they are, for the metadata check to refuse.

    Raises:
        InvalidInputError: the card is given twice, or is not a valid card.
    """
    if not isinstance(properties, Mapping):
        return properties
    found = dict(properties)
    if card is not None and CARD_KEY in found:
        raise InvalidInputError(f"the model card is given twice: as {{card}} and as the metadata key '{CARD_KEY}'", options=("card",))
    given = found.pop(CARD_KEY, card)
    if given is None:
        return found
    checked = as_card(given, f"the metadata key '{CARD_KEY}' holds the model card, so it")
    if not checked.is_empty:
        found[CARD_KEY] = checked.to_dict()
    return found


def card_of(properties: Mapping[str, Any], digest: str) -> ModelCard | None:
    """The card a version's metadata holds, or None.

    Raises:
        CorruptObjectError: the manifest ``digest`` holds a card that is not valid.
    """
    raw = properties.get(CARD_KEY)
    if raw is None:
        return None
    try:
        return ModelCard.from_dict(raw)
    except InvalidInputError as exc:
        raise CorruptObjectError(digest, f"its model card is not valid: {exc.message}") from None


def card_from_json(data: bytes, label: str) -> ModelCard:
    """A card from the bytes of a JSON file (``mreg add --card FILE``), bounded and checked.

    Raises:
        InvalidInputError: naming ``label``: too big, not UTF-8 JSON, or not a valid card.
    """
    if len(data) > MAX_CARD_SIZE:
        raise InvalidInputError(f"{printable(label, 200)} is larger than {MAX_CARD_SIZE >> 20} MiB; a model card is a few KiB")

    def refuse_constant(name: str) -> Any:
        raise InvalidInputError(f"{printable(label, 200)} is not valid JSON: {name} is not a JSON number")

    try:
        raw = json.loads(data.decode("utf-8-sig"), parse_constant=refuse_constant)
    except UnicodeDecodeError:
        raise InvalidInputError(f"{printable(label, 200)} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{printable(label, 200)} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInputError(f"{printable(label, 200)} is nested too deeply for a model card") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{printable(label, 200)} must hold a JSON object with the card's fields")
    try:
        return ModelCard.from_dict(raw)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{printable(label, 200)} is not a valid model card: {exc.message}") from None
