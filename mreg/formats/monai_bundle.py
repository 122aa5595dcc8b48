"""MONAI bundles, read without MONAI: what a bundle promises, checked and lifted.

A MONAI bundle (https://docs.monai.io/en/latest/mb_specification.html) is a
directory holding ``configs/metadata.json``, a config that defines the network as
``network_def`` (``configs/inference.json``), the weights as a state dict in
``models/model.pt``, and ``docs/`` and ``LICENSE``. :func:`read_bundle` checks one
the way MONAI's metadata schema does (``verify_metadata`` downloads
``meta_schema_20240725.json``; its required keys are reproduced here, offline)
and lifts what an mreg version records: version, description, framework, input
shape, metrics and the tensor contract. Nothing in a bundle is run here.
"""

from __future__ import annotations

import math
import os
import stat
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mreg.errors import InvalidInputError, MregError
from mreg.formats.bundle_config import NETWORK_KEY, check_network_def, read_config_file
from mreg.records.manifest import Framework
from mreg.records.names import validate_key
from mreg.text import printable

METADATA_FILE = "configs/metadata.json"
INFERENCE_FILES = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
WEIGHTS_FILE = "models/model.pt"
MAX_TEXT = 64 << 10  # characters in one metadata text field
MAX_METRICS = 1000
PROPERTIES_KEY = "monai_bundle"

# The keys meta_schema_20240725.json requires, less "schema" (the URL verify_metadata
# downloads): MONAI's own init_bundle writes none. Bundles made before MONAI 1.4 name
# the package map optional_packages_version; utils.DEPRECATED_ID_MAPPING maps it.
REQUIRED_TEXT = ("version", "monai_version", "pytorch_version", "numpy_version", "task", "description", "authors", "copyright")
PACKAGE_KEYS = ("required_packages_version", "optional_packages_version")
OPTIONAL_TEXT = ("name", "schema", "intended_use", "data_source", "data_type", "image_classes", "label_classes", "pred_classes")
TENSOR_KEYS = ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range")  # the schema's $defs/tensor


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of ``network_data_format``: what the network takes or gives."""

    name: str
    type: str
    format: str
    num_channels: int
    spatial_shape: tuple[int | str, ...]  # ints are fixed sizes; strings such as "*" or "16*n" are MONAI's rules
    dtype: str
    value_range: tuple[float, ...]  # [min, max], or empty when unknown
    modality: str | None = None
    is_patch_data: bool | None = None
    channel_def: tuple[tuple[str, str], ...] = ()  # (channel index, meaning)

    @property
    def fixed_spatial_shape(self) -> tuple[int, ...]:
        """The spatial shape with -1 for every dimension that is not a fixed size."""
        return tuple(dim if isinstance(dim, int) and dim > 0 else -1 for dim in self.spatial_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(1, C, *spatial)``, as MONAI's ``_get_fake_input_shape`` builds a test input."""
        return (1, self.num_channels, *self.fixed_spatial_shape)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, keyed as in ``network_data_format``."""
        return {
            "type": self.type,
            "format": self.format,
            "modality": self.modality,
            "num_channels": self.num_channels,
            "spatial_shape": list(self.spatial_shape),
            "dtype": self.dtype,
            "value_range": list(self.value_range),
            "is_patch_data": self.is_patch_data,
            "channel_def": dict(self.channel_def),
        }


@dataclass(frozen=True)
class BundleInfo:
    """A checked bundle: its metadata, its network contract and where its files are."""

    directory: Path
    version: str
    task: str
    description: str
    authors: str
    copyright: str
    monai_version: str
    pytorch_version: str
    numpy_version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    inference_file: str
    network_def: Mapping[str, Any]
    network_problem: str | None = None  # why mreg would refuse to build network_def, if it would
    metrics: Mapping[str, float] = field(default_factory=dict)
    unlifted_metrics: tuple[str, ...] = ()  # eval_metrics entries that are not finite numbers under valid keys
    required_packages: Mapping[str, str] = field(default_factory=dict)
    changelog: Mapping[str, str] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    texts: Mapping[str, str] = field(default_factory=dict)  # the OPTIONAL_TEXT keys present

    @property
    def framework(self) -> Framework:
        """MONAI and the version the bundle was made with."""
        return Framework("monai", self.monai_version)

    @property
    def main_input(self) -> TensorSpec | None:
        """The input named ``image`` (the one MONAI's tools test with), else the only input."""
        named = [spec for spec in self.inputs if spec.name == "image"]
        if named:
            return named[0]
        return self.inputs[0] if len(self.inputs) == 1 else None

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """``(1, C, *spatial)`` of the main input, -1 for dynamic dimensions; None if there is none."""
        main = self.main_input
        return main.shape if main is not None else None

    @property
    def message(self) -> str:
        """The changelog line of this version, if the bundle has one."""
        return self.changelog.get(self.version, "")

    def text(self, key: str) -> str | None:
        """An optional text field: ``intended_use``, ``data_source``, ``name``..."""
        return self.texts.get(key)

    def properties(self) -> dict[str, Any]:
        """What an mreg version records of the bundle, under one key, as plain data."""
        recorded: dict[str, Any] = {
            "version": self.version,
            "task": self.task,
            "description": self.description,
            "authors": self.authors,
            "copyright": self.copyright,
            "monai_version": self.monai_version,
            "pytorch_version": self.pytorch_version,
            "numpy_version": self.numpy_version,
            "required_packages_version": dict(self.required_packages),
            **{key: value for key, value in self.texts.items() if key != "schema"},
            "references": list(self.references),
            "network_data_format": {
                "inputs": {spec.name: spec.to_dict() for spec in self.inputs},
                "outputs": {spec.name: spec.to_dict() for spec in self.outputs},
            },
            "inference_config": self.inference_file,
        }
        return {PROPERTIES_KEY: recorded}


def is_bundle(directory: str | os.PathLike[str]) -> bool:
    """True if ``directory`` looks like a MONAI bundle (it has ``configs/metadata.json``).

    :func:`read_bundle` then says what, if anything, is wrong with it.
    """
    return os.path.isdir(directory) and os.path.isfile(os.path.join(directory, METADATA_FILE))


def read_bundle(directory: str | os.PathLike[str]) -> BundleInfo:
    """Read and check a bundle directory, and lift what a version records.

    Args:
        directory: the bundle's root, holding ``configs/`` and ``models/``.

    Returns:
        The bundle's :class:`BundleInfo`.

    Raises:
        InvalidInputError: one line naming the file and key that is wrong: a missing
            or mistyped required metadata key, no ``network_def``, no ``models/model.pt``,
            a config that does not parse or is too big or too deep.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InvalidInputError(f"'{printable(str(root))}' is not a directory, so not a MONAI bundle")
    metadata = read_config_file(root / METADATA_FILE, METADATA_FILE, root)
    fields = _metadata_fields(metadata)
    metrics, unlifted = _lift_metrics(_optional_map(metadata, "eval_metrics"))
    inference_file = _inference_file(root)
    config = read_config_file(root / inference_file, inference_file, root)
    if NETWORK_KEY not in config:
        raise InvalidInputError(f"{inference_file} has no '{NETWORK_KEY}': MONAI builds the bundle's network from it")
    network_def = config[NETWORK_KEY]
    if not isinstance(network_def, dict) or not isinstance(network_def.get("_target_"), str):
        raise InvalidInputError(f"{inference_file}: '{NETWORK_KEY}' must be a map whose '_target_' names the network class")
    try:
        check_network_def(network_def, inference_file)
        problem = None
    except MregError as exc:
        problem = exc.message
    _check_weights(root)
    return BundleInfo(
        directory=root,
        inference_file=inference_file,
        network_def=network_def,
        network_problem=problem,
        metrics=metrics,
        unlifted_metrics=unlifted,
        **fields,
    )


def _inference_file(root: Path) -> str:
    for name in INFERENCE_FILES:
        if os.path.lexists(root / name):
            return name
    raise InvalidInputError(f"{INFERENCE_FILES[0]} is missing: a bundle's inference config defines '{NETWORK_KEY}'")


def _check_weights(root: Path) -> None:
    path = root / WEIGHTS_FILE
    hint = " (if the bundle lists it in large_files.yml, run: python -m monai.bundle download_large_files)"
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InvalidInputError(f"{WEIGHTS_FILE} is missing: a bundle's weights are a state dict there{hint}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {WEIGHTS_FILE}: {exc.strerror or exc}") from None
    if not os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
        raise InvalidInputError(f"{WEIGHTS_FILE} leads outside the bundle directory (a symbolic link); refused")
    if not stat.S_ISREG(status.st_mode):
        raise InvalidInputError(f"{WEIGHTS_FILE} is not a regular file")
    if status.st_size == 0:
        raise InvalidInputError(f"{WEIGHTS_FILE} is empty{hint}")


# -------------------------------------------------------------------------- metadata


def _metadata_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """The typed fields of metadata.json, every required key checked as MONAI's schema does."""
    missing = [key for key in REQUIRED_TEXT if key not in metadata]
    if not any(key in metadata for key in PACKAGE_KEYS):
        missing.append(PACKAGE_KEYS[0])
    if "network_data_format" not in metadata:
        missing.append("network_data_format")
    if missing:
        raise InvalidInputError(
            f"{METADATA_FILE} lacks required key '{missing[0]}'"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; MONAI's metadata schema requires {', '.join(REQUIRED_TEXT)}, {PACKAGE_KEYS[0]} and network_data_format"
        )
    texts = {key: _text(metadata, key) for key in REQUIRED_TEXT}
    packages_key = next(key for key in PACKAGE_KEYS if key in metadata)
    network_format = metadata["network_data_format"]
    if not isinstance(network_format, dict):
        raise _wrong(METADATA_FILE, "network_data_format", "a map with 'inputs' and 'outputs'", network_format)
    return {
        **texts,
        "inputs": _tensors(network_format, "inputs"),
        "outputs": _tensors(network_format, "outputs"),
        "required_packages": _text_map(metadata, packages_key),
        "changelog": _text_map(metadata, "changelog"),
        "references": _references(metadata),
        "texts": {key: _text(metadata, key) for key in OPTIONAL_TEXT if key in metadata},
    }


def _tensors(network_format: dict[str, Any], side: str) -> tuple[TensorSpec, ...]:
    where = f"network_data_format::{side}"
    if side not in network_format:
        raise InvalidInputError(f"{METADATA_FILE} lacks required key '{where}'")
    described = network_format[side]
    if not isinstance(described, dict):
        raise _wrong(METADATA_FILE, where, "a map of names to tensor formats", described)
    specs = []
    for name, spec in described.items():
        if isinstance(spec, (str, int, float)):  # the schema allows a plain argument; it has no tensor contract
            continue
        if not isinstance(spec, dict):
            raise _wrong(METADATA_FILE, f"{where}::{name}", "a map describing a tensor", spec)
        specs.append(_tensor(name, spec, f"{where}::{name}"))
    return tuple(specs)


def _tensor(name: str, spec: dict[str, Any], where: str) -> TensorSpec:
    missing = [key for key in TENSOR_KEYS if key not in spec]
    if missing:
        raise InvalidInputError(
            f"{METADATA_FILE} lacks required key '{where}::{missing[0]}'; a tensor format needs {', '.join(TENSOR_KEYS)}"
        )
    channels = spec["num_channels"]
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 0:
        raise _wrong(METADATA_FILE, f"{where}::num_channels", "a whole number", channels)
    shape = spec["spatial_shape"]
    if not isinstance(shape, list) or not all(_is_dim(dim) for dim in shape):
        raise _wrong(METADATA_FILE, f"{where}::spatial_shape", "a list of positive integers or rules such as \"*\"", shape)
    value_range = spec["value_range"]
    if not isinstance(value_range, list) or not all(_is_finite(v) for v in value_range):
        raise _wrong(METADATA_FILE, f"{where}::value_range", "a list of finite numbers ([min, max] or [])", value_range)
    patch = spec.get("is_patch_data")
    if patch is not None and not isinstance(patch, bool):
        raise _wrong(METADATA_FILE, f"{where}::is_patch_data", "true or false", patch)
    return TensorSpec(
        name=name,
        type=_text(spec, "type", where),
        format=_text(spec, "format", where),
        num_channels=channels,
        spatial_shape=tuple(shape),
        dtype=_text(spec, "dtype", where),
        value_range=tuple(value_range),
        modality=_text(spec, "modality", where) if spec.get("modality") is not None else None,
        is_patch_data=patch,
        channel_def=tuple(sorted(_text_map(spec, "channel_def", where).items(), key=_channel_order)),
    )


def _is_dim(dim: Any) -> bool:
    if isinstance(dim, str):
        return 0 < len(dim) <= 100
    return isinstance(dim, int) and not isinstance(dim, bool) and (dim > 0 or dim == -1)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _channel_order(item: tuple[str, str]) -> tuple[int, str]:
    index = item[0]
    return (int(index), "") if index.isascii() and index.isdigit() and len(index) <= 18 else (1 << 62, index)


def _text(raw: dict[str, Any], key: str, where: str = "") -> str:
    value = raw[key]
    name = f"{where}::{key}" if where else key
    if not isinstance(value, str):
        raise _wrong(METADATA_FILE, name, "a string", value)
    if len(value) > MAX_TEXT:
        raise InvalidInputError(f"{METADATA_FILE}: '{name}' is longer than {MAX_TEXT} characters")
    return value


def _text_map(raw: dict[str, Any], key: str, where: str = "") -> dict[str, str]:
    value = raw.get(key, {})
    name = f"{where}::{key}" if where else key
    if not isinstance(value, dict):
        raise _wrong(METADATA_FILE, name, "a map", value)
    for entry in value:
        _text(value, entry, name)
    return dict(value)


def _optional_map(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _wrong(METADATA_FILE, key, "a map", value)
    return value


def _references(metadata: dict[str, Any]) -> tuple[str, ...]:
    value = metadata.get("references", [])
    if not isinstance(value, list) or not all(isinstance(item, str) and len(item) <= MAX_TEXT for item in value):
        raise _wrong(METADATA_FILE, "references", "a list of strings", value)
    return tuple(value)


def _wrong(label: str, key: str, expected: str, value: Any) -> InvalidInputError:
    shown = type(value).__name__ if isinstance(value, (dict, list)) else printable(repr(value), 40)
    return InvalidInputError(f"{label}: '{printable(key, 80)}' must be {expected}, not {shown}")


def _lift_metrics(eval_metrics: dict[str, Any]) -> tuple[dict[str, float], tuple[str, ...]]:
    """``eval_metrics`` as mreg metrics: finite numbers, nested maps flattened with '/'.

    Entries that cannot become metrics (text, lists, NaN, keys mreg does not allow)
    are listed, not fatal: MONAI's schema lets eval_metrics hold anything.
    """
    metrics: dict[str, float] = {}
    unlifted: list[str] = []
    pending = deque(eval_metrics.items())
    while pending:
        key, value = pending.popleft()
        if isinstance(value, dict):
            pending.extend((f"{key}/{child}", item) for child, item in value.items())
            continue
        try:
            validate_key(key, "metric name")
        except MregError:
            unlifted.append(f"{printable(key)}: not a valid metric name")
            continue
        if not _is_finite(value):
            unlifted.append(f"{printable(key)}: {printable(repr(value), 30)} is not a finite number")
        elif len(metrics) >= MAX_METRICS:
            unlifted.append(f"{printable(key)}: more than {MAX_METRICS} metrics")
        else:
            metrics[key] = float(value)
    return metrics, tuple(unlifted)
