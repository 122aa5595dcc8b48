"""The model card a MONAI bundle's metadata supports (see :mod:`mreg.records.card`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mreg.records.card import MAX_ITEMS, MAX_METRICS, MAX_NAME, MAX_TEXT, InputContract, ModelCard, one_line, shortened
from mreg.records.manifest import Dataset

if TYPE_CHECKING:
    from mreg.formats.monai_bundle import BundleInfo, TensorSpec


def card_from_bundle(info: BundleInfo) -> ModelCard:
    """The card a MONAI bundle's metadata supports.

    Intended use, the inputs' modality and contracts, the data source as
    training data, and ``eval_metrics`` as overall performance. Bundles say
    nothing of evaluation data, subgroups or limitations: add them by hand. Text
    longer than a card allows is shortened.
    """
    modalities = dict.fromkeys(spec.modality for spec in info.inputs if spec.modality and spec.modality != "n/a")
    source = info.text("data_source")
    return ModelCard(
        intended_use=shortened(info.text("intended_use") or "", MAX_TEXT),
        modality=shortened(", ".join(modalities), MAX_NAME),
        inputs=tuple(_contract(spec) for spec in info.inputs[:MAX_ITEMS]),
        training_data=(Dataset(shortened(one_line(source), MAX_NAME)),) if source and source.strip() else (),
        performance=dict(list(info.metrics.items())[:MAX_METRICS]),
    )


def _contract(spec: TensorSpec) -> InputContract:
    indexed = [(int(key), meaning) for key, meaning in spec.channel_def if key.isascii() and key.isdigit() and len(key) <= 7]
    return InputContract(
        name=shortened(spec.name, MAX_NAME),
        modality=shortened(spec.modality or "", MAX_NAME) if spec.modality != "n/a" else "",
        channels=spec.num_channels,
        spatial_shape=spec.fixed_spatial_shape or None,
        dtype=shortened(spec.dtype, MAX_NAME),
        value_range=(float(spec.value_range[0]), float(spec.value_range[1])) if len(spec.value_range) == 2 else None,
        channel_meanings=tuple((index, shortened(one_line(meaning), MAX_NAME)) for index, meaning in indexed[:MAX_ITEMS]),
    )
