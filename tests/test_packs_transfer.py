"""Packs travel: pull, push, clone, fallbacks and buckets move records as they are.

The receiver keeps a record packed only once it decodes, its base first, to bytes
whose SHA-256 is its name; a store that packs and one that does not exchange models
either way; hostile records (bad lengths, a bomb, a loop, a missing or wrong base) are
refused with one error and nothing of them kept.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
import torch
from bucket_servers import BucketService, azurite, bucket_server, bucket_url, raw_store, s3_server  # noqa: F401 - fixtures
from conftest import assert_clean_failure, run_cli
from test_packs import VERSIONS, assert_bit_exact, fine_tunes, tensor_chunks
from test_transfer import transfer_cli

from mreg.pytorch import load_state_dict, register
from mreg.registry import Registry
from mreg.storage import pack_codec


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Registry, list[dict[str, torch.Tensor]]]:
    """A registry of five full fine-tunes, the four older ones packed."""
    registry = Registry.init(tmp_path / "origin")
    states = fine_tunes()
    for number, state in enumerate(states):
        register(registry, f"m@1.{number}.0", state)
    registry.pack()
    return registry, states


def records(registry: Registry) -> set[str]:
    return set(registry.objects.iter_packed())


def test_clone_and_pull_keep_records_packed_and_verified(packed, tmp_path: Path) -> None:
    origin, states = packed
    result = run_cli("clone", str(origin.root.parent), str(tmp_path / "copy"))
    assert result.exit_code == 0, result.stderr
    copy = Registry.open(tmp_path / "copy")
    assert records(copy) == records(origin)  # as they are: no decoding into raw chunks
    assert copy.fsck().ok, copy.fsck().problems
    assert_bit_exact(copy, states)
    assert "formatversion = 2" in (copy.root / "config").read_text()
    report = transfer_cli("pull", str(origin.root.parent), registry=Registry.init(tmp_path / "other"))
    assert report["bytes"] < 0.7 * sum(f.size for n in range(VERSIONS) for f in origin.get(f"m@1.{n}.0").files)


def test_push_to_a_directory_moves_records_and_fetches_bases_it_lacks(packed, tmp_path: Path) -> None:
    origin, states = packed
    target = Registry.init(tmp_path / "target")
    transfer_cli("push", str(target.root.parent), registry=origin)
    assert records(target) == records(origin) and target.fsck().ok
    assert_bit_exact(target, states)
    # A pull of the oldest version alone still needs the newer chunks it is a delta against.
    single = Registry.init(tmp_path / "single")
    single.set_config("fallback.url", str(origin.root.parent))
    loaded = load_state_dict(single, "m@1.0.0")
    assert all(torch.equal(loaded[name], states[0][name]) for name in states[0])
    assert single.fsck().ok


def test_a_store_that_never_packed_pulls_from_one_that_did_and_back(packed, tmp_path: Path) -> None:
    origin, states = packed
    plain = Registry.init(tmp_path / "plain")
    register(plain, "other@1.0.0", fine_tunes(1, seed=7)[0])
    transfer_cli("pull", str(origin.root.parent), registry=plain)
    assert_bit_exact(plain, states)
    transfer_cli("pull", str(plain.root.parent), "other", registry=origin)  # raw chunks into a packing store
    assert origin.fsck().ok and load_state_dict(origin, "other@1.0.0").keys() == states[0].keys()


def tamper(registry: Registry, change) -> str:  # type: ignore[no-untyped-def]
    """Rewrite the record of the oldest version's first tensor chunk; return its digest."""
    entry = registry.get("m@1.0.0").files[0]
    chunk = next(c for c, size in registry.objects.chunks(entry.digest) if size > 4096)
    path = registry.objects.pack_path(chunk)
    path.chmod(0o644)
    path.write_bytes(change(path.read_bytes(), registry, chunk))
    return chunk


def standalone_of_other_bytes(record: bytes, registry: Registry, chunk: str) -> bytes:
    """A well-formed record of as many zero bytes: it decodes, to bytes that are not the chunk."""
    size = pack_codec.read_header(record).size
    zeros = pack_codec.encode(bytes(size), itemsize=4, min_saving=None)
    assert zeros is not None
    return zeros


def looping(record: bytes, registry: Registry, chunk: str) -> bytes:
    """A delta against itself: a chain that loops."""
    return record[:20] + bytes.fromhex(chunk[7:]) + record[52:]


def bomb(record: bytes, registry: Registry, chunk: str) -> bytes:
    """A record declaring 1 TB."""
    return record[:12] + struct.pack("<Q", 1 << 40) + record[20:]


def wrong_base(record: bytes, registry: Registry, chunk: str) -> bytes:
    """A delta naming another chunk of the same size, which is there: it decodes, to other bytes."""
    entry = registry.get("m@1.4.0").files[0]
    other = [c for c, size in registry.objects.chunks(entry.digest) if size > 4096][-1]
    return record[:20] + bytes.fromhex(other[7:]) + record[52:]


def truncated(record: bytes, registry: Registry, chunk: str) -> bytes:
    return record[: len(record) // 2]


def missing_base(record: bytes, registry: Registry, chunk: str) -> bytes:
    return record[:20] + hashlib.sha256(b"nothing").digest() + record[52:]


@pytest.mark.parametrize("change", [standalone_of_other_bytes, looping, bomb, truncated, missing_base, wrong_base])
def test_hostile_records_from_another_store_are_refused_and_nothing_is_kept(packed, tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    origin, _ = packed
    bad = tamper(origin, change)
    target = Registry.init(tmp_path / "target")
    result = run_cli("pull", str(origin.root.parent), registry=target)
    assert_clean_failure(result, 7)
    assert bad[7:19] in result.stderr or "refused" in result.stderr or "missing" in result.stderr
    assert not target.objects.contains(bad)
    assert not target.refs.names() or not target.refs.read("m").versions
    assert target.fsck().ok
    assert not origin.fsck().ok  # and the source's fsck names it
    problem = " ".join(origin.fsck().problems)
    assert bad in problem


def test_a_hostile_record_in_the_store_fails_a_load_with_one_clear_error(packed) -> None:
    origin, _ = packed
    tamper(origin, looping)
    with pytest.raises(Exception) as caught:
        load_state_dict(Registry(origin.root), "m@1.0.0")
    assert "loops" in str(caught.value) and "\n" not in str(caught.value)
    result = run_cli("path", "m@1.0.0", registry=origin)
    assert_clean_failure(result, 5)


def test_push_to_a_bucket_uploads_records_and_clone_reads_them_back(packed, bucket_url: str, tmp_path: Path) -> None:
    origin, states = packed
    pushed = transfer_cli("push", bucket_url, registry=origin)
    registered = sum(f.size for n in range(VERSIONS) for f in origin.get(f"m@1.{n}.0").files)
    assert pushed["bytes"] < 0.65 * registered
    assert run_cli("fsck", bucket_url, registry=origin).exit_code == 0
    result = run_cli("clone", bucket_url, str(tmp_path / "copy"))
    assert result.exit_code == 0, result.stderr
    copy = Registry.open(tmp_path / "copy")
    assert records(copy) == records(origin) and copy.fsck().ok
    assert_bit_exact(copy, states)
    again = transfer_cli("push", bucket_url, registry=origin)
    assert (again["objects"], again["bytes"]) == (0, 0)


def test_bucket_gc_keeps_the_bases_of_kept_records(packed, bucket_url: str) -> None:
    origin, states = packed
    transfer_cli("push", bucket_url, registry=origin)
    registry_gc = run_cli("gc", bucket_url, "--grace", "0", registry=origin)
    assert registry_gc.exit_code == 0 and "removed 0 unreachable" in registry_gc.stdout
    assert run_cli("fsck", bucket_url, registry=origin).exit_code == 0


def test_a_newer_version_after_a_bucket_push_packs_and_pushes_again(packed, bucket_url: str, tmp_path: Path) -> None:
    origin, states = packed
    transfer_cli("push", bucket_url, registry=origin)
    newer = {name: value + 1e-5 for name, value in states[-1].items()}
    register(origin, "m@1.5.0", newer)
    origin.pack()
    assert all(tensor_chunks(origin, "m@1.4.0"))
    pushed = transfer_cli("push", bucket_url, registry=origin)
    assert pushed["versions"] == ["m@1.5.0"]
    assert run_cli("fsck", bucket_url, registry=origin).exit_code == 0
    copy_dir = tmp_path / "copy"
    assert run_cli("clone", bucket_url, str(copy_dir)).exit_code == 0
    assert_bit_exact(Registry.open(copy_dir), [*states, newer])


@pytest.mark.parametrize("how", ["static", "mreg serve"])
def test_clone_over_http_reads_records(packed, tmp_path: Path, how: str, serve) -> None:  # type: ignore[no-untyped-def]
    """A static server of the store, and ``mreg serve``, both hand out ``.pack`` objects."""
    from test_web_registry import served

    origin, states = packed
    origin.update_server_info()
    if how == "static":
        url = serve(origin.root).url
        result = run_cli("clone", url, str(tmp_path / "copy"))
    else:
        with served(origin.root.parent) as url:
            result = run_cli("clone", url, str(tmp_path / "copy"))
    assert result.exit_code == 0, result.stderr
    copy = Registry.open(tmp_path / "copy")
    assert records(copy) == records(origin) and copy.fsck().ok
    assert_bit_exact(copy, states)
