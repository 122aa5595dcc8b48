"""MONAI bundles: reading and checking them without MONAI, model cards, and building
their networks with MONAI while refusing configs that would run code.

The bundles are made with MONAI's own tooling (``python -m monai.bundle init_bundle``)
and checked with MONAI's own loaders.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
monai = pytest.importorskip("monai")
msgpack = pytest.importorskip("msgpack")

from monai_bundles import NETWORK_DEF, bundle, made_bundle, make_bundle  # noqa: F401 - fixtures
from monai_bundles import edit_json as _edit
from monai_bundles import unet as _unet

from mreg import InvalidInputError
from mreg.formats.bundle_card import card_from_bundle
from mreg.formats.bundle_config import MAX_CONFIG_SIZE, check_network_def
from mreg.formats.monai_bundle import is_bundle, read_bundle
from mreg.pytorch.bundle import build_network, network_builder
from mreg.records.card import InputContract, ModelCard
from mreg.records.manifest import Dataset, Framework, validate_properties

# ------------------------------------------------------------------------ read_bundle


def test_read_bundle_lifts_what_a_version_records(bundle: Path) -> None:
    assert is_bundle(bundle)
    info = read_bundle(bundle)
    assert info.version == "1.0.0"
    assert info.message == "first trained version"
    assert info.task.startswith("Spleen segmentation")
    assert info.framework == Framework("monai", monai.__version__)
    assert info.pytorch_version and info.numpy_version
    assert info.input_shape == (1, 1, 64, 64)
    assert [spec.name for spec in info.inputs] == ["image"] and [spec.name for spec in info.outputs] == ["pred"]
    assert info.outputs[0].channel_def == (("0", "background"), ("1", "spleen"))
    assert info.metrics == {"mean_dice": 0.91, "per_class/spleen": 0.88}
    assert len(info.unlifted_metrics) == 1 and "note" in info.unlifted_metrics[0]
    assert info.text("intended_use") == "Research only; not for diagnosis"
    assert info.network_def["_target_"] == "UNet" and info.network_problem is None
    recorded = info.properties()["monai_bundle"]
    assert recorded["network_data_format"]["inputs"]["image"]["spatial_shape"] == [64, 64]
    assert validate_properties(info.properties())  # what mreg would store is valid metadata


def test_reading_a_bundle_imports_neither_monai_nor_torch(bundle: Path) -> None:
    script = (
        "import sys; from mreg.formats.monai_bundle import read_bundle; from mreg.formats.bundle_card import card_from_bundle; "
        f"card_from_bundle(read_bundle({str(bundle)!r})); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'monai', 'torch', 'numpy', 'yaml'}))"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_dynamic_spatial_dimensions_become_minus_one(bundle: Path) -> None:
    def dynamic(data: dict[str, Any]) -> None:
        data["network_data_format"]["inputs"]["image"]["spatial_shape"] = ["16*n", 96, "*"]

    _edit(bundle / "configs/metadata.json", dynamic)
    assert read_bundle(bundle).input_shape == (1, 1, -1, 96, -1)


def test_an_input_not_named_image_is_used_when_it_is_the_only_one(bundle: Path) -> None:
    def rename(data: dict[str, Any]) -> None:
        inputs = data["network_data_format"]["inputs"]
        inputs["scan"] = inputs.pop("image")

    _edit(bundle / "configs/metadata.json", rename)
    assert read_bundle(bundle).input_shape == (1, 1, 64, 64)


def test_metadata_of_bundles_made_before_monai_1_4_is_accepted(bundle: Path) -> None:
    def older(data: dict[str, Any]) -> None:
        data["optional_packages_version"] = data.pop("required_packages_version")

    _edit(bundle / "configs/metadata.json", older)
    assert read_bundle(bundle).version == "1.0.0"


def test_a_yaml_inference_config_is_read(bundle: Path) -> None:
    yaml = pytest.importorskip("yaml")
    inference = json.loads((bundle / "configs/inference.json").read_text())
    (bundle / "configs/inference.json").unlink()
    (bundle / "configs/inference.yaml").write_text(yaml.safe_dump(inference))
    info = read_bundle(bundle)
    assert info.inference_file == "configs/inference.yaml" and info.network_def == NETWORK_DEF
    assert isinstance(build_network(bundle), torch.nn.Module)


def test_a_yaml_config_without_pyyaml_says_what_to_do(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bundle / "configs/inference.json").rename(bundle / "configs/inference.yaml")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now fails
    with pytest.raises(InvalidInputError, match=r"configs/inference.yaml is YAML.*install it.*or convert"):
        read_bundle(bundle)


def test_is_bundle_is_false_for_other_directories(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain/model.pt").write_bytes(b"x")
    assert not is_bundle(tmp_path / "plain") and not is_bundle(tmp_path / "missing")


def _delete(key: str) -> Any:
    return lambda data: data.pop(key)


def _set(value: Any, *path: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_delete("authors"), r"configs/metadata.json lacks required key 'authors'"),
        (_delete("monai_version"), r"lacks required key 'monai_version'"),
        (_delete("required_packages_version"), r"lacks required key 'required_packages_version'"),
        (_delete("network_data_format"), r"lacks required key 'network_data_format'"),
        (_set(5, "task"), r"configs/metadata.json: 'task' must be a string, not 5"),
        (_set(["1.0"], "version"), r"'version' must be a string"),
        (_set({"image": {}}, "network_data_format"), r"lacks required key 'network_data_format::inputs'"),
        (_set({}, "network_data_format", "inputs", "image"), r"'network_data_format::inputs::image::type'"),
        (_set("1", "network_data_format", "inputs", "image", "num_channels"), r"num_channels' must be a whole number"),
        (_set([64, 0], "network_data_format", "inputs", "image", "spatial_shape"), r"spatial_shape' must be a list"),
        (_set([0, "x"], "network_data_format", "inputs", "image", "value_range"), r"value_range' must be a list of finite"),
        (_set({"0": 1}, "network_data_format", "inputs", "image", "channel_def"), r"channel_def::0' must be a string"),
        (_set("old", "changelog"), r"'changelog' must be a map"),
        (_set([1], "references"), r"'references' must be a list of strings"),
        (_set("x" * 70_000, "description"), r"'description' is longer than"),
    ],
)
def test_broken_metadata_is_refused_naming_file_and_key(bundle: Path, change: Any, expected: str) -> None:
    _edit(bundle / "configs/metadata.json", change)
    with pytest.raises(InvalidInputError, match=expected):
        read_bundle(bundle)


def test_a_bundle_without_network_def_is_refused(bundle: Path) -> None:
    _edit(bundle / "configs/inference.json", _delete("network_def"))
    with pytest.raises(InvalidInputError, match=r"configs/inference.json has no 'network_def'"):
        read_bundle(bundle)


def test_a_network_def_without_target_is_refused(bundle: Path) -> None:
    _edit(bundle / "configs/inference.json", _set({"spatial_dims": 2}, "network_def"))
    with pytest.raises(InvalidInputError, match=r"'network_def' must be a map whose '_target_'"):
        read_bundle(bundle)


def test_a_bundle_without_an_inference_config_is_refused(bundle: Path) -> None:
    (bundle / "configs/inference.json").unlink()
    with pytest.raises(InvalidInputError, match=r"configs/inference.json is missing"):
        read_bundle(bundle)


@pytest.mark.parametrize("weights", ["missing", "empty", "directory"])
def test_a_bundle_without_usable_weights_is_refused(bundle: Path, weights: str) -> None:
    path = bundle / "models/model.pt"
    path.unlink()
    if weights == "empty":
        path.write_bytes(b"")
    elif weights == "directory":
        path.mkdir()
    with pytest.raises(InvalidInputError, match=r"models/model.pt (is missing|is empty|is not a regular file)"):
        read_bundle(bundle)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"version": "1.0.0",', r"configs/metadata.json is not valid JSON: .* at line 1"),
        (b'{"version": NaN}', r"NaN is not a JSON number"),
        (b"\xff\xfe{}", r"is not UTF-8"),
        (b"[1, 2]", r"must hold a map at its top level, not a list"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", r"nested more than 32 levels"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"nested more than 32 levels"),
        (b'{"a": "' + b"x" * MAX_CONFIG_SIZE + b'"}', r"larger than 4 MiB"),
    ],
    ids=["truncated", "nan", "not-utf8", "list", "deep", "very-deep", "huge"],
)
def test_unreadable_metadata_is_refused(bundle: Path, content: bytes, expected: str) -> None:
    (bundle / "configs/metadata.json").write_bytes(content)
    with pytest.raises(InvalidInputError, match=expected):
        read_bundle(bundle)


def test_yaml_aliases_cannot_blow_up(bundle: Path) -> None:
    pytest.importorskip("yaml")
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]  # 10^9 values
    (bundle / "configs/inference.json").unlink()
    (bundle / "configs/inference.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match=r"inference.yaml holds more than 200000 values"):
        read_bundle(bundle)


def test_a_config_that_leads_outside_the_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text((bundle / "configs/metadata.json").read_text())
    (bundle / "configs/metadata.json").unlink()
    (bundle / "configs/metadata.json").symlink_to(outside)
    with pytest.raises(InvalidInputError, match=r"leads outside the bundle directory"):
        read_bundle(bundle)


def test_a_fifo_config_is_refused_without_blocking(bundle: Path) -> None:
    (bundle / "configs/metadata.json").unlink()
    os.mkfifo(bundle / "configs/metadata.json")
    with pytest.raises(InvalidInputError, match=r"configs/metadata.json is not a regular file"):
        read_bundle(bundle)


def test_a_network_def_mreg_would_not_build_is_read_but_flagged(bundle: Path) -> None:
    _edit(bundle / "configs/inference.json", _set("$@num_classes", "network_def", "out_channels"))
    info = read_bundle(bundle)
    assert info.network_problem is not None and "Python expression" in info.network_problem


# ---------------------------------------------------------------------- build_network


def test_build_network_loads_the_bundles_weights(bundle: Path) -> None:
    network = build_network(bundle)
    state = torch.load(bundle / "models/model.pt", weights_only=True)
    network.load_state_dict(state)  # strict: every key and shape matches
    image = torch.rand(1, 1, 64, 64)
    assert torch.equal(network.eval()(image), _unet().eval()(image))


def test_a_builder_builds_on_the_meta_device_for_load_model(bundle: Path) -> None:
    builder = network_builder(bundle / "configs/inference.json")
    with torch.device("meta"):
        network = builder()
    assert all(p.is_meta for p in network.parameters())
    network.load_state_dict(torch.load(bundle / "models/model.pt", weights_only=True), assign=True)
    assert not any(p.is_meta for p in network.parameters())


def test_a_network_larger_than_allowed_is_refused_before_it_is_allocated() -> None:
    huge = {**NETWORK_DEF, "channels": [4096, 8192, 16384]}  # ~ 10 GB of float32 parameters
    with pytest.raises(InvalidInputError, match=r"would take \d+ bytes, more than the 1000000 allowed"):
        build_network({"network_def": huge}, max_bytes=1_000_000)


def test_monai_builds_the_same_bundle_with_its_own_loaders(bundle: Path) -> None:
    """MONAI's ConfigParser reads the bundle and instantiates network_def; model.pt loads into it."""
    from monai.bundle import ConfigParser, load_bundle_config, verify_net_in_out

    parser = ConfigParser()
    parser.read_meta(str(bundle / "configs/metadata.json"))
    parser.read_config(str(bundle / "configs/inference.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models/model.pt", weights_only=True))
    assert load_bundle_config(str(bundle), "inference.json")["_meta_"]["version"] == "1.0.0"
    # MONAI's own check that network_data_format matches the network (input shape, channels).
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs/metadata.json"),
        config_file=str(bundle / "configs/inference.json"),
        device="cpu",
    )


class MyNet(torch.nn.Module):  # type: ignore[name-defined]  # torch comes from importorskip
    """A user's own network class, allowed explicitly."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(width, width)


def test_a_users_own_class_is_built_only_when_allowed() -> None:
    config = {"network_def": {"_target_": f"{__name__}.MyNet", "width": 3}}
    with pytest.raises(InvalidInputError, match=r"is not a network class of monai.networks"):
        build_network(config)
    assert isinstance(build_network(config, allowed_targets=[MyNet]), MyNet)
    assert isinstance(build_network(config, allowed_targets=[f"{__name__}.MyNet"]), MyNet)


def _hostile_configs(marker: Path) -> list[tuple[dict[str, Any], str]]:
    """network_defs that would run code, read files or fetch weights; each would touch ``marker``."""
    touch = f"touch {marker}"
    python = f"open({str(marker)!r}, 'w')"
    return [
        ({"_target_": "os.system", "command": touch}, r"not a network class of monai.networks"),
        ({"_target_": "subprocess.call", "args": ["touch", str(marker)]}, r"not a network class"),
        ({"_target_": "builtins.open", "file": str(marker), "mode": "w"}, r"not a network class"),
        ({"_target_": "monai.networks.nets.hovernet.os.system", "command": touch}, r"not a network class"),
        ({"_target_": "monai.networks.trt_compiler.TRTEngine", "plan_path": str(marker)}, r"not a network class"),
        ({"_target_": "monai.transforms.SaveImage", "output_dir": str(marker)}, r"not a network class"),
        ({"_target_": "$__import__('os').system(" + repr(touch) + ")"}, r"must be a class name"),
        ({**NETWORK_DEF, "spatial_dims": f"$__import__('os').system({touch!r}) or 2"}, r"is a Python expression"),
        ({**NETWORK_DEF, "spatial_dims": "$" + python}, r"is a Python expression"),
        ({**NETWORK_DEF, "act": {"_target_": "os.system", "command": touch}}, r"network_def::act is not a network"),
        ({**NETWORK_DEF, "spatial_dims": "%configs/other.json#x"}, r"is a macro"),
        ({**NETWORK_DEF, "spatial_dims": "@touch_it"}, r"outside 'network_def'"),
        ({**NETWORK_DEF, "spatial_dims": "@network_def"}, r"which contains it"),
        ({**NETWORK_DEF, "spatial_dims": "@network_def::missing"}, r"does not exist"),
        ({**NETWORK_DEF, "_requires_": ["$" + python]}, r"sets _requires_"),
        ({**NETWORK_DEF, "_debug_": True}, r"sets _debug_"),
        ({**NETWORK_DEF, "_mode_": "debug"}, r"only 'default' is allowed"),
        ({**NETWORK_DEF, "a::b": 1}, r"MONAI's id separators"),
        ({"_target_": "DenseNet121", "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "pretrained": True}, r"sets 'pretrained'"),
        ({"_target_": "Transchex", "in_channels": 1, "img_size": [16, 16], "patch_size": [4, 4], "num_classes": 2}, r"downloads or reads files"),
    ]


def test_hostile_network_defs_are_refused_and_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for network_def, expected in _hostile_configs(marker):
        config = {"touch_it": {"_target_": "os.system", "command": f"touch {marker}"}, "network_def": network_def}
        with pytest.raises(InvalidInputError, match=expected):
            build_network(config)
        assert not marker.exists(), network_def


def test_a_hostile_bundle_is_refused_when_its_network_is_built(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    _edit(bundle / "configs/inference.json", _set({"_target_": "os.system", "command": f"touch {marker}"}, "network_def"))
    info = read_bundle(bundle)  # reading runs nothing either
    with pytest.raises(InvalidInputError, match=r"configs/inference.json: the _target_ os.system of network_def"):
        build_network(bundle)
    assert info.network_problem is None and not marker.exists()


def test_references_inside_network_def_are_followed(bundle: Path) -> None:
    network_def = {**NETWORK_DEF, "out_channels": "@network_def::in_channels", "in_channels": 2}
    network = build_network({"network_def": network_def})
    assert network(torch.rand(1, 2, 16, 16)).shape == (1, 2, 16, 16)


def test_check_network_def_needs_no_monai() -> None:
    with pytest.raises(InvalidInputError, match=r"x.json: network_def::strides::1 is a Python expression"):
        check_network_def({**NETWORK_DEF, "strides": [2, "$2"]}, "x.json")


# ---------------------------------------------------------------------------- cards


def _card() -> ModelCard:
    return ModelCard(
        intended_use="Segment the spleen in adult abdominal CT.\nResearch use only.",
        modality="CT",
        inputs=(
            InputContract("image", "CT", 1, (96, 96, -1), "float32", (-1000.0, 1000.0), ((0, "HU, windowed"),)),
        ),
        training_data=(Dataset("msd-task09", "sha256:" + "ab" * 32, "https://medicaldecathlon.com/"),),
        evaluation_data=(Dataset("site-b-holdout"),),
        performance={"dice": 0.93, "hd95": 4.2},
        subgroup_performance={"female": {"dice": 0.92}, "age 65+": {"dice": 0.90}},
        limitations="Not validated on pediatric scans or contrast-free CT.",
    )


def test_a_card_round_trips_through_json_and_msgpack() -> None:
    card = _card()
    plain = card.to_dict()
    assert ModelCard.from_dict(json.loads(json.dumps(plain))) == card
    assert ModelCard.from_dict(msgpack.unpackb(msgpack.packb(plain))) == card
    assert set(plain) == {
        "intended_use", "modality", "inputs", "training_data", "evaluation_data",
        "performance", "subgroup_performance", "limitations",
    }  # fmt: skip
    assert plain["inputs"][0]["channel_meanings"] == {"0": "HU, windowed"}


def test_a_card_renders_a_few_plain_lines() -> None:
    lines = _card().lines()
    text = "\n".join(lines)
    assert lines[0] == "Intended use: Segment the spleen in adult abdominal CT. Research use only."
    assert "Input image:  CT, 1 channel, 96x96x?, float32, values -1000..1000; channels: 0 HU, windowed" in text
    assert "Trained on:   msd-task09 sha256:abababababab https://medicaldecathlon.com/" in text
    assert "Performance:  dice 0.93, hd95 4.2" in text and "  age 65+:    dice 0.9" in text
    assert lines[-1].startswith("Limitations:  Not validated on pediatric")
    assert len(lines) == 9


def test_an_empty_card_is_empty() -> None:
    assert ModelCard().is_empty and ModelCard.from_dict({}).is_empty and ModelCard().lines() == []
    assert not _card().is_empty and not ModelCard(limitations="x").is_empty


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"performance": {"dice": math.nan}}, r"metric 'dice' must be a finite number"),
        ({"performance": {"dice": True}}, r"metric 'dice' must be a finite number"),
        ({"performance": {"dice score": 0.9}}, r"invalid metric name 'dice score'"),
        ({"subgroup_performance": {"female": {"dice": "high"}}}, r"subgroup 'female'.*finite number"),
        ({"subgroup_performance": {f"g{i}": {} for i in range(300)}}, r"at most 256 subgroups"),
        ({"intended_use": "x" * 9000}, r"intended use is longer than 8192"),
        ({"intended_use": 5}, r"intended use must be text, not int"),
        ({"limitations": "bad\x00byte"}, r"limitations holds a control character"),
        ({"modality": "CT\nMR"}, r"modality holds a control character"),
        ({"training_data": [{"name": "d", "digest": "sha256:12"}]}, r"must be sha256: and 64 hex digits"),
        ({"training_data": [{"name": ""}]}, r"dataset name in training data is empty"),
        ({"training_data": [{"name": "d", "size": 3}]}, r"unknown field 'size'"),
        ({"inputs": [{"name": "image", "spatial_shape": [0, 4]}]}, r"spatial shape of input 'image' must be"),
        ({"inputs": [{"name": "image", "value_range": [1, 0]}]}, r"value range of input 'image' must be \[min, max\]"),
        ({"inputs": [{"name": "image", "channels": -1}]}, r"channels of input 'image' must be a whole number"),
        ({"inputs": [{"name": "image", "channel_meanings": {"x": "y"}}]}, r"keyed by channel indices"),
        ({"inputs": [{"name": "a"}, {"name": "a"}]}, r"names each input once"),
        ({"inputs": [{"modality": "CT"}]}, r"input name must be text, not NoneType"),
        ({"owner": "me"}, r"unknown field 'owner'"),
    ],
)
def test_invalid_cards_are_refused(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidInputError, match=expected):
        ModelCard.from_dict({**_card().to_dict(), **change})


def test_a_card_is_checked_when_built_in_python_too() -> None:
    with pytest.raises(InvalidInputError, match=r"metric 'auc' must be a finite number"):
        ModelCard(performance={"auc": math.inf})


def test_card_from_bundle(bundle: Path) -> None:
    card = card_from_bundle(read_bundle(bundle))
    assert card.intended_use == "Research only; not for diagnosis" and card.modality == "CT"
    assert card.inputs == (InputContract("image", "CT", 1, (64, 64), "float32", (0.0, 1.0), ((0, "image"),)),)
    assert card.training_data == (Dataset("Synthetic slices made by the test"),)
    assert card.performance == {"mean_dice": 0.91, "per_class/spleen": 0.88}
    assert card.evaluation_data == () and card.limitations == ""

