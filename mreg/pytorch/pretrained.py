"""Pretrained torchvision models, with their published metadata, and an honest fallback.

:func:`fetch_pretrained` loads a model through torchvision's weights API, which
downloads the published checkpoint (or takes it from the torch hub cache) and checks
its hash; mreg then hashes the whole cached file and checks it against the prefix in
the checkpoint's name, as torchvision does not for a file already in the cache.
When that is impossible (no network, a failed hash check) it warns, builds the
same architecture with seeded random weights, and says so: ``pretrained`` is False,
the reason is kept, and the published accuracy is recorded as *published*, never as
the registered weights' own metrics.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import torch

from mreg.pytorch.models import TorchvisionBuilder
from mreg.pytorch.torchvision_compat import import_torchvision
from mreg.records.manifest import Dataset
from mreg.storage.blobs import read_blocks
from mreg.storage.objects import ObjectStore

IMAGENET = Dataset("ImageNet-1K", uri="https://image-net.org/")
DOWNLOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class PretrainedModel:
    """A torchvision model and what to record about it."""

    model: torch.nn.Module
    builder: TorchvisionBuilder
    pretrained: bool
    reason: str | None
    family: str
    input_shape: tuple[int, ...]
    categories: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: tuple[Dataset, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)

    def registration(self) -> dict[str, Any]:
        """Keyword arguments for :func:`mreg.pytorch.register`."""
        return {
            "family": self.family,
            "architecture": self.builder.name,
            "input_shape": self.input_shape,
            "metrics": self.metrics,
            "datasets": self.datasets,
            "properties": self.properties,
            "builder": self.builder,
        }


def fetch_pretrained(name: str, *, seed: int = 0, timeout: float = DOWNLOAD_TIMEOUT) -> PretrainedModel:
    """Load torchvision's default pretrained weights for ``name`` (e.g. ``"resnet18"``).

    Falls back to the architecture with random weights (seeded, so the bytes are the
    same on every run) when the checkpoint cannot be had; see the module docstring.
    """
    models = import_torchvision().models
    weights = models.get_model_weights(name).DEFAULT
    builder = TorchvisionBuilder(name)
    try:
        checksum = _verify_cached(weights.url)  # a planted file is refused before torch reads it
        with _socket_timeout(timeout):
            model = models.get_model(name, weights=weights)
        checksum = checksum or _verify_cached(weights.url)  # and a fresh download is checked whole
        if checksum is None:
            raise CheckpointMismatchError("the checkpoint is not in the torch hub cache, so its hash cannot be checked")
        pretrained, reason = True, None
    except (OSError, RuntimeError, CheckpointMismatchError) as exc:  # URLError is an OSError
        reason = f"could not load the published checkpoint: {' '.join(str(exc).split()) or type(exc).__name__}"
        warnings.warn(f"{name}: {reason}; using seeded random weights (pretrained: false)", RuntimeWarning, stacklevel=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = models.get_model(name, weights=None)
        pretrained, checksum = False, None
    return PretrainedModel(
        model=model.eval(),
        builder=builder,
        pretrained=pretrained,
        reason=reason,
        family=_family(models, name),
        input_shape=(1, 3, *_crop_size(weights)),
        categories=tuple(weights.meta.get("categories") or ()),
        metrics=_published_metrics(weights) if pretrained else {},
        datasets=(IMAGENET,) if pretrained else (),
        properties=_properties(weights, pretrained, reason, checksum),
    )


def _properties(weights: Any, pretrained: bool, reason: str | None, checksum: str | None) -> dict[str, Any]:
    meta = weights.meta
    properties: dict[str, Any] = {
        "pretrained": pretrained,
        "torchvision_weights": str(weights),
        "categories": len(meta.get("categories") or []),
        "recipe": meta.get("recipe"),
        "checkpoint": {"url": weights.url, "sha256_prefix": _hash_prefix(weights.url)},
        "published_metrics": {"ImageNet-1K": _published_metrics(weights)},
    }
    if pretrained:
        properties["checkpoint"]["sha256"] = checksum
    else:
        properties["pretrained_reason"] = reason
    return properties


def _published_metrics(weights: Any) -> dict[str, float]:
    published = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return {key: float(value) for key, value in published.items()}


def _crop_size(weights: Any) -> tuple[int, int]:
    crop = getattr(weights.transforms(), "crop_size", None) or [224]
    return (int(crop[0]), int(crop[-1]))


def _family(models: Any, name: str) -> str:
    """The torchvision module a builder lives in: ``resnet18`` -> ``resnet``."""
    return models.get_model_builder(name).__module__.rsplit(".", 1)[-1]


def _hash_prefix(url: str) -> str:
    """torchvision checkpoints are named ``<name>-<first 8+ hex of their sha256>.pth`` (torch.hub's rule)."""
    found = re.search(r"-([a-f0-9]*)\.", os.path.basename(urlparse(url).path))
    return found.group(1) if found else ""


class CheckpointMismatchError(Exception):
    """A cached checkpoint whose SHA-256 does not start with the prefix in its name."""


def _verify_cached(url: str) -> str | None:
    """The digest of the cached checkpoint for ``url`` (None: not cached), checked against its name.

    torchvision checks the hash only while downloading; a file already in the cache
    is trusted as is. We hash the whole file and compare it with the name's prefix.

    Raises:
        CheckpointMismatchError: the file's SHA-256 does not start with the prefix.
    """
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
    try:
        with open(path, "rb") as stream:
            digest = ObjectStore.hash_stream(read_blocks(stream))[0]
    except FileNotFoundError:
        return None
    prefix = _hash_prefix(url)
    if not prefix:
        raise CheckpointMismatchError(f"the name of {path} carries no SHA-256 prefix to check it against")
    if not digest.removeprefix("sha256:").startswith(prefix.lower()):
        raise CheckpointMismatchError(f"the cached file {path} has SHA-256 {digest}, which does not start with {prefix} as its name says")
    return digest


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torch.hub downloads with no timeout; on a network that drops packets that hangs."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
