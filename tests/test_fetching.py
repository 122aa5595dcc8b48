"""Fetching chunked files from another store: one ordered pass, chunks fetched ahead, verified."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_object_store import synced_directories

from mreg.errors import RemoteError
from mreg.formats.cuts import stream_cuts
from mreg.registry import Registry
from mreg.sharing import fetching
from mreg.sharing.fetching import fetch_all
from mreg.sharing.sources import DirectorySource, Stream

numpy = pytest.importorskip("numpy")


def add_weights(registry: Registry, data: bytes):  # type: ignore[no-untyped-def]
    """Store a safetensors file's bytes cut at its tensors, as ``mreg add`` stores it."""
    cuts, blocks = stream_cuts([data])
    return registry.objects.add_stream(blocks, cuts=cuts)


def weight_file(seed: int, tensors: int = 12, changed: int | None = None) -> bytes:
    """A safetensors file of 32 KiB tensors (one chunk each); ``changed`` alters one."""
    from safetensors.numpy import save

    generator = numpy.random.default_rng(seed)
    arrays = {f"t{i:02d}": generator.standard_normal(8192).astype(numpy.float32) for i in range(tensors)}
    if changed is not None:
        arrays[f"t{changed:02d}"] = arrays[f"t{changed:02d}"] + 1
    return save(arrays)


class CountingSource(DirectorySource):
    """A directory store that counts the objects asked of it and can shorten one."""

    def __init__(self, root: Path, short: str | None = None) -> None:
        super().__init__(root)
        self.asked: list[str] = []
        self.short = short

    def stream(self, path: str) -> Stream | None:
        self.asked.append(path)
        streamed = super().stream(path)
        if streamed is None or self.short is None or not path.endswith(self.short[9:]):
            return streamed
        blocks, _ = streamed
        return iter([b"".join(blocks)[:-1]]), None


def stored(tmp_path: Path, *files: bytes) -> tuple[Registry, list]:
    source = Registry.init(tmp_path / "source")
    return source, [add_weights(source, data) for data in files]


@pytest.mark.parametrize("budget", [30_000, 70_000, 1 << 20])
def test_a_chunked_file_arrives_whole_with_every_chunk_asked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """Two versions sharing all chunks but one, fetched together: each chunk is asked for
    once, whatever the prefetch budget (30,000: every 32 KiB tensor is streamed in turn;
    70,000: two ahead), and both files read back exactly."""
    first, second = weight_file(1), weight_file(1, changed=5)
    source, objects = stored(tmp_path, first, second)
    monkeypatch.setattr(fetching, "PREFETCH_BYTES", budget)
    local = Registry.init(tmp_path / "local")
    counting = CountingSource(source.objects.root)
    counter = fetch_all(counting, local.objects, {o.digest: o.size for o in objects}, 3)
    chunk_requests = [p for p in counting.asked if not p.endswith(".chunks")]
    assert len(chunk_requests) == len(set(chunk_requests))
    for data, obj in zip((first, second), objects):
        assert local.objects.is_chunked(obj.digest)
        assert b"".join(local.objects.iter_bytes(obj.digest)) == data
    assert counter.objects == 2 and local.fsck().ok and local.objects.temp_files() == []


def test_a_chunk_repeated_in_one_file_is_fetched_and_counted_once(tmp_path: Path) -> None:
    """Two equal tensors in one file are one chunk: asked for once, counted once, the file exact."""
    from safetensors.numpy import save

    tensor = numpy.random.default_rng(7).standard_normal(8192).astype(numpy.float32)
    data = save({"a": tensor, "b": tensor.copy(), "c": tensor + 1, "d": tensor.copy()})
    source, (obj,) = stored(tmp_path, data)
    local = Registry.init(tmp_path / "local")
    counting = CountingSource(source.objects.root)
    counter = fetch_all(counting, local.objects, {obj.digest: obj.size}, 2)
    chunk_requests = [p for p in counting.asked if not p.endswith(".chunks") and not p.endswith(obj.digest[9:])]
    assert len(chunk_requests) == len(set(chunk_requests)) == len(set(source.objects.chunks(obj.digest)))
    assert b"".join(local.objects.iter_bytes(obj.digest)) == data
    on_disk = sum(f.stat().st_size for f in (local.objects.root / "objects").rglob("*") if f.is_file())
    assert counter.bytes == on_disk and local.fsck().ok and local.objects.temp_files() == []


def test_chunks_stored_here_are_not_fetched(tmp_path: Path) -> None:
    """Only the chunk that differs travels; the others feed the file's digest from here."""
    source, (old, new) = stored(tmp_path, weight_file(2), weight_file(2, changed=3))
    local = Registry.init(tmp_path / "local")
    add_weights(local, weight_file(2))
    counting = CountingSource(source.objects.root)
    fetch_all(counting, local.objects, {new.digest: new.size}, 2)
    fetched = {p for p in counting.asked if not p.endswith(".chunks") and not p.endswith(new.digest[9:])}
    assert len(fetched) == 1
    assert b"".join(local.objects.iter_bytes(new.digest)) == weight_file(2, changed=3)


def test_a_short_chunk_is_refused_and_the_file_not_recorded(tmp_path: Path) -> None:
    source, (obj,) = stored(tmp_path, weight_file(3))
    chunk = source.objects.chunks(obj.digest)[4][0]
    local = Registry.init(tmp_path / "local")
    with pytest.raises(RemoteError, match="expected; refused"):
        fetch_all(CountingSource(source.objects.root, short=chunk), local.objects, {obj.digest: obj.size}, 2)
    assert not local.objects.contains(obj.digest) and not local.objects.contains(chunk)
    assert local.fsck().ok and local.objects.temp_files() == []


def test_a_fetched_file_syncs_each_directory_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks of a fetched file are made durable as one batch, as an add's are."""
    source, (obj,) = stored(tmp_path, weight_file(4, tensors=30))
    local = Registry.init(tmp_path / "local")
    synced = synced_directories(monkeypatch)
    fetch_all(DirectorySource(source.objects.root), local.objects, {obj.digest: obj.size}, 2)
    assert synced.count(os.stat(local.objects.objects_dir).st_ino) <= 2  # the chunks' batch, the index's
    fanouts = {os.stat(local.objects.object_path(d).parent).st_ino for d, _ in local.objects.chunks(obj.digest)}
    assert all(synced.count(fanout) <= 2 for fanout in fanouts)
