"""Import torchvision even when its compiled ops do not match the installed torch.

torchvision ships a C++ library (``torchvision/_C``) of detection ops. When the
installed torchvision was built for another torch (for example a CUDA torchvision
beside a CPU torch), that library cannot load. torchvision tolerates this for its
ops, but its ``_meta_registrations`` module then registers fake kernels for
``torchvision::nms`` and ``torchvision::qnms`` unconditionally, and
``import torchvision`` fails with ``RuntimeError: operator torchvision::nms does
not exist``.

The fix: before importing torchvision, try to load ``_C`` ourselves; if it cannot
load, define the schemas of those two ops (copied from torchvision's C++ source) so
the registrations succeed. Models, transforms and weights metadata then work; the
detection ops themselves stay unavailable, as torchvision itself reports. Where the
builds match, ``_C`` loads and nothing is defined.

mreg's own imports of torchvision go through :func:`import_torchvision`. Importing
:mod:`mreg.pytorch` changes nothing in how other code imports: a user whose own
``import torchvision`` fails this way opts in with :func:`install_import_hook`, and
then it takes the same step (once, when torchvision is first imported; nothing is
loaded before).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

import torch

_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# The library that holds our schema definitions must live as long as the process:
# torch removes a Library's registrations when the object is garbage-collected.
_fallback_library: torch.library.Library | None = None


def import_torchvision() -> ModuleType:
    """``import torchvision``, defining its missing op schemas first when needed."""
    if "torchvision" not in sys.modules:
        _ensure_op_schemas()
    return importlib.import_module("torchvision")


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    """Defines the missing op schemas just before torchvision is first imported, then steps aside."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "torchvision":
            try:
                _ensure_op_schemas()
            except ImportError:
                pass  # not installed: the normal import reports it
        return None  # the normal finders import it


def install_import_hook() -> None:
    """Make a later ``import torchvision`` work where its compiled ops do not load."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionHook())


def uninstall_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionHook)]


def _ensure_op_schemas() -> None:
    global _fallback_library
    uninstall_import_hook()  # looking torchvision up below must not re-enter through the hook
    if _fallback_library is not None or _ops_defined() or _load_compiled_ops():
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _OP_SCHEMAS:
        library.define(schema)
    _fallback_library = library


def _ops_defined() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - raises when the op is not registered
        return True
    except (AttributeError, RuntimeError):
        return False


def _load_compiled_ops() -> bool:
    """Load torchvision's ``_C`` library the way torchvision does; False if it cannot."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed: pip install -r requirements.txt")
    loader = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    extension = importlib.machinery.FileFinder(spec.submodule_search_locations[0], loader).find_spec("_C")
    if extension is None or extension.origin is None:
        return False
    try:
        torch.ops.load_library(extension.origin)
    except (OSError, RuntimeError):
        return False
    return _ops_defined()
