"""The version page's "Use it" snippets run as shown, for what each version holds.

A network registered with its torchvision builder loads with load_model; a state dict
added with `mreg add` with load_state_dict (with file= when there are several weight
files); other files by path. Each snippet is executed against a live `mreg serve`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_web import request
from test_web_registry import safetensors_file, served

from mreg import Registry


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("snippets")
    registry = Registry.init(root)
    files = root / "inputs"
    weights = safetensors_file(files / "model.safetensors", 1)
    head = safetensors_file(files / "head.safetensors", 2, classes=3)
    config = files / "config.yaml"
    config.write_text("lr: 0.1\n")
    readme = files / "README.md"
    readme.write_text("# notes\n")
    registry.add("plain@1.0.0", [weights])
    registry.add("team/with-config@1.0.0", [weights, config])
    registry.add("pair@1.0.0", [weights, head])
    registry.add("config@1.0.0", [config])
    registry.add("docs@1.0.0", [config, readme])
    torch = pytest.importorskip("torch")
    from mreg.pytorch import TorchvisionBuilder, import_torchvision, register

    torch.manual_seed(0)
    network = import_torchvision().models.squeezenet1_1(weights=None, num_classes=2)
    register(registry, "vision@1.0.0", network, builder=TorchvisionBuilder("squeezenet1_1", {"num_classes": 2}))
    with served(root) as url:
        yield url


def run_python(snippet: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute a snippet in ``directory`` (it makes its own registry there); return its variables."""
    directory.mkdir()
    monkeypatch.chdir(directory)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "<snippet>", "exec"), namespace)
    return namespace


def run_shell(snippet: str, directory: Path) -> subprocess.CompletedProcess:
    directory.mkdir()
    script = f'set -e\nmreg() {{ "{sys.executable}" -m mreg "$@"; }}\n{snippet}\n'
    return subprocess.run(["bash", "-c", script], cwd=directory, capture_output=True, text=True, timeout=120, check=False)


def snippets_of(server: str, ref: str) -> dict[str, str]:
    reply = request(server, f"/api/m/{ref}")
    assert reply.status == 200, reply.text
    shown = request(server, f"/m/{ref}").text
    data = reply.json()["snippets"]
    for snippet in data.values():  # the page shows exactly what the JSON has
        assert snippet.replace("&", "&amp;").replace('"', "&#34;").replace("<", "&lt;") in shown
    return data


def test_a_network_with_a_recorded_builder_loads_with_load_model(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snippet = snippets_of(server, "vision@1.0.0")["python"]
    assert "load_model(registry, " in snippet
    import torch

    model = run_python(snippet, tmp_path / "py", monkeypatch)["model"]
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 2)


@pytest.mark.parametrize("ref", ["plain@1.0.0", "team/with-config@1.0.0"])
def test_a_state_dict_added_with_mreg_add_loads_with_load_state_dict(
    server: str, ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippet = snippets_of(server, ref)["python"]
    assert "load_model(" not in snippet.split("#")[0] and "load_state_dict(registry, " in snippet
    state_dict = run_python(snippet, tmp_path / "py", monkeypatch)["state_dict"]
    assert sorted(state_dict) == ["backbone.bn.weight", "backbone.conv.weight", "fc.bias", "fc.weight"]


def test_several_weight_files_name_the_one_to_load(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snippet = snippets_of(server, "pair@1.0.0")["python"]
    state_dict = run_python(snippet, tmp_path / "py", monkeypatch)["state_dict"]
    assert "file=" in snippet and state_dict["fc.weight"].shape[0] in (3, 10)


def test_other_files_are_used_by_path(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = run_python(snippets_of(server, "config@1.0.0")["python"], tmp_path / "one", monkeypatch)
    assert Path(one["path"]).read_text() == "lr: 0.1\n"
    two = run_python(snippets_of(server, "docs@1.0.0")["python"], tmp_path / "two", monkeypatch)
    assert {name: Path(path).read_text() for name, path in two["paths"].items()} == {"config.yaml": "lr: 0.1\n", "README.md": "# notes\n"}


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("plain@1.0.0", ["model.safetensors"]),
        ("config@1.0.0", ["config.yaml"]),
        ("team/with-config@1.0.0", ["with-config-1.0.0/config.yaml", "with-config-1.0.0/model.safetensors"]),
    ],
)
def test_the_shell_snippet_runs(server: str, ref: str, expected: list[str], tmp_path: Path) -> None:
    done = run_shell(snippets_of(server, ref)["shell"], tmp_path / "sh")
    assert done.returncode == 0, done.stderr
    for path in expected:
        assert (tmp_path / "sh" / path).is_file(), (path, done.stdout)
