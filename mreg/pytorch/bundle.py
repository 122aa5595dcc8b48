"""Build a MONAI bundle's network from its ``network_def``, with MONAI, refusing code.

MONAI's ConfigParser evaluates ``$`` strings as Python and instantiates any
``_target_``, and a bundle may come from a registry mreg does not control. So
before MONAI sees a ``network_def``, mreg checks it
(:func:`mreg.formats.bundle_config.check_network_def`: literals only, no
expressions, macros or references leaving ``network_def``) and resolves every
``_target_`` itself: it must be a ``torch.nn.Module`` class defined in
``monai.networks``, or a name the caller allows. The checked copy, with each
``_target_`` replaced by the full name of the class that was checked, is what
ConfigParser instantiates. MONAI is imported only when a network is built.
"""

from __future__ import annotations

import copy
import inspect
import os
import pydoc
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mreg.errors import InvalidInputError
from mreg.formats.bundle_config import NETWORK_KEY, check_network_def, check_plain, read_config_file
from mreg.formats.monai_bundle import INFERENCE_FILES, PROPERTIES_KEY, WEIGHTS_FILE
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.records.manifest import FileEntry, Manifest
    from mreg.registry import Registry

MONAI_NETWORKS = "monai.networks."
# monai.networks classes whose construction downloads weights or reads files named in
# their arguments; the registry holds the weights, so none of that is wanted here.
REFUSED_CLASSES = frozenset(
    {
        "monai.networks.nets.transchex.Transchex",  # downloads BERT from the Hugging Face Hub
        "monai.networks.nets.transchex.MultiModal",
        "monai.networks.nets.cell_sam_wrapper.CellSamWrapper",  # loads a SAM checkpoint file
    }
)
# Arguments that make a monai.networks class fetch pretrained weights when set.
DOWNLOAD_ARGUMENTS = ("pretrained", "pretrained_url", "weights", "checkpoint")

Target = str | type


def build_network(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    allowed_targets: Iterable[Target] = (),
    max_bytes: int | None = None,
) -> torch.nn.Module:
    """Build the network a bundle's config defines, with random weights.

    Args:
        source: a bundle directory, a config file (JSON or YAML) holding
            ``network_def``, a parsed config holding it, or the ``network_def`` map.
        allowed_targets: classes to allow besides those of ``monai.networks``, as
            classes or full names (``"mypackage.nets.MyUNet"``). Allow only your
            own code: an allowed class is constructed with the config's arguments.
        max_bytes: if given, first build on the ``meta`` device (no memory) and
            refuse a network whose parameters and buffers exceed this many bytes.

    Returns:
        The ``torch.nn.Module`` that MONAI's ConfigParser instantiates.

    Raises:
        InvalidInputError: the config is missing, malformed, or would run code or
            construct a class that is not allowed; or MONAI cannot build it.
    """
    return network_builder(source, allowed_targets=allowed_targets, max_bytes=max_bytes)()


def network_builder(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    allowed_targets: Iterable[Target] = (),
    max_bytes: int | None = None,
    label: str = "the config",
) -> Callable[[], torch.nn.Module]:
    """Check a ``network_def`` now and return a function that builds it.

    The function takes no arguments, as :func:`mreg.pytorch.load_model`'s
    ``builder`` does, so the network can be built on the ``meta`` device and
    given the registry's weights. Arguments as for :func:`build_network`;
    ``label`` names a parsed config in errors.

    Raises:
        InvalidInputError: as :func:`build_network`, before anything is built.
    """
    network_def, label = _network_def(source, label)
    checked = _resolved(network_def, label, _allowed_names(allowed_targets))

    def build() -> torch.nn.Module:
        if max_bytes is not None:
            with torch.device("meta"):
                size = _size_in_bytes(_instantiate(checked, label))
            if size > max_bytes:
                raise InvalidInputError(f"{label}: '{NETWORK_KEY}' would take {size} bytes, more than the {max_bytes} allowed")
        return _instantiate(checked, label)

    return build


def recorded_builder(registry: Registry, digest: str, manifest: Manifest) -> Callable[[], torch.nn.Module] | None:
    """The builder of a version registered from a MONAI bundle: the bundle's own
    ``network_def``, read from the stored inference config and checked as
    :func:`network_builder` does. None for a version that is not a bundle.

    Raises:
        InvalidInputError: the recorded inference config is missing, or its
            ``network_def`` would run code or construct a class that is not allowed.
    """
    recorded = manifest.properties.get(PROPERTIES_KEY)
    if not isinstance(recorded, Mapping):
        return None
    name = recorded.get("inference_config")
    if name not in INFERENCE_FILES or name not in {entry.path for entry in manifest.files}:
        raise InvalidInputError(
            f"{manifest.name}@{manifest.version} records a MONAI bundle without its inference config: pass model= or builder= to load_model"
        )
    config = read_config_file(registry.path(digest, name), name)  # bounded, parsed as data; YAML by its name
    return network_builder(config, label=f"{manifest.name}@{manifest.version}:{name}")


def bundle_weights(manifest: Manifest) -> FileEntry | None:
    """``models/model.pt`` of a version registered from a MONAI bundle (the weights MONAI
    loads), or None."""
    if not isinstance(manifest.properties.get(PROPERTIES_KEY), Mapping):
        return None
    return next((entry for entry in manifest.files if entry.path == WEIGHTS_FILE), None)


def _network_def(source: str | os.PathLike[str] | Mapping[str, Any], label: str) -> tuple[dict[str, Any], str]:
    """The network definition in ``source`` and how errors name it."""
    if isinstance(source, Mapping):
        config = dict(source)
        check_plain(config, label)
    else:
        path = Path(source)
        if path.is_dir():
            names = [name for name in INFERENCE_FILES if os.path.lexists(path / name)]
            if not names:
                raise InvalidInputError(f"{INFERENCE_FILES[0]} is missing in {printable(str(path))}")
            label, config = names[0], read_config_file(path / names[0], names[0], path)
        else:
            label, config = path.name, read_config_file(path, path.name)
    network_def = config.get(NETWORK_KEY, config if "_target_" in config else None)
    if network_def is None:
        raise InvalidInputError(f"{label} has no '{NETWORK_KEY}': MONAI builds the bundle's network from it")
    check_network_def(network_def, label)
    return network_def, label


def _allowed_names(allowed: Iterable[Target]) -> frozenset[str]:
    names = set()
    for target in allowed:
        if isinstance(target, type):
            names.add(f"{target.__module__}.{target.__qualname__}")
        elif isinstance(target, str) and "." in target:
            names.add(target)
        else:
            raise InvalidInputError(f"allowed targets are classes or full names such as 'pkg.nets.MyNet', not {printable(target)}")
    return frozenset(names)


def _resolved(network_def: dict[str, Any], label: str, allowed: frozenset[str]) -> dict[str, Any]:
    """A copy of ``network_def`` with every ``_target_`` checked and replaced by its full class name."""
    checked = copy.deepcopy(network_def)
    locator = None
    pending: list[tuple[Any, str]] = [(checked, NETWORK_KEY)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, dict):
            if "_target_" in item:
                if locator is None:
                    from monai.bundle import ComponentLocator  # start-up: monai, only when a network is built

                    locator = ComponentLocator()
                item["_target_"] = _target_class(item["_target_"], item, where, label, allowed, locator)
            pending.extend((child, f"{where}::{key}") for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, f"{where}::{index}") for index, child in enumerate(item))
    return checked


def _target_class(target: str, item: dict[str, Any], where: str, label: str, allowed: frozenset[str], locator: Any) -> str:
    """The full name of the class ``target`` names, if it may be constructed."""
    shown = f"{label}: the _target_ {printable(target, 60)} of {printable(where, 60)}"
    if target in allowed:
        if not inspect.isclass(_locate(target)):
            raise InvalidInputError(f"{shown} is allowed but names no class")
        return target
    full = target
    if "." not in target:  # a short name: find it as MONAI's ConfigParser would
        module = locator.get_component_module_name(target)
        module = module[0] if isinstance(module, list) else module
        if module is None:
            raise InvalidInputError(f"{shown} is not a class MONAI knows")
        full = f"{module}.{target}"
    found = _locate(full) if full.startswith(MONAI_NETWORKS) else None
    if not (inspect.isclass(found) and issubclass(found, torch.nn.Module) and found.__module__.startswith(MONAI_NETWORKS)):
        raise InvalidInputError(
            f"{shown} is not a network class of monai.networks; "
            "mreg builds only those, and classes you pass in allowed_targets"
        )
    name = f"{found.__module__}.{found.__qualname__}"
    if name in REFUSED_CLASSES:
        raise InvalidInputError(f"{shown} downloads or reads files as it is built; refused")
    for argument in DOWNLOAD_ARGUMENTS:
        if item.get(argument) not in (None, False):
            raise InvalidInputError(f"{shown} sets '{argument}', which fetches pretrained weights; the registry holds the weights")
    return name


def _locate(name: str) -> object:
    """The object a dotted name leads to (importing its modules), or None."""
    try:
        return pydoc.locate(name)
    except Exception:  # noqa: BLE001 - pydoc.ErrorDuringImport: a module that fails to import names nothing
        return None


def _instantiate(network_def: dict[str, Any], label: str) -> torch.nn.Module:
    from monai.bundle import ConfigParser  # MONAI only when a network is built

    parser = ConfigParser({NETWORK_KEY: copy.deepcopy(network_def)}, globals=False)  # no modules for expressions
    try:
        network = parser.get_parsed_content(NETWORK_KEY)
    except Exception as exc:  # noqa: BLE001 - any constructor error; MONAI wraps it, report its first cause
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise InvalidInputError(f"{label}: MONAI could not build '{NETWORK_KEY}': {printable(detail, 160)}") from None
    if not isinstance(network, torch.nn.Module):
        raise InvalidInputError(f"{label}: '{NETWORK_KEY}' built a {type(network).__name__}, not a torch.nn.Module")
    return network


def _size_in_bytes(network: torch.nn.Module) -> int:
    tensors = [*network.parameters(), *network.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
