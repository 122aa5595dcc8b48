"""The content-addressed object store: naming, writing once, verifying, enumerating."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flip_byte, modules_loaded_by

from mreg.errors import CorruptObjectError, InputFileError, ObjectNotFoundError
from mreg.formats.cuts import stream_cuts
from mreg.records.hashing import BUILTIN_BUDGET
from mreg.registry import Registry
from mreg.storage.blobs import read_blocks
from mreg.storage.objects import ObjectStore


@pytest.fixture
def store(registry: Registry) -> ObjectStore:
    return registry.objects


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class CountingStream(io.BytesIO):
    """A stream that counts every byte handed out, however it is read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = super().readinto(buffer)
        self.bytes_read += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_add_file_digest_and_fanout_path(store: ObjectStore, make_file) -> None:
    content = os.urandom(10_000)
    stored = store.add_file(make_file("w.dat", content))
    hexdigest = hashlib.sha256(content).hexdigest()
    assert stored.digest == "sha256:" + hexdigest
    assert stored.size == len(content) and stored.written
    path = store.root / "objects" / hexdigest[:2] / hexdigest[2:]
    assert store.object_path(stored.digest) == path
    assert path.read_bytes() == content
    assert len(path.name) == 62 and len(path.parent.name) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.contains(stored.digest) and store.size(stored.digest) == len(content)


def test_empty_file(store: ObjectStore, make_file) -> None:
    stored = store.add_file(make_file("empty", b""))
    assert stored.digest == sha(b"") and stored.size == 0
    assert store.read_bytes(stored.digest) == b""


def test_re_adding_present_content_writes_nothing(store: ObjectStore, make_file) -> None:
    first = store.add_file(make_file("a", b"same bytes"))
    path = store.object_path(first.digest)
    before = path.stat()
    second = store.add_file(make_file("b", b"same bytes"))
    assert second.digest == first.digest and not second.written
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns
    assert store.temp_files() == []
    assert list(store.iter_digests()) == [first.digest]


def test_add_blob_with_expected_digest(store: ObjectStore) -> None:
    good = b"fetched bytes"
    stored = store.add_blob([good[:4], memoryview(good[4:])], expected=sha(good))
    assert stored.digest == sha(good) and store.read_bytes(stored.digest) == good


def test_add_blob_refuses_mismatching_bytes_and_keeps_nothing(store: ObjectStore) -> None:
    expected = sha(b"what we asked for")
    with pytest.raises(CorruptObjectError) as caught:
        store.add_blob([b"something else"], expected=expected)
    assert caught.value.digest == expected
    assert list(store.iter_digests()) == []
    assert not store.contains(sha(b"something else"))
    assert store.temp_files() == []


def test_failing_stream_leaves_no_temp_file(store: ObjectStore) -> None:
    def blocks():
        yield b"partial"
        raise OSError("source went away")

    with pytest.raises(OSError, match="went away"):
        store.add_stream(blocks())
    assert store.temp_files() == [] and list(store.iter_digests()) == []


def test_input_is_read_only_once(store: ObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    stream = CountingStream(data)
    stored = store.add_stream(read_blocks(stream, block_size=1 << 20))
    assert stream.bytes_read == len(data)
    assert stored.digest == sha(data) and store.read_bytes(stored.digest) == data


def test_progress_reports_every_byte(store: ObjectStore) -> None:
    seen: list[int] = []
    store.add_stream(read_blocks(io.BytesIO(b"x" * 2500), block_size=1000), progress=seen.append)
    assert seen == [1000, 1000, 500]


def test_hash_file_stores_nothing(store: ObjectStore, make_file) -> None:
    digest, size = store.hash_file(make_file("h", b"hash me"))
    assert (digest, size) == (sha(b"hash me"), 7)
    assert list(store.iter_digests()) == [] and not store.contains(digest)


def test_verify_detects_a_flipped_byte(store: ObjectStore, make_file) -> None:
    content = b"0123456789" * 100
    digest = store.add_file(make_file("v", content)).digest
    assert store.verify(digest) is None
    flip_byte(store.object_path(digest), 500)
    assert store.verify(digest) is not None
    with pytest.raises(CorruptObjectError):
        store.read_bytes(digest)
    with pytest.raises(CorruptObjectError):
        b"".join(store.iter_bytes(digest))


def test_verify_and_read_of_missing_object(store: ObjectStore) -> None:
    missing = sha(b"never stored")
    assert store.verify(missing) == "missing"
    with pytest.raises(ObjectNotFoundError):
        store.read_bytes(missing)
    with pytest.raises(ObjectNotFoundError):
        store.size(missing)
    with pytest.raises(ObjectNotFoundError):
        list(store.iter_bytes(missing))


def test_iter_bytes_streams_exact_content(store: ObjectStore, make_file) -> None:
    content = os.urandom(9 * 1024 * 1024 + 3)
    digest = store.add_file(make_file("big", content)).digest
    assert b"".join(store.iter_bytes(digest)) == content


def test_iter_digests_and_find_prefix(store: ObjectStore) -> None:
    digests = sorted(store.add_bytes(f"object {i}".encode()).digest for i in range(20))
    (store.objects_dir / "zzz").mkdir()  # not a fan-out directory
    (store.objects_dir / digests[0][7:9] / "not-an-object").write_text("x")
    assert sorted(store.iter_digests()) == digests
    target = digests[5]
    assert store.find_prefix(target[7:15]) == [target]
    assert store.find_prefix(target[7:]) == [target]
    same_fanout = [d for d in digests if d[7:9] == target[7:9]]
    assert store.find_prefix(target[7:9]) == same_fanout
    unknown = next(p for p in ("00000000", "ffffffff") if not any(d[7:].startswith(p) for d in digests))
    assert store.find_prefix(unknown) == []
    assert len(store.stray_files()) == 2


def test_missing_input_raises_input_file_error(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as caught:
        store.add_file(tmp_path / "nope.dat")
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(InputFileError):
        store.hash_file(tmp_path / "nope.dat")


def test_directory_input_raises_input_file_error(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(InputFileError):
        store.add_file(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file with mode 000")
def test_unreadable_input_raises_input_file_error(store: ObjectStore, make_file) -> None:
    path = make_file("secret", b"x")
    path.chmod(0)
    with pytest.raises(InputFileError, match="cannot read"):
        store.add_file(path)
    assert list(store.iter_digests()) == []


def test_delete(store: ObjectStore) -> None:
    digest = store.add_bytes(b"gone soon").digest
    store.delete(digest)
    assert not store.contains(digest)
    store.delete(digest)  # deleting twice is harmless


def synced_directories(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, record the inode of every directory fsynced."""
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            synced.append(status.st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_chunked_file_syncs_each_directory_once(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    numpy = pytest.importorskip("numpy")
    from safetensors.numpy import save

    data = save({f"t{i:02d}": numpy.full(8192, i, dtype=numpy.float32) for i in range(40)})  # 32 KiB tensors: chunks
    synced = synced_directories(monkeypatch)
    cuts, blocks = stream_cuts([data])
    stored = store.add_stream(blocks, cuts=cuts)
    chunks = store.chunks(stored.digest)
    assert len(chunks) >= 40
    fanouts = {os.stat(store.object_path(digest).parent).st_ino for digest, _ in chunks}
    # objects/ gains a fan-out per new directory: synced once for the whole batch (and
    # once more for the index's), not once per new fan-out
    assert synced.count(os.stat(store.objects_dir).st_ino) <= 2
    assert all(synced.count(fanout) <= 2 for fanout in fanouts)  # a chunk's, and maybe the index's
    assert b"".join(store.iter_bytes(stored.digest)) == data
    assert store.temp_files() == []


HASHES_IN_A_FRESH_PROCESS = """
import sys
from mreg.records.hashing import sha256, sha256_hex
sizes = [int(size) for size in sys.argv[1:]]
for size in sizes:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    hasher = sha256(size)
    hasher.update(data[: size // 2])
    hasher.update(memoryview(data)[size // 2 :])
    print(size, sha256_hex(data), hasher.hexdigest(), "hashlib" in sys.modules)
"""


def test_the_builtin_hasher_takes_small_inputs_until_its_budget_then_openssl() -> None:
    """In a process that has not loaded hashlib, small inputs are hashed by the interpreter's
    own SHA-256 until about what OpenSSL's import costs; both give SHA-256."""
    sizes = [0, 1, 4096, 100_000, BUILTIN_BUDGET, 7]
    completed = subprocess.run(
        [sys.executable, "-c", HASHES_IN_A_FRESH_PROCESS, *map(str, sizes)], capture_output=True, text=True, check=True
    )
    rows = [line.split() for line in completed.stdout.splitlines()]
    for (size, whole, streamed, _loaded), expected in zip(rows, sizes, strict=True):
        data = bytes(range(256)) * (expected // 256) + bytes(expected % 256)
        assert int(size) == expected and whole == streamed == hashlib.sha256(data).hexdigest()
    # 0, 1, 4096 and 100,000 bytes fit the budget; the next input exceeds what is left of it
    assert [loaded for *_, loaded in rows] == ["False"] * 4 + ["True"] * 2


def test_show_loads_no_openssl_and_still_finds_a_damaged_manifest(registry: Registry, make_file, tmp_path: Path) -> None:
    """`mreg show` hashes its manifest with the interpreter's own SHA-256 (OpenSSL's import is
    a tenth of show's start-up), and still refuses bytes that do not match their digest."""
    added = registry.add("demo@1.0.0", [make_file("w.bin", b"weights")])
    result, loaded = modules_loaded_by("show", "demo@1.0.0", cwd=tmp_path, prefixes=["hashlib", "_hashlib"])
    assert result.exit_code == 0, result.stderr
    assert loaded == []
    flip_byte(registry.objects.object_path(added.digest), 5)
    result, loaded = modules_loaded_by("show", "demo@1.0.0", cwd=tmp_path, prefixes=["hashlib"])
    assert result.exit_code != 0 and "do not match" in result.stderr
