"""Helpers for the MONAI bundle tests (no tests here): bundles made by MONAI's own tooling.

``python -m monai.bundle init_bundle`` lays out a bundle (metadata, inference config,
docs, LICENSE); :func:`make_bundle` then fills it in as a user would: the metadata
of a small 2-D spleen segmentation UNet, its ``network_def`` and its weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NETWORK_DEF: dict[str, Any] = {
    "_target_": "UNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 2,
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
}
TENSOR = {
    "type": "image",
    "format": "magnitude",
    "modality": "CT",
    "num_channels": 1,
    "spatial_shape": [64, 64],
    "dtype": "float32",
    "value_range": [0, 1],
    "is_patch_data": False,
    "channel_def": {"0": "image"},
}
METADATA = {
    "version": "1.0.0",
    "changelog": {"1.0.0": "first trained version", "0.0.1": "Initial version"},
    "task": "Spleen segmentation in abdominal CT slices",
    "description": "A small 2-D UNet that segments the spleen",
    "authors": "Imaging team",
    "copyright": "Copyright (c) Imaging team",
    "intended_use": "Research only; not for diagnosis",
    "data_source": "Synthetic slices made by the test",
    "data_type": "numpy",
    "eval_metrics": {"mean_dice": 0.91, "per_class": {"spleen": 0.88}, "note": "on 10 slices"},
    "network_data_format": {
        "inputs": {"image": TENSOR},
        "outputs": {
            "pred": {**TENSOR, "format": "labels", "num_channels": 2, "channel_def": {"0": "background", "1": "spleen"}}
        },
    },
}


def unet(network_def: dict[str, Any] = NETWORK_DEF, seed: int = 0) -> Any:
    """The network ``network_def`` defines, with weights drawn from ``seed``."""
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(**{key: value for key, value in network_def.items() if key != "_target_"})


def edit_json(path: Path, change: Any) -> None:
    """Apply ``change`` (a function that edits the parsed data in place) to a JSON file."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=4))


def make_bundle(directory: Path) -> Path:
    """A bundle made by MONAI's ``init_bundle`` command, then filled in as a user would."""
    pytest.importorskip("fire")  # MONAI's bundle command line needs it
    import torch

    subprocess.run(
        [sys.executable, "-m", "monai.bundle", "init_bundle", str(directory)], check=True, capture_output=True, timeout=300
    )
    edit_json(directory / "configs/metadata.json", lambda data: data.update(METADATA))
    # the rest of MONAI's template inference config holds $ expressions: left as is
    edit_json(directory / "configs/inference.json", lambda data: data.update(network_def=NETWORK_DEF))
    torch.save(unet().state_dict(), directory / "models/model.pt")
    return directory


def set_network(directory: Path, network_def: dict[str, Any], state_dict: Any) -> None:
    """Give a bundle another network: its ``network_def`` and its weights."""
    import torch

    edit_json(directory / "configs/inference.json", lambda data: data.update(network_def=network_def))
    torch.save(state_dict, directory / "models/model.pt")


@pytest.fixture(scope="module")
def made_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle made by MONAI's init_bundle, then filled in as a user would (once per module)."""
    return make_bundle(tmp_path_factory.mktemp("made") / "spleen_seg")


@pytest.fixture
def bundle(made_bundle: Path, tmp_path: Path) -> Path:
    """A fresh copy of the made bundle that a test may change or break."""
    return Path(shutil.copytree(made_bundle, tmp_path / "bundle"))
