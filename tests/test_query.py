"""Queries over versions: family, framework specifiers, metric thresholds, metadata, latest only."""

from __future__ import annotations

import pytest

from mreg import Registry
from mreg.errors import InvalidInputError, InvalidNameError
from mreg.query import matcher
from mreg.objects import FileEntry, Framework, Manifest


@pytest.fixture
def add(registry: Registry, make_file):
    """Register one file with the given content as ``spec``."""

    def add(spec: str, content: str, **options):
        return registry.add(spec, [make_file(f"{spec}/w.dat", content)], **options)

    return add



def test_query(registry: Registry, add) -> None:
    add("cls/resnet@1.0.0", "r1", family="resnet", framework="pytorch 2.3.0", metrics={"acc": 0.70})
    add("cls/resnet@1.1.0", "r2", family="resnet", framework="pytorch 2.13.0", metrics={"acc": 0.80}, properties={"epochs": 90})
    add("cls/vit@1.0.0", "v1", family="vit", framework="pytorch 2.5.1", metrics={"acc": 0.85, "loss": 0.3})
    add("cls/tf@1.0.0", "t1", family="vit", framework="tensorflow 2.16")

    def found(**conditions) -> list[str]:
        return [f"{v.name}@{v.version}" for v in registry.query(**conditions)]

    assert found(family="resnet") == ["cls/resnet@1.1.0", "cls/resnet@1.0.0"]
    assert found(framework="pytorch>=2.4") == ["cls/resnet@1.1.0", "cls/vit@1.0.0"]
    assert found(framework="pytorch") == ["cls/resnet@1.1.0", "cls/resnet@1.0.0", "cls/vit@1.0.0"]
    assert found(framework="tensorflow") == ["cls/tf@1.0.0"]
    assert found(metrics=["acc>=0.8"]) == ["cls/resnet@1.1.0", "cls/vit@1.0.0"]
    assert found(metrics=["acc>0.75", "loss<0.5"]) == ["cls/vit@1.0.0"]
    assert found(properties={"epochs": 90}) == found(properties={"epochs": "90"}) == ["cls/resnet@1.1.0"]
    assert found(family="resnet", latest_only=True) == ["cls/resnet@1.1.0"]
    assert found(latest_only=True, metrics=["acc<0.75"]) == []
    assert found(name="cls/vit") == ["cls/vit@1.0.0"]
    with pytest.raises(InvalidInputError):
        found(framework="pytorch>>2")
    with pytest.raises(InvalidNameError):
        found(metrics=["acc>>0.5"])


def test_matcher_on_manifests() -> None:
    manifest = Manifest(
        "demo", "1.0.0", (FileEntry("w", "sha256:" + "0" * 64, 0),),
        framework=Framework("pytorch", "2.13.0+cpu"), metrics={"acc": 0.9}, properties={"flag": True, "n": 3},
    )
    assert matcher(framework="pytorch>=2.13,<2.14")(manifest)  # local version labels are ignored
    assert not matcher(framework="pytorch<2")(manifest)
    assert not matcher(framework="torch")(manifest)
    assert matcher(properties={"flag": "true", "n": 3})(manifest)
    assert not matcher(properties={"missing": "x"})(manifest)
    assert matcher(metrics=[("acc", "==", 0.9)])(manifest)
    assert not matcher(metrics=["loss<1"])(manifest)  # a version without the metric does not match
    assert not matcher(framework="pytorch")(Manifest("demo", "1.0.0", ()))
