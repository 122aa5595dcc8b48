"""mreg export: a version's files in a directory, verified, linked where safe, never overwriting."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from weightfiles import write_safetensors

from mreg.errors import ConflictError, CorruptObjectError
from mreg.operations import export as export_module
from mreg.registry import Registry


@pytest.fixture
def model(registry: Registry, tmp_path: Path) -> Registry:
    """m@1.0.0: a config, a nested tokenizer file and a weight file stored as chunks."""
    source = tmp_path / "model"
    (source / "tok").mkdir(parents=True)
    (source / "config.json").write_text('{"classes": 2}')
    (source / "tok" / "vocab.txt").write_text("a\nb\n")
    write_safetensors(source / "w.safetensors")
    registry.add("m@1.0.0", [source])
    return registry


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def expected(registry: Registry, ref: str) -> dict[str, bytes]:
    return {f.path: registry.path(ref, f.path).read_bytes() for f in registry.get(ref).files}


def test_export_writes_every_file_and_is_idempotent(model: Registry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = model.export("m@1.0.0", out)
    assert files_of(out) == expected(model, "m@1.0.0")
    assert sorted(report.linked + report.copied) == ["config.json", "tok/vocab.txt", "w.safetensors"]
    again = model.export("m@1.0.0", out)
    assert sorted(again.unchanged) == ["config.json", "tok/vocab.txt", "w.safetensors"] and not again.copied
    assert model.fsck().ok


def test_whole_files_are_hard_linked_read_only(model: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "permissions_protect", lambda: True)  # as a user who is not root
    report = model.export("m@1.0.0", tmp_path / "out")
    assert sorted(report.linked) == ["config.json", "tok/vocab.txt"] and report.copied == ["w.safetensors"]
    config = model.file_entry("m@1.0.0", "config.json")
    linked = tmp_path / "out" / "config.json"
    assert os.path.samefile(linked, model.objects.object_path(config.digest))
    assert linked.stat().st_mode & 0o222 == 0  # read-only: an in-place edit fails
    assert (tmp_path / "out" / "w.safetensors").stat().st_mode & 0o200  # a chunked file is a writable copy
    assert model.export("m@1.0.0", tmp_path / "out").unchanged  # a link is recognised as identical
    copies = model.export("m@1.0.0", tmp_path / "copies", link=False)
    assert not copies.linked and not os.path.samefile(tmp_path / "copies" / "config.json", linked)


def test_export_copies_where_links_are_impossible(model: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "permissions_protect", lambda: True)

    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    report = model.export("m@1.0.0", tmp_path / "out")
    assert not report.linked and files_of(tmp_path / "out") == expected(model, "m@1.0.0")


def test_export_refuses_to_overwrite_and_writes_nothing(model: Registry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "tok").mkdir(parents=True)
    (out / "tok" / "vocab.txt").write_text("mine")
    with pytest.raises(ConflictError, match="refusing to overwrite"):
        model.export("m@1.0.0", out)
    assert files_of(out) == {"tok/vocab.txt": b"mine"}
    (out / "tok" / "vocab.txt").write_text("a\nc\n")  # same size, other bytes
    result = run_cli("export", "m@1.0.0", str(out), registry=model)
    assert result.exit_code == 4 and result.stderr.startswith("mreg: error: refusing to overwrite")
    (out / "tok" / "vocab.txt").unlink()
    (out / "tok" / "vocab.txt").mkdir()
    assert run_cli("export", "m@1.0.0", str(out), registry=model).exit_code == 4


def test_export_never_writes_through_a_link_out_of_the_directory(model: Registry, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tok").symlink_to(outside)
    with pytest.raises(ConflictError, match="symbolic link"):
        model.export("m@1.0.0", tmp_path / "out")
    assert list(outside.iterdir()) == []


def test_a_corrupt_object_is_never_exported(model: Registry, tmp_path: Path) -> None:
    entry = model.file_entry("m@1.0.0", "w.safetensors")
    chunk, _ = model.objects.chunks(entry.digest)[1]
    blob = model.objects.object_path(chunk)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError):
        model.export("m@1.0.0", tmp_path / "out")
    assert not (tmp_path / "out" / "w.safetensors").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".mreg-export")]


def test_export_cli(model: Registry, tmp_path: Path) -> None:
    result = run_cli("export", "m@1.0.0", str(tmp_path / "out"), registry=model)
    assert result.exit_code == 0 and result.stdout.startswith(f"exported m@1.0.0 to {tmp_path / 'out'} (")
    document = json.loads(run_cli("export", "m@latest", str(tmp_path / "out"), "--json", registry=model).stdout)
    assert sorted(document["unchanged"]) == ["config.json", "tok/vocab.txt", "w.safetensors"]
    assert run_cli("export", "m@9.0.0", str(tmp_path / "x"), registry=model).exit_code == 3
    assert "hard-linked" in run_cli("export", "--help").stdout
