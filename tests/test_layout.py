"""Pins the on-disk layout of a store: what other tools and future versions will find there."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from conftest import run_cli

from mreg.registry import Registry


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_layout_after_init_add_and_tag(tmp_path: Path, make_file) -> None:
    assert run_cli("init").exit_code == 0
    root = tmp_path / ".mreg"
    assert (root / "config").read_bytes() == b"[core]\n\tformatversion = 1\n"
    assert sorted(p.name for p in root.iterdir()) == ["config", "models", "objects", "tmp"]

    content = b"hello\n"
    added = run_cli("add", "demo@1.0.0", str(make_file("somefile", content)), "-m", "first")
    assert added.exit_code == 0, added
    manifest = added.stdout.strip().splitlines()[-1]
    assert run_cli("tag", "demo@1.0.0", "production").exit_code == 0

    blob_hex = hashlib.sha256(content).hexdigest()
    manifest_hex = manifest.removeprefix("sha256:")
    assert files_under(root) == {
        "config",
        "lock",
        f"objects/{blob_hex[:2]}/{blob_hex[2:]}",
        f"objects/{manifest_hex[:2]}/{manifest_hex[2:]}",
        "models/demo/_refs",
        "models/demo/_log",
        "models/demo/_lock",
        "models/_lock",  # held while a new model is checked and created
        "info/models",  # the list of models, for static HTTP servers
    }
    assert (root / "info" / "models").read_text() == "demo\n"
    assert (root / "objects" / blob_hex[:2] / blob_hex[2:]).read_bytes() == content
    manifest_bytes = (root / "objects" / manifest_hex[:2] / manifest_hex[2:]).read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == manifest_hex
    assert manifest_bytes[:1] == b"\x8c"  # a msgpack map of the manifest's 12 fields
    assert list((root / "tmp").iterdir()) == []

    lines = (root / "models" / "demo" / "_log").read_text().splitlines()
    # The log is a hash chain: each line names the SHA-256 of the one before
    # (the first, of the empty log it seals), and _refs ends with the head: the last line's.
    hashes = ["sha256:" + hashlib.sha256(line.encode()).hexdigest() for line in lines]
    assert (root / "models" / "demo" / "_refs").read_text() == (
        "# mreg refs 1\n"
        f"version 1.0.0 {manifest}\n"
        "tag production 1.0.0\n"
        "latest 1.0.0\n"
        f"chain 2 {hashes[-1]}\n"
    )
    entries = [json.loads(line) for line in lines]
    assert all(list(entry) == ["author", "message", "new", "old", "prev", "ref", "seq", "time"] for entry in entries)
    assert [(e["seq"], e["prev"]) for e in entries] == list(enumerate(["sha256:" + hashlib.sha256(b"").hexdigest(), *hashes[:-1]]))
    assert [(e["ref"], e["old"], e["new"], e["author"], e["message"]) for e in entries] == [
        ("versions/1.0.0", None, manifest, "tester", "first"),
        ("latest", None, "1.0.0", "tester", "first"),
        ("tags/production", None, "1.0.0", "tester", ""),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]) for e in entries)


def test_nested_names_are_nested_directories(registry: Registry, make_file) -> None:
    registry.add("org/team/resnet@1.0.0", [make_file("w.dat", "x")])
    model = registry.root / "models" / "org" / "team" / "resnet"
    assert (model / "_refs").is_file() and (model / "_log").is_file()
    assert not (registry.root / "models" / "org" / "_refs").exists()
    assert [m.name for m in registry.models()] == ["org/team/resnet"]


def test_a_model_and_a_nested_model_coexist(registry: Registry, make_file) -> None:
    parent = registry.add("a@1.0.0", [make_file("p/w.dat", "parent")]).digest
    child = registry.add("a/b@2.0.0", [make_file("c/w.dat", "child")]).digest
    models = registry.root / "models"
    assert (models / "a" / "_refs").is_file() and (models / "a" / "b" / "_refs").is_file()
    assert registry.resolve("a") == parent and registry.resolve("a/b") == child
    assert [(m.name, m.latest) for m in registry.models()] == [("a", "1.0.0"), ("a/b", "2.0.0")]
    registry.remove("a@1.0.0")
    assert registry.resolve("a/b") == child
    assert registry.fsck().ok
