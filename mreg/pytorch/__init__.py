"""The PyTorch adapter: the only part of mreg that imports torch.

Import it when you work with PyTorch models (importing it imports torch)::

    from mreg import Registry
    from mreg.pytorch import register, load_model, load_state_dict

    registry = Registry.open()
    register(registry, "classifier@1.0.0", model, family="resnet", metrics={"acc": 0.91})
    model = load_model(registry, "classifier@latest", model=MyNet())

mreg imports torchvision through :func:`import_torchvision`, which copes with a
torchvision built for another torch; importing this package changes nothing else.
Where your own ``import torchvision`` fails that way, call
:func:`install_import_hook` once first.

May import: :mod:`mreg.registry` and everything below it, torch, torchvision and
(lazily, for bundles) MONAI.
"""

from mreg.pytorch.checkpoints import load_checkpoint
from mreg.pytorch.compare import compare_weight_files, diff
from mreg.pytorch.models import (
    TorchvisionBuilder,
    load_model,
    load_object,
    load_state_dict,
    read_weights,
    register,
)
from mreg.pytorch.pretrained import PretrainedModel, fetch_pretrained
from mreg.pytorch.tensors import describe
from mreg.pytorch.torchvision_compat import import_torchvision, install_import_hook

__all__ = [
    "PretrainedModel",
    "TorchvisionBuilder",
    "compare_weight_files",
    "describe",
    "diff",
    "fetch_pretrained",
    "import_torchvision",
    "install_import_hook",
    "load_checkpoint",
    "load_model",
    "load_object",
    "load_state_dict",
    "read_weights",
    "register",
]
