"""MONAI bundles in and out of the registry, and model cards on versions.

Bundles are made by MONAI's own ``init_bundle`` (tests/monai_bundles.py), registered
through the CLI and the Python API, shown (``show``, ``--json``, the web page),
exported and loaded back by MONAI's own ConfigParser with the same weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
monai = pytest.importorskip("monai")

from conftest import assert_clean_failure, modules_loaded_by, run_cli, store_snapshot
from monai_bundles import METADATA, NETWORK_DEF, bundle, edit_json, made_bundle, make_bundle, set_network, unet  # noqa: F401 - fixtures

from mreg import InvalidInputError, Registry
from mreg.errors import CorruptObjectError, InvalidVersionError
from mreg.formats.bundle_card import card_from_bundle
from mreg.formats.monai_bundle import read_bundle
from mreg.pytorch import load_model
from mreg.records.card import InputContract, ModelCard
from mreg.records.manifest import Dataset, Framework

CARD = ModelCard(
    evaluation_data=(Dataset("site-b-holdout", "sha256:" + "cd" * 32),),
    subgroup_performance={"female": {"mean_dice": 0.9}, "age 65+": {"mean_dice": 0.87}},
    limitations="Not validated on pediatric scans.",
)




def _same_tree(one: Path, other: Path) -> bool:
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file()) and all(
        (one / f).read_bytes() == (other / f).read_bytes() for f in files
    )


# ------------------------------------------------------------------------- bundles in


def test_a_bundle_registers_with_what_its_metadata_says(bundle: Path, registry: Registry) -> None:
    result = registry.add("spleen-seg", [bundle])  # no version: the bundle's own
    view = registry.get("spleen-seg@1.0.0")
    assert result.created and result.version == "1.0.0"
    assert view.framework == Framework("monai", monai.__version__)
    assert view.manifest.architecture == "UNet"
    assert view.manifest.input_shape == (1, 1, 64, 64)
    assert dict(view.metrics) == {"mean_dice": 0.91, "per_class/spleen": 0.88}
    assert view.lineage.message == "first trained version"  # the changelog line of this version
    recorded = view.properties["monai_bundle"]
    assert recorded["task"] == METADATA["task"] and recorded["authors"] == "Imaging team"
    assert recorded["intended_use"] == "Research only; not for diagnosis" and recorded["data_source"].startswith("Synthetic")
    assert recorded["pytorch_version"] and recorded["monai_version"] == monai.__version__
    assert recorded["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "spleen"}
    assert view.card == card_from_bundle(read_bundle(bundle))
    assert view.card.inputs == (InputContract("image", "CT", 1, (64, 64), "float32", (0.0, 1.0), ((0, "image"),)),)
    assert {f.path for f in view.files} == {"LICENSE", "docs/README.md", "configs/metadata.json", "configs/inference.json", "models/model.pt"}
    assert view.properties["weights"]["tensors"] == len(unet().state_dict())  # model.pt read as any checkpoint


def test_without_a_changelog_line_the_description_is_the_message(bundle: Path, registry: Registry) -> None:
    edit_json(bundle / "configs/metadata.json", lambda data: data.pop("changelog"))
    registry.add("spleen-seg", [bundle])
    assert registry.get("spleen-seg@1.0.0").lineage.message == METADATA["description"]


def test_what_the_caller_gives_wins_over_the_bundle(bundle: Path, registry: Registry) -> None:
    card = {"intended_use": "Triage research at site A", "limitations": "Adults only"}
    registry.add(
        "spleen-seg@2.0.0",
        [bundle],
        framework="monai 1.5.0",
        architecture="unet-small",
        input_shape=[1, 1, 128, 128],
        metrics={"mean_dice": 0.5},
        properties={"monai_bundle": "mine", "site": "A"},
        message="retrained",
        card=card,
    )
    view = registry.get("spleen-seg@2.0.0")
    assert (view.version, str(view.framework), view.manifest.architecture) == ("2.0.0", "monai 1.5.0", "unet-small")
    assert view.manifest.input_shape == (1, 1, 128, 128) and view.lineage.message == "retrained"
    assert dict(view.metrics) == {"mean_dice": 0.5, "per_class/spleen": 0.88}  # metric by metric
    assert view.properties["monai_bundle"] == "mine" and view.properties["site"] == "A"
    assert view.card.intended_use == "Triage research at site A" and view.card.limitations == "Adults only"
    assert view.card.modality == "CT" and view.card.performance == {"mean_dice": 0.91, "per_class/spleen": 0.88}  # the bundle's


def test_bump_still_picks_the_next_version(bundle: Path, registry: Registry) -> None:
    registry.add("spleen-seg", [bundle])
    set_network(bundle, NETWORK_DEF, unet(seed=1).state_dict())
    assert registry.add("spleen-seg", [bundle], bump="minor").version == "1.1.0"


def test_a_bundle_version_that_is_not_semver_needs_one_given(bundle: Path, registry: Registry) -> None:
    edit_json(bundle / "configs/metadata.json", lambda data: data.update(version="0.1"))
    with pytest.raises(InvalidVersionError, match=r"the bundle's version '0.1' \(configs/metadata.json\) is not a Semantic Version.*bump="):
        registry.add("spleen-seg", [bundle])
    failed = run_cli("add", "spleen-seg", str(bundle), registry=registry)
    assert_clean_failure(failed, 2)
    assert "give NAME@VERSION or --bump" in failed.stderr
    assert registry.add("spleen-seg@0.1.0", [bundle]).version == "0.1.0"


def test_a_broken_bundle_is_refused_before_anything_is_stored(bundle: Path, registry: Registry) -> None:
    edit_json(bundle / "configs/metadata.json", lambda data: data.pop("authors"))
    before = store_snapshot(registry)
    failed = run_cli("add", "spleen-seg@1.0.0", str(bundle), registry=registry)
    assert_clean_failure(failed, 2)
    assert f"'{bundle}' is not a MONAI bundle mreg can register: configs/metadata.json lacks required key 'authors'" in failed.stderr
    (bundle / "models/model.pt").unlink()
    edit_json(bundle / "configs/metadata.json", lambda data: data.update(authors="x"))
    with pytest.raises(InvalidInputError, match=r"models/model.pt is missing"):
        registry.add("spleen-seg@1.0.0", [bundle])
    assert store_snapshot(registry) == before


def test_a_bundle_among_other_files_is_stored_as_plain_files(bundle: Path, registry: Registry, make_file: Any) -> None:
    registry.add("plain@1.0.0", [bundle, make_file("extra.txt")])
    view = registry.get("plain@1.0.0")
    assert "monai_bundle" not in view.properties and view.card is None and view.framework != Framework("monai", monai.__version__)


def test_tensors_are_shared_between_bundle_versions(bundle: Path, registry: Registry) -> None:
    wide = {**NETWORK_DEF, "channels": [32, 64, 128]}  # tensors above the 16 KiB at which mreg cuts
    first = unet(wide).state_dict()
    set_network(bundle, wide, first)
    registry.add("spleen-seg@1.0.0", [bundle])
    tuned = {key: value.clone() for key, value in first.items()}
    last = [key for key in tuned if key.endswith("bias")][-1]
    tuned[last] += 1  # fine-tuning touched one small tensor
    set_network(bundle, wide, tuned)
    registry.add("spleen-seg@1.1.0", [bundle])
    usage = registry.disk_usage().models[0]
    model_size = (bundle / "models/model.pt").stat().st_size
    assert usage.logical - usage.stored > 0.9 * model_size  # the second model.pt cost less than a tenth of itself


# --------------------------------------------------------------------------- bundles out


def test_an_exported_bundle_is_loaded_by_monai_unchanged(bundle: Path, registry: Registry, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser, verify_net_in_out

    assert run_cli("add", "spleen-seg", str(bundle), registry=registry).exit_code == 0
    exported = tmp_path / "exported"
    assert run_cli("export", "spleen-seg@1.0.0", str(exported), registry=registry).exit_code == 0
    assert _same_tree(bundle, exported)
    parser = ConfigParser()
    parser.read_meta(str(exported / "configs/metadata.json"))
    parser.read_config(str(exported / "configs/inference.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(exported / "models/model.pt", weights_only=True))
    image = torch.rand(1, 1, 64, 64)
    assert torch.equal(network.eval()(image), unet().eval()(image))
    verify_net_in_out(net_id="network_def", meta_file=str(exported / "configs/metadata.json"),
                      config_file=str(exported / "configs/inference.json"), device="cpu")  # fmt: skip


def test_load_model_builds_a_bundle_from_its_own_network_def(bundle: Path, registry: Registry) -> None:
    registry.add("spleen-seg", [bundle])
    torch.save({"epoch": 3}, bundle / "models/model_key_metric.pt")  # a second weight file, as MONAI's trainers write
    registry.add("spleen-seg@1.0.1", [bundle])
    image = torch.rand(1, 1, 64, 64)
    for ref in ("spleen-seg@1.0.0", "spleen-seg@1.0.1"):
        network = load_model(registry, ref)
        assert type(network).__name__ == "UNet" and torch.equal(network(image), unet().eval()(image))


def test_load_model_refuses_a_hostile_network_def_and_runs_nothing(bundle: Path, registry: Registry, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    hostile = {**NETWORK_DEF, "spatial_dims": f"$__import__('os').system('touch {marker}') or 2"}
    edit_json(bundle / "configs/inference.json", lambda data: data.update(network_def=hostile))
    registry.add("spleen-seg", [bundle])  # a valid bundle for MONAI: registered, never run
    with pytest.raises(InvalidInputError, match=r"spleen-seg@1.0.0:configs/inference.json: network_def::spatial_dims is a Python expression"):
        load_model(registry, "spleen-seg@1.0.0")
    edit_json(bundle / "configs/inference.json", lambda data: data.update(network_def={"_target_": "os.system", "command": f"touch {marker}"}))
    registry.add("spleen-seg@1.0.1", [bundle])
    with pytest.raises(InvalidInputError, match=r"the _target_ os.system of network_def is not a network class of monai.networks"):
        load_model(registry, "spleen-seg@1.0.1")
    assert not marker.exists()


# --------------------------------------------------------------------------------- cards


def test_a_card_is_set_through_the_api_and_shown(registry: Registry, make_file: Any) -> None:
    registry.add("cls@1.0.0", [make_file("model.bin")], card=CARD)
    view = registry.get("cls@1.0.0")
    assert view.card == CARD and view.properties["card"] == CARD.to_dict()
    assert view.to_dict()["card"] == CARD.to_dict()
    shown = run_cli("show", "cls@1.0.0", registry=registry).stdout
    assert "card:\n" + "\n".join(f"  {line}" for line in view.card.lines()) in shown  # subgroups come back sorted
    assert "  Evaluated on: site-b-holdout sha256:cdcdcdcdcdcd\n    age 65+:    mean_dice 0.87\n    female:     mean_dice 0.9\n" in shown
    assert "  card: {" not in shown  # not twice, as raw metadata
    assert json.loads(run_cli("show", "cls@1.0.0", "--json", registry=registry).stdout)["card"] == CARD.to_dict()
    registry.add("cls@1.0.1", [make_file("model.bin")], card=CARD.to_dict())  # a dict does as well
    assert registry.get("cls@1.0.1").card == CARD


def test_add_card_from_a_json_file_and_a_bundle(bundle: Path, registry: Registry, tmp_path: Path) -> None:
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({"limitations": "Adults only", "evaluation_data": [{"name": "site-b"}]}))
    added = run_cli("add", "spleen-seg", str(bundle), "--card", str(card_file), registry=registry)
    assert added.exit_code == 0, added.stderr
    card = registry.get("spleen-seg@1.0.0").card
    assert card.limitations == "Adults only" and card.evaluation_data == (Dataset("site-b"),)
    assert card.intended_use == "Research only; not for diagnosis"  # from the bundle
    shown = run_cli("show", "spleen-seg@1.0.0", registry=registry).stdout
    assert "  Input image:  CT, 1 channel, 64x64, float32, values 0..1; channels: 0 image" in shown
    assert "  Limitations:  Adults only" in shown
    assert json.loads(run_cli("show", "spleen-seg@1.0.0", "--json", registry=registry).stdout)["card"] == card.to_dict()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"owner": "me"}', r"card.json is not a valid model card: a model card has an unknown field 'owner'"),
        ('{"performance": {"dice": NaN}}', r"card.json is not valid JSON: NaN is not a JSON number"),
        ("[1]", r"card.json must hold a JSON object"),
        ("{", r"card.json is not valid JSON"),
        ('{"limitations": "' + "x" * (1 << 20) + '"}', r"card.json is larger than 1 MiB"),
    ],
    ids=["unknown-field", "nan", "list", "truncated", "huge"],
)
def test_an_invalid_card_file_is_refused(registry: Registry, make_file: Any, tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "card.json").write_text(content)
    failed = run_cli("add", "m@1.0.0", str(make_file("model.bin")), "--card", str(tmp_path / "card.json"), registry=registry)
    assert_clean_failure(failed, 2)
    assert re.search(expected, failed.stderr), failed.stderr
    assert registry.models() == []


def test_the_card_metadata_key_takes_only_a_card(registry: Registry, make_file: Any, tmp_path: Path) -> None:
    failed = run_cli("add", "m@1.0.0", str(make_file("model.bin")), "--meta", "card=looks good", registry=registry)
    assert_clean_failure(failed, 2)
    assert "the metadata key 'card' holds the model card, so it must be a ModelCard or a map of its fields, not str: give it as --card" in failed.stderr
    with pytest.raises(InvalidInputError, match=r"invalid model card: performance: metric 'auc' must be a finite number"):
        registry.add("m@1.0.0", [make_file("model.bin")], properties={"card": {"performance": {"auc": "high"}}})
    with pytest.raises(InvalidInputError, match=r"the model card is given twice: as card= and as the metadata key 'card'"):
        registry.add("m@1.0.0", [make_file("model.bin")], properties={"card": {}}, card=CARD)
    assert registry.models() == []
    registry.add("m@1.0.0", [make_file("model.bin")], properties={"card": CARD.to_dict()})  # a valid one is the card
    registry.add("m@1.0.1", [make_file("model.bin")], properties={"card": CARD})  # as a ModelCard too
    assert registry.get("m@1.0.0").card == registry.get("m@1.0.1").card == CARD


def test_an_invalid_stored_card_is_reported_as_corrupt(registry: Registry, make_file: Any) -> None:
    registry.add("m@1.0.0", [make_file("model.bin")], card=CARD)
    manifest = registry.get("m@1.0.0").manifest
    forged = replace(manifest, properties={"card": {**CARD.to_dict(), "performance": {"dice": "excellent"}}})
    digest = registry.objects.add_bytes(forged.encode()).digest
    (registry.root / "models/m/_refs").write_text(f"# mreg refs 1\nversion 1.0.0 {digest}\nlatest 1.0.0\n")
    with pytest.raises(CorruptObjectError, match=r"its model card is not valid: performance: metric 'dice' must be a finite number"):
        registry.get("m@1.0.0").card  # noqa: B018 - the property reads and checks the card
    assert_clean_failure(run_cli("show", "m@1.0.0", registry=registry))


def test_show_of_a_bundle_version_imports_no_monai_torch_or_numpy(bundle: Path, registry: Registry, tmp_path: Path) -> None:
    registry.add("spleen-seg", [bundle])
    result, loaded = modules_loaded_by("show", "spleen-seg@1.0.0", cwd=tmp_path, prefixes=["monai", "torch", "numpy"])
    assert result.exit_code == 0 and "card:" in result.stdout
    assert loaded == []


def test_the_version_page_shows_the_card(bundle: Path, registry: Registry) -> None:
    pytest.importorskip("starlette")
    from asgi_client import call

    from mreg.web import create_app

    registry.add("spleen-seg", [bundle], card=CARD)
    registry.add("plain@1.0.0", [bundle / "LICENSE"])
    app = create_app(registry.root, warm_up=False)
    page = call(app, "/m/spleen-seg@1.0.0")
    assert page.status == 200
    card_html = page.text[page.text.index('id="model-card"') : page.text.index("</section>", page.text.index('id="model-card"'))]
    for text in ("Research only; not for diagnosis", "Not validated on pediatric scans.", "site-b-holdout", "age 65+", "0: image", "64 × 64"):
        assert text in card_html, text
    assert ">card<" not in page.text  # not again among the metadata
    assert "model = load_model(registry, &#34;spleen-seg@1.0.0&#34;)" in page.text  # the snippet: MONAI builds it
    assert call(app, "/api/m/spleen-seg@1.0.0").json()["card"] == registry.get("spleen-seg@1.0.0").card.to_dict()
    assert 'id="model-card"' not in call(app, "/m/plain@1.0.0").text
