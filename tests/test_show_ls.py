"""What show and ls say: tensor elements named for what they are,
latest listed by ls NAME as show lists it, and "did you mean" for a mistyped name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli
from weightfiles import TENSOR_BYTES, write_safetensors

from mreg import Blob
from mreg.errors import UnknownModelError, UnknownRefError
from mreg.registry import Registry


def test_show_names_the_tensor_count_for_what_it_is(registry: Registry, tmp_path: Path) -> None:
    registry.add("net@1.0.0", [write_safetensors(tmp_path / "model.safetensors", tensors=3)], properties={"site": "A"})
    shown = run_cli("show", "net", registry=registry).stdout
    elements = 3 * TENSOR_BYTES // 4
    assert f"weights:      3 tensors, {elements:,} elements (parameters and buffers), 96.0 KiB; float32 x3" in shown
    assert "parameters:" not in shown and "  site: A" in shown  # the summary is not repeated as metadata
    stored = json.loads(run_cli("show", "net", "--json", registry=registry).stdout)["properties"]
    assert stored["parameters"] == elements and stored["weights"]["tensors"] == 3  # stored as before: old versions read the same


def test_a_parameters_value_given_by_hand_stays_metadata(registry: Registry) -> None:
    registry.add("m@1.0.0", [Blob("a.bin", lambda: [b"a"])], properties={"parameters": "about 11M"})
    shown = run_cli("show", "m", registry=registry).stdout
    assert "weights:" not in shown and "  parameters: about 11M" in shown


def test_ls_name_lists_latest_among_the_tags_as_show_does(registry: Registry) -> None:
    registry.add("m@1.0.0", [Blob("a.bin", lambda: [b"a"])], tags=["prod"])
    registry.add("m@1.1.0", [Blob("a.bin", lambda: [b"b"])])
    lines = run_cli("ls", "m", registry=registry).stdout.splitlines()
    assert lines[1].split()[:3] == ["1.1.0", registry.resolve("m@1.1.0")[:15], "latest"]
    assert lines[2].split()[2:] == ["prod"]
    assert "tags:         latest" in run_cli("show", "m", registry=registry).stdout
    entries = json.loads(run_cli("ls", "m", "--json", registry=registry).stdout)
    assert [(e["version"], e["latest"], e["tags"]) for e in entries] == [("1.1.0", True, []), ("1.0.0", False, ["prod"])]


@pytest.fixture
def models(registry: Registry) -> Registry:
    for name in ("resnet18", "resnet50", "team/vision/cls"):
        registry.add(f"{name}@1.0.0", [Blob("a.bin", lambda name=name: [name.encode()])], tags=["production"])
    registry.add("resnet18@1.1.0", [Blob("a.bin", lambda: [b"next"])])
    return registry


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        (["show", "resnt18"], "did you mean 'resnet18'"),
        (["show", "Resnet18@production"], "did you mean 'resnet18@production'"),
        (["show", "resnet18@prodution"], "did you mean 'resnet18@production'"),
        (["show", "resnet18@1.0.1"], "did you mean 'resnet18@1.0.0' or 'resnet18@1.1.0'"),
        (["ls", "resnt50"], "did you mean 'resnet50'"),
        (["log", "cls"], "did you mean 'team/vision/cls'"),
        (["tag", "resnet19@1.0.0", "x"], "did you mean 'resnet18@1.0.0'"),
    ],
)
def test_a_mistyped_name_gets_suggestions(models: Registry, args: list[str], meant: str) -> None:
    result = run_cli(*args, registry=models)
    assert_clean_failure(result, code=3)
    assert meant in result.stderr


def test_suggestions_are_data_on_the_error(models: Registry) -> None:
    with pytest.raises(UnknownRefError) as caught:
        models.get("resnet50@prodution")
    assert caught.value.suggestions == ("resnet50@production",) and "did you mean" not in str(caught.value)
    with pytest.raises(UnknownModelError) as missing:
        models.log("resnet5")
    assert missing.value.suggestions[:2] == ("resnet50", "resnet18")


def test_nothing_close_suggests_nothing(models: Registry) -> None:
    result = run_cli("show", "zzzzzz", registry=models)
    assert_clean_failure(result, code=3)
    assert "did you mean" not in result.stderr
