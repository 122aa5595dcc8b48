"""A MONAI bundle registered as a version: what its metadata fills in, under what the caller says.

``mreg add NAME[@VERSION] BUNDLE_DIR`` stores the bundle's files as they are (so
``mreg export`` gives the bundle back, byte for byte) and reads its metadata
(:func:`mreg.formats.monai_bundle.read_bundle`, which checks it as MONAI's schema
does and runs nothing) into the version: the version number, a message, the
framework, the architecture, the input shape, the metrics, the bundle's own
record under ``monai_bundle`` and the model card. Whatever the caller gives
explicitly wins: a whole field, a metric or a metadata key of the same name, a
card field. A broken bundle is refused here, before anything is stored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mreg.errors import InvalidInputError, InvalidVersionError, MregError
from mreg.formats.bundle_card import card_from_bundle
from mreg.formats.monai_bundle import METADATA_FILE, BundleInfo, is_bundle, read_bundle
from mreg.records.card_field import CARD_KEY, as_card
from mreg.records.manifest import validate_input_shape, validate_metrics, validate_properties
from mreg.records.versions import is_version
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.operations.inputs import VersionDetails

MAX_ARCHITECTURE = 200  # characters, as for --architecture


def bundle_details(
    files: Sequence[Any], *, version: str | None, bump: str | None, details: VersionDetails
) -> tuple[str | None, VersionDetails]:
    """The version and details of a new version, filled in from a MONAI bundle if ``files`` is one.

    ``files`` is a bundle when it is a single directory holding ``configs/metadata.json``;
    anything else comes back unchanged. Without a version or ``bump``, the bundle's
    own version is the version.

    Raises:
        InvalidInputError: the bundle is broken (one line: the file and key at fault),
            or its version is not a Semantic Version and none was given.
    """
    if not isinstance(files, (list, tuple)) or len(files) != 1 or not isinstance(files[0], (str, os.PathLike)):
        return version, details
    if not is_bundle(files[0]):
        return version, details
    where = printable(os.fspath(files[0]), 200)
    try:
        info = read_bundle(files[0])
        lifted = _lifted(info, details)
    except MregError as exc:
        raise InvalidInputError(f"'{where}' is not a MONAI bundle mreg can register: {exc.message}") from None
    if version is None and bump is None:
        if not is_version(info.version):
            raise InvalidVersionError(
                f"the bundle's version '{printable(info.version, 40)}' ({METADATA_FILE}) is not a Semantic Version "
                "such as 1.0.0: give NAME@VERSION or {bump}",
                options=("bump",),
            )
        version = info.version
    return version, lifted


def _lifted(info: BundleInfo, details: VersionDetails) -> VersionDetails:
    """``details`` with what the bundle says wherever the caller said nothing."""
    card = card_from_bundle(info)
    explicit = details.properties.get(CARD_KEY)
    if explicit is not None:
        card = card.overridden_by(as_card(explicit))
    properties = {**info.properties(), **details.properties}
    if not card.is_empty:
        properties[CARD_KEY] = card.to_dict()
    return details._replace(
        framework=details.framework or info.framework,
        architecture=details.architecture or _architecture(info),
        input_shape=details.input_shape or _input_shape(info),
        metrics=validate_metrics({**info.metrics, **details.metrics}),
        properties=validate_properties(properties),
        message=details.message or info.message or info.description,
    )


def _architecture(info: BundleInfo) -> str | None:
    """The class ``network_def`` names (``UNet``, ``monai.networks.nets.UNet``), if it reads as one."""
    target = info.network_def.get("_target_")
    if isinstance(target, str) and 0 < len(target) <= MAX_ARCHITECTURE and target.isprintable() and not target.startswith("$"):
        return target
    return None


def _input_shape(info: BundleInfo) -> tuple[int, ...] | None:
    """``(1, C, *spatial)`` of the main input; None when the bundle gives none mreg can record
    (the full contract is kept under ``monai_bundle`` and in the card all the same)."""
    shape = info.input_shape
    if shape is None:
        return None
    try:
        return validate_input_shape(shape)
    except InvalidInputError:  # e.g. num_channels 0, which MONAI's schema allows
        return None
