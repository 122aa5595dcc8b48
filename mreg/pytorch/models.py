"""Register PyTorch models as versions, and load them back.

Weights are stored as safetensors (no code runs when they are loaded). Loading
memory-maps the stored bytes; :func:`load_model` builds the architecture on the
``meta`` device (no random initialisation) and assigns the mapped tensors, so it
costs little more than reading the file.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mreg.errors import InvalidInputError
from mreg.formats.containers import is_safetensors_name, is_weights_name
from mreg.operations.inputs import Blob, FileSource
from mreg.operations.listing import named_file
from mreg.operations.notes import warn_if_deprecated
from mreg.pytorch.bundle import bundle_weights, recorded_builder
from mreg.pytorch.checkpoints import as_state_dict, load_segments
from mreg.pytorch.tensors import describe, read_safetensors, safetensors_blocks
from mreg.pytorch.torchvision_compat import import_torchvision
from mreg.records.manifest import Dataset, FileEntry, Framework

if TYPE_CHECKING:
    from mreg.records.versions import Bump
    from mreg.records.views import AddResult
    from mreg.registry import Registry

WEIGHTS_FILE = "model.safetensors"
StateDict = Mapping[str, torch.Tensor]
Builder = Callable[[], torch.nn.Module]


@dataclass(frozen=True)
class TorchvisionBuilder:
    """How to rebuild a torchvision architecture: ``torchvision.models.get_model(name, **kwargs)``."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"library": "torchvision", "name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> TorchvisionBuilder | None:
        """The builder recorded in a manifest's metadata, if any (never code: a name and arguments)."""
        raw = properties.get("builder")
        if not isinstance(raw, Mapping) or raw.get("library") != "torchvision":
            return None
        name, kwargs = raw.get("name"), raw.get("kwargs") or {}
        if not isinstance(name, str) or not isinstance(kwargs, Mapping):
            raise InvalidInputError("the recorded builder is malformed")
        return cls(name, dict(kwargs))

    def build(self) -> torch.nn.Module:
        """Build the architecture with random weights (no download)."""
        models = import_torchvision().models
        if self.name not in models.list_models():
            raise InvalidInputError(f"torchvision has no model named '{self.name}'")
        return models.get_model(self.name, weights=None, **self.kwargs)


def register(
    registry: Registry,
    spec: str,
    model: torch.nn.Module | StateDict,
    *,
    bump: Bump | None = None,
    family: str | None = None,
    architecture: str | None = None,
    input_shape: Sequence[int] | None = None,
    metrics: Mapping[str, float] | None = None,
    datasets: Iterable[str | Dataset] = (),
    parents: Iterable[str] = (),
    message: str = "",
    tags: Iterable[str] = (),
    properties: Mapping[str, Any] | None = None,
    builder: TorchvisionBuilder | None = None,
    extra_files: Sequence[FileSource] = (),
) -> AddResult:
    """Register an ``nn.Module`` (its state dict) or a state dict as a version.

    The weights are stored as ``model.safetensors``; tensor count, dtypes, bytes,
    parameter count and the PyTorch version are recorded for you. Pass ``builder``
    for torchvision architectures so :func:`load_model` can rebuild them alone.

    Returns:
        The :class:`~mreg.AddResult` of :meth:`mreg.Registry.add`.
    """
    if isinstance(model, torch.nn.Module):
        state_dict: StateDict = model.state_dict()
        architecture = architecture or (builder.name if builder else type(model).__name__)
    else:
        state_dict = model
    meta = {**describe(state_dict), **(properties or {})}
    if builder is not None:
        meta["builder"] = builder.to_dict()
    weights = Blob(WEIGHTS_FILE, lambda: safetensors_blocks(state_dict))
    return registry.add(
        spec,
        [weights, *extra_files],
        bump=bump,
        family=family,
        framework=Framework("pytorch", torch.__version__),
        architecture=architecture,
        input_shape=input_shape,
        metrics=metrics,
        properties=meta,
        datasets=datasets,
        parents=parents,
        message=message,
        tags=tags,
    )


def load_state_dict(
    registry: Registry, ref: str, *, file: str | None = None, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Load a version's weights as a state dict.

    ``file`` may be omitted when the version has one weights file
    (``.safetensors``, ``.pt``, ``.pth``). On the CPU the tensors are memory-mapped
    copy-on-write: writing to them never changes the registry.
    """
    entry = _weights_entry(registry, ref, file)
    return read_weights(registry, entry, device=device, label=f"{ref}:{entry.path}")


def read_weights(
    registry: Registry, entry: FileEntry, *, device: str | torch.device = "cpu", label: str = ""
) -> dict[str, torch.Tensor]:
    """Load one stored weight file (safetensors or a PyTorch checkpoint) as a state dict."""
    label = label or entry.path
    loaded = _read_file(registry, entry, device=device, label=label)
    return loaded if is_safetensors_name(entry.path) else as_state_dict(loaded, label)


def load_object(
    registry: Registry, ref: str, *, file: str | None = None, device: str | torch.device = "cpu"
) -> Any:
    """Load a version's weight file whole, as ``torch.load(weights_only=True)`` returns it.

    Unlike :func:`load_state_dict`, a nested checkpoint (model, optimizer, epoch...)
    comes back as saved; a safetensors file comes back as its state dict.
    """
    entry = _weights_entry(registry, ref, file)
    return _read_file(registry, entry, device=device, label=f"{ref}:{entry.path}")


def _read_file(registry: Registry, entry: FileEntry, *, device: str | torch.device, label: str) -> Any:
    # Each segment is opened as it is mapped, which reports a missing chunk: no stat first.
    segments = registry.segments(entry, check=False)
    if is_safetensors_name(entry.path):
        return read_safetensors(segments, device=device)
    return load_segments(segments, device=device, name=label)


def load_model(
    registry: Registry,
    ref: str,
    *,
    model: torch.nn.Module | None = None,
    builder: Builder | None = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> torch.nn.Module:
    """Load a version as a ready ``nn.Module`` in eval mode on ``device``.

    The architecture comes from, in order: ``model`` (weights are copied into it),
    ``builder`` (called without arguments), the torchvision builder recorded at
    registration, or the ``network_def`` of a version registered from a MONAI bundle
    (checked first: see :mod:`mreg.pytorch.bundle`). Nothing recorded in a manifest
    is ever imported or executed.
    """
    digest = registry.resolve(ref)
    warn_if_deprecated(registry.store, digest)  # a note may say the version should no longer be used
    state_dict = load_state_dict(registry, digest, device="cpu")
    if model is not None:
        _load_into(model, state_dict, strict=strict, assign=False)
    else:
        model = _build_and_assign(_architecture(registry, digest, builder), state_dict, strict=strict)
    return model.to(device).eval()


def _architecture(registry: Registry, ref: str, builder: Builder | None) -> Builder:
    if builder is not None:
        return builder
    manifest = registry.get(ref).manifest
    recorded = TorchvisionBuilder.from_properties(manifest.properties)
    if recorded is not None:
        return recorded.build
    bundled = recorded_builder(registry, ref, manifest)  # a MONAI bundle's own network_def
    if bundled is None:
        raise InvalidInputError(
            f"{ref} records no torchvision architecture nor MONAI bundle: pass model= or builder= to load_model"
        )
    return bundled


def _build_and_assign(builder: Builder, state_dict: StateDict, *, strict: bool) -> torch.nn.Module:
    """Build on the meta device and adopt the loaded tensors; fall back to a normal build."""
    with torch.device("meta"):
        model = builder()
    _load_into(model, state_dict, strict=strict, assign=True)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        # Some tensor is not in the state dict (a non-persistent buffer): build for real.
        model = builder()
        _load_into(model, state_dict, strict=strict, assign=False)
    return model


def _load_into(model: torch.nn.Module, state_dict: StateDict, *, strict: bool, assign: bool) -> None:
    try:
        model.load_state_dict(state_dict, strict=strict, assign=assign)
    except RuntimeError as exc:
        raise InvalidInputError(f"the weights do not fit the architecture: {exc}") from None


def _weights_entry(registry: Registry, ref: str, file: str | None) -> FileEntry:
    """The entry of the file to load: ``file``, or the version's one weight file.

    The reference is resolved once (a tag may move meanwhile) and the manifest read
    once: a load is a few milliseconds, and each extra read of it cost a fifth of one.
    """
    manifest = registry.manifest(registry.resolve(ref))
    if file is not None:
        return named_file(manifest, ref, file)
    weights = [f for f in manifest.files if is_weights_name(f.path)]
    bundled = bundle_weights(manifest) if len(weights) != 1 else None
    if bundled is not None:
        return bundled  # a MONAI bundle with several weight files: MONAI loads models/model.pt
    if len(weights) != 1:
        names = ", ".join(f.path for f in weights) or "none"
        raise InvalidInputError(f"{ref} has {len(weights)} weight files ({names}): pass file= to choose one")
    return weights[0]
