"""fsck --repair: damaged and missing objects restored from fallbacks and remotes.

fsck and gc agree on what is reachable (a damaged file's chunks still are). A good
copy is fetched, verified and renamed over the damaged one; a damaged object is
never removed before its good copy is in place, and what cannot be restored is said.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import assert_clean_failure, flip_byte, object_file, run_cli
from weightfiles import write_safetensors

from mreg.registry import Registry


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Registry, Registry]:
    """A registry with a chunked weight file and a small config, and a healthy copy of it."""
    source = tmp_path / "files"
    write_safetensors(source / "model.safetensors", tensors=6)
    (source / "config.json").write_text('{"classes": 2}')
    here = Registry.init(tmp_path / "here")
    here.add("net@1.0.0", [source / "model.safetensors", source / "config.json"])
    healthy, _ = Registry.clone(str(tmp_path / "here"), tmp_path / "healthy")
    return here, healthy


def chunk_of(registry: Registry, ref: str, path: str, index: int = 1) -> Path:
    entry = registry.file_entry(ref, path)
    chunk, _ = registry.objects.chunks(entry.digest)[index]
    return object_file(registry, chunk)


def unreachable(fsck_output: str) -> int:
    found = re.search(r"(\d+) unreachable object", fsck_output)
    return int(found[1]) if found else 0


def test_fsck_and_gc_agree_on_what_a_damaged_file_still_needs(pair: tuple[Registry, Registry]) -> None:
    here, _ = pair
    flip_byte(chunk_of(here, "net@1.0.0", "model.safetensors"), 100)
    checked = run_cli("fsck", registry=here)
    collected = json.loads(run_cli("gc", "--dry-run", "--json", registry=here).stdout)
    assert checked.exit_code == 1 and unreachable(checked.stdout) == collected["objects"] == 0
    here.add("other@1.0.0", [here.path("net@1.0.0", "config.json")])
    here.remove("other@1.0.0")  # one really unreachable manifest
    checked = run_cli("fsck", registry=here)
    assert unreachable(checked.stdout) == json.loads(run_cli("gc", "--dry-run", "--json", registry=here).stdout)["objects"] == 1


def test_a_flipped_chunk_is_restored_from_a_fallback(pair: tuple[Registry, Registry]) -> None:
    here, healthy = pair
    original = here.path("net@1.0.0", "model.safetensors").read_bytes()
    damaged = chunk_of(here, "net@1.0.0", "model.safetensors")
    flip_byte(damaged, 100)
    assert run_cli("fsck", "--repair", registry=here).exit_code == 1  # no fallback yet: nothing to restore from
    here.set_config("fallback.url", str(healthy.root.parent))
    result = run_cli("fsck", "--repair", registry=here)
    assert result.exit_code == 0, result
    assert f"note: restored object {here.file_entry('net@1.0.0', 'model.safetensors').digest} from" in result.stdout
    assert here.fsck().ok and here.path("net@1.0.0", "model.safetensors").read_bytes() == original
    assert damaged.stat().st_mode & 0o222 == 0  # the restored object is read-only, as every object


def test_damaged_and_missing_objects_are_restored_from_a_remote(pair: tuple[Registry, Registry], tmp_path: Path) -> None:
    healthy, _ = pair  # the original, with a clone of it that names it origin
    clone = Registry.open(tmp_path / "healthy")
    config = clone.file_entry("net@1.0.0", "config.json")
    chunk = chunk_of(clone, "net@1.0.0", "model.safetensors", 0)
    object_file(clone, config.digest).unlink()  # missing
    flip_byte(chunk, 0)
    flip_byte(object_file(clone, clone.resolve("net@1.0.0")), 3)  # a damaged manifest hides the others until restored
    result = run_cli("fsck", "--repair", "--json", registry=clone)
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"], report
    assert sum("restored object" in note for note in report["notes"]) == 3
    assert clone.fsck().ok and clone.path("net@1.0.0", "config.json").read_text() == '{"classes": 2}'
    assert healthy.fsck().ok


def test_a_bad_copy_elsewhere_is_refused_and_the_damaged_one_left_in_place(pair: tuple[Registry, Registry]) -> None:
    here, healthy = pair
    damaged = chunk_of(here, "net@1.0.0", "model.safetensors")
    flip_byte(damaged, 100)
    flip_byte(chunk_of(healthy, "net@1.0.0", "model.safetensors"), 200)  # the other copy is bad too
    before = (damaged.read_bytes(), damaged.stat().st_ino)
    here.set_config("fallback.url", str(healthy.root.parent))
    result = run_cli("fsck", "--repair", registry=here)
    assert_clean_failure(result, code=1)
    assert "could not restore object" in result.stdout and "does not match" in result.stdout
    assert (damaged.read_bytes(), damaged.stat().st_ino) == before  # never removed, never half-replaced
    assert here.objects.temp_files() == []


def test_nothing_to_restore_from_is_said(pair: tuple[Registry, Registry]) -> None:
    here, _ = pair
    object_file(here, here.file_entry("net@1.0.0", "config.json").digest).unlink()
    result = run_cli("fsck", "--repair", registry=here)
    assert result.exit_code == 1 and "no fallback or remote is configured" in result.stdout


def test_restoring_over_http_and_a_whole_blob_for_a_chunked_file(pair: tuple[Registry, Registry], serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    here, healthy = pair
    entry = here.file_entry("net@1.0.0", "model.safetensors")
    index = here.objects.index_path(entry.digest)
    index.chmod(0o644)
    index.write_bytes(b"not an index")  # the chunk index itself is damaged
    whole = Registry.init(tmp_path / "whole")  # a store that keeps the file as one blob
    whole.objects.add_bytes(healthy.path("net@1.0.0", "model.safetensors").read_bytes())
    server = serve(whole.root)
    here.set_config("fallback.url", server.url)
    result = run_cli("fsck", "--repair", registry=here)
    assert result.exit_code == 0, result.stdout
    assert here.fsck().ok and not index.exists() and here.objects.object_path(entry.digest).is_file()


def test_repair_leaves_unreachable_damage_to_gc(pair: tuple[Registry, Registry]) -> None:
    here, healthy = pair
    here.add("tmp@1.0.0", [here.path("net@1.0.0", "config.json")], properties={"x": "1"})
    manifest = object_file(here, here.resolve("tmp@1.0.0"))
    here.remove("tmp@1.0.0")
    flip_byte(manifest, 2)
    here.set_config("fallback.url", str(healthy.root.parent))
    result = run_cli("fsck", "--repair", registry=here)
    assert "restored" not in result.stdout and "could not restore" not in result.stdout
    assert run_cli("gc", registry=here).exit_code == 0 and here.fsck().ok
    assert not os.path.exists(manifest)


def test_one_bad_chunk_is_restored_alone_and_the_file_stays_chunked(pair: tuple[Registry, Registry]) -> None:
    here, healthy = pair
    entry = here.file_entry("net@1.0.0", "model.safetensors")
    healthy.objects.add_bytes(healthy.path("net@1.0.0", "model.safetensors").read_bytes())  # it also has the whole file
    flip_byte(chunk_of(here, "net@1.0.0", "model.safetensors"), 100)
    here.set_config("fallback.url", str(healthy.root.parent))
    assert run_cli("fsck", "--repair", registry=here).exit_code == 0
    assert here.objects.is_chunked(entry.digest) and not here.objects.object_path(entry.digest).exists()  # dedup kept


def test_a_damaged_whole_blob_is_replaced_by_the_chunks_another_store_keeps(pair: tuple[Registry, Registry]) -> None:
    here, healthy = pair
    entry = here.file_entry("net@1.0.0", "model.safetensors")
    here.objects.add_bytes(here.path("net@1.0.0", "model.safetensors").read_bytes())  # kept whole here ...
    here.objects.index_path(entry.digest).unlink()
    flip_byte(here.objects.object_path(entry.digest), 500)  # ... and damaged
    here.set_config("fallback.url", str(healthy.root.parent))
    assert run_cli("fsck", "--repair", registry=here).exit_code == 0
    assert here.fsck().ok and here.objects.is_chunked(entry.digest)  # the damaged blob no longer shadows the index
