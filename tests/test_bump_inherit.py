"""--bump starts from the description of the version it follows.

Family, framework, architecture, input shape and properties carry over unless the
new version says otherwise; metrics, datasets and the message never do; the
predecessor becomes the parent. ``--no-inherit`` (``inherit=False``) and explicit
parents opt out.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from weightfiles import write_safetensors

from mreg import Blob
from mreg.errors import CorruptObjectError
from mreg.registry import Registry


def file(data: bytes, name: str = "model.bin") -> Blob:
    return Blob(name, lambda: [data])


@pytest.fixture
def described(registry: Registry) -> Registry:
    registry.add(
        "cls@1.0.0", [file(b"one")], family="resnet", framework="pytorch 2.1.0", architecture="resnet18", input_shape="1,3,224,224",
        properties={"site": "A", "modality": "CXR"}, metrics={"auc": 0.9}, datasets=["cxr-v3"], message="first",
    )
    return registry


def test_a_bumped_version_starts_from_its_predecessors_description(described: Registry) -> None:
    result = described.add("cls", [file(b"two")], bump="minor", metrics={"auc": 0.93}, message="retrained")
    new, old = described.get("cls@1.1.0"), described.get("cls@1.0.0")
    assert result.version == "1.1.0"
    assert (new.manifest.family, new.manifest.architecture, new.manifest.input_shape) == ("resnet", "resnet18", (1, 3, 224, 224))
    assert str(new.manifest.framework) == "pytorch 2.1.0"
    assert dict(new.manifest.properties) == {"site": "A", "modality": "CXR"}
    assert new.lineage.parents == (old.digest,)
    assert dict(new.metrics) == {"auc": 0.93} and new.lineage.message == "retrained" and new.lineage.datasets == ()
    listed = json.loads(run_cli("ls", "cls", "--meta", "site=A", "--json", registry=described).stdout)
    assert [entry["version"] for entry in listed] == ["1.1.0", "1.0.0"]  # --meta queries find it


def test_what_the_new_version_says_wins_and_metrics_are_never_inherited(described: Registry) -> None:
    described.add("cls", [file(b"two")], bump="patch", family="densenet", properties={"site": "B"})
    new = described.get("cls@1.0.1").manifest
    assert new.family == "densenet" and new.architecture == "resnet18"
    assert dict(new.properties) == {"site": "B", "modality": "CXR"} and dict(new.metrics) == {}


def test_it_follows_the_highest_version_as_bump_does(described: Registry) -> None:
    described.add("cls@2.0.0", [file(b"big")], family="vit", architecture="vit_b_16")
    described.add("cls", [file(b"next")], bump="minor")
    new = described.get("cls@2.1.0").manifest
    assert (new.family, new.architecture, new.input_shape) == ("vit", "vit_b_16", None)
    assert new.lineage.parents == (described.resolve("cls@2.0.0"),)


def test_no_inherit_and_explicit_parents_opt_out(described: Registry) -> None:
    described.add("cls", [file(b"two")], bump="minor", inherit=False)
    bare = described.get("cls@1.1.0").manifest
    assert (bare.family, bare.architecture, bare.input_shape, dict(bare.properties), bare.lineage.parents) == (None, None, None, {}, ())
    described.add("other@1.0.0", [file(b"other")])
    described.add("cls", [file(b"three")], bump="minor", parents=["other@1.0.0"])
    chosen = described.get("cls@1.2.0").manifest
    assert chosen.lineage.parents == (described.resolve("other@1.0.0"),) and chosen.family is None
    result = run_cli("add", "cls", "--bump", "patch", "--no-inherit", str(described.path("cls@1.0.0")), registry=described)
    assert result.exit_code == 0 and described.get("cls@1.2.1").manifest.lineage.parents == ()


def test_the_cli_bump_inherits(described: Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "w.bin"
    path.write_bytes(b"cli")
    assert run_cli("add", "cls", str(path), "--bump", "minor", registry=described).exit_code == 0
    shown = run_cli("show", "cls@1.1.0", registry=described).stdout
    assert "family:       resnet" in shown and "parent:     cls@1.0.0" in shown and "site: A" in shown


def test_the_tensor_summary_of_the_predecessors_files_is_not_inherited(registry: Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    weights = tmp_path / "model.safetensors"
    write_safetensors(weights)
    registry.add("net@1.0.0", [weights], properties={"site": "A"})
    assert "parameters" in registry.get("net@1.0.0").manifest.properties
    registry.add("net", [file(b"an onnx file", "model.onnx")], bump="minor")
    assert dict(registry.get("net@1.1.0").manifest.properties) == {"site": "A"}
    registry.add("net", [weights], bump="minor")
    assert registry.get("net@1.2.0").manifest.properties["parameters"] == registry.get("net@1.0.0").manifest.properties["parameters"]


def test_an_unreadable_predecessor_stops_the_bump_before_anything_is_stored(described: Registry) -> None:
    path = described.objects.object_path(described.resolve("cls@1.0.0"))
    path.chmod(0o644)
    path.write_bytes(b"\x80")
    before = set(described.objects.iter_digests())
    with pytest.raises(CorruptObjectError):
        described.add("cls", [file(b"never stored")], bump="minor")
    assert set(described.objects.iter_digests()) == before
    described.add("cls", [file(b"stored")], bump="minor", inherit=False)  # the way out
    assert described.get("cls@1.1.0").lineage.parents == ()
