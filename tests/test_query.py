"""Queries over versions: family, framework specifiers, metric thresholds, metadata, latest only."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from mreg.errors import InvalidInputError, InvalidNameError
from mreg.operations.query import matcher
from mreg.records.manifest import FileEntry, Framework, Manifest
from mreg.records.names import Digest
from mreg.records.notes import Note
from mreg.records.views import ModelVersion
from mreg.registry import Registry


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


def test_matcher_on_versions() -> None:
    manifest = Manifest(
        "demo", "1.0.0", (FileEntry("w", "sha256:" + "0" * 64, 0),),
        framework=Framework("pytorch", "2.13.0+cpu"), metrics={"acc": 0.9}, properties={"flag": True, "n": 3},
    )
    view = ModelVersion(Digest("sha256:" + "1" * 64), manifest)
    assert matcher(framework="pytorch>=2.13,<2.14")(view)  # local version labels are ignored
    assert not matcher(framework="pytorch<2")(view)
    assert not matcher(framework="torch")(view)
    assert matcher(properties={"flag": "true", "n": 3})(view)
    assert not matcher(properties={"missing": "x"})(view)
    assert matcher(metrics=[("acc", "==", 0.9)])(view)
    assert not matcher(metrics=["loss<1"])(view)  # a version without the metric does not match
    assert not matcher(framework="pytorch")(ModelVersion(view.digest, Manifest("demo", "1.0.0", ())))
    noted = view._replace(note=Note(view.digest, metrics={"loss": 0.5, "acc": 0.5}))
    assert matcher(metrics=["loss<1", "acc<0.6"])(noted)  # a noted metric counts, and wins


def test_sort_reverse_and_limit(registry: Registry, make_file) -> None:
    for version, metrics in (("1.0.0", {"acc": 0.7, "loss": 0.9}), ("1.1.0", {"acc": 0.9, "loss": 0.4}), ("1.2.0", {"loss": 0.2}), ("2.0.0", {"acc": 0.8})):
        registry.add(f"m@{version}", [make_file(version, version)], metrics=metrics)

    def versions(**options) -> list[str]:
        return [v.version for v in registry.query(name="m", **options)]

    assert versions(sort="acc") == ["1.1.0", "2.0.0", "1.0.0", "1.2.0"]  # without the metric: last
    assert versions(sort="acc", reverse=True) == ["1.0.0", "2.0.0", "1.1.0", "1.2.0"]
    assert versions(sort="loss", reverse=True, limit=1) == ["1.2.0"]
    assert versions(sort="acc", limit=0) == [] and versions(limit=2) == ["2.0.0", "1.2.0"]
    assert versions(sort="acc", metrics=["acc>=0.75"]) == ["1.1.0", "2.0.0"]
    registry.note("m@1.0.0", metrics={"acc": 0.95})  # an evaluation after the fact changes the best
    assert versions(sort="acc", limit=1) == ["1.0.0"]
    assert [v.name for v in registry.query(sort="acc", latest_only=True)] == ["m"]
    with pytest.raises(InvalidInputError):
        versions(limit=-1)
    with pytest.raises(InvalidInputError):
        versions(reverse=True)
    with pytest.raises(InvalidNameError):
        versions(sort="bad metric")


def test_ls_sort_and_metric_columns(registry: Registry, make_file) -> None:
    registry.add("m@1.0.0", [make_file("a", "a")], metrics={"acc": 0.7, "loss": 0.5})
    registry.add("m@1.1.0", [make_file("b", "b")], metrics={"acc": 0.9})
    registry.note("m@1.0.0", metrics={"f1": 0.6})
    lines = run_cli("ls", "m", registry=registry).stdout.splitlines()
    assert lines[0].split() == ["VERSION", "DIGEST", "TAGS", "acc", "f1", "loss"]
    assert lines[1].split()[0] == "1.1.0" and lines[1].split()[2:] == ["latest", "0.9", "-", "-"]  # latest listed, as show lists it
    assert lines[2].split()[2:] == ["0.7", "0.6*", "0.5"] and lines[-1].startswith("* noted")
    best = run_cli("ls", "m", "--sort", "loss", "--reverse", "--limit", "1", registry=registry).stdout.splitlines()
    assert [line.split()[0] for line in best[1:] if not line.startswith("*")] == ["1.0.0"]
    document = json.loads(run_cli("ls", "m", "--json", registry=registry).stdout)
    assert document[0]["metrics"] == {"acc": 0.9} and document[0]["notes"] is None
    assert document[1]["notes"]["metrics"] == {"f1": 0.6}
    assert json.loads(run_cli("ls", "--json", registry=registry).stdout)[0]["metrics"] == {"acc": 0.9}
    assert json.loads(run_cli("ls", "--sort", "acc", "--json", registry=registry).stdout)[0]["version"] == "1.1.0"
    assert json.loads(run_cli("ls", "--limit", "0", "--json", registry=registry).stdout) == []
    for bad, code in ((["--limit", "-1"], 2), (["--reverse"], 2), (["--sort", "a b"], 2)):
        result = run_cli("ls", "m", *bad, registry=registry)
        assert result.exit_code == code and result.stderr.startswith("mreg: error:"), bad
