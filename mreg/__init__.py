"""mreg: a git-style, content-addressed model registry for PyTorch teams.

Quick start::

    from mreg import Registry

    registry = Registry.init(".")                     # or Registry.open()
    registry.add("demo@1.0.0", ["model.safetensors"], metrics={"acc": 0.9})
    view = registry.get("demo@latest")
    print(view.digest, view.metrics, registry.path("demo"))

PyTorch models are registered and loaded with :mod:`mreg.pytorch`, which is the
only part of mreg that imports torch.
"""

from mreg._version import __version__
from mreg.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    MregError,
    NotFoundError,
    RegistryNotFoundError,
    VersionConflictError,
)
from mreg.operations.inputs import Blob
from mreg.records.manifest import Dataset, FileEntry, Framework, Lineage, Manifest
from mreg.records.names import Digest, Ref, format_ref, parse_ref
from mreg.records.versions import Version, parse_version
from mreg.records.views import (
    AddResult,
    ModelSummary,
    ModelVersion,
    TagChange,
    VersionEntry,
)
from mreg.registry import Registry

__all__ = [
    "AddResult",
    "Blob",
    "ConflictError",
    "CorruptObjectError",
    "Dataset",
    "Digest",
    "FileEntry",
    "Framework",
    "InvalidInputError",
    "Lineage",
    "Manifest",
    "ModelSummary",
    "ModelVersion",
    "MregError",
    "NotFoundError",
    "Ref",
    "Registry",
    "RegistryNotFoundError",
    "TagChange",
    "Version",
    "VersionConflictError",
    "VersionEntry",
    "__version__",
    "format_ref",
    "parse_ref",
    "parse_version",
]
