"""push, pull and clone between registries (directories and static HTTP servers), and info/models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    StoreServer,
    assert_clean_failure,
    closed_port_url,
    flip_byte,
    http_fault,
    object_file,
    run_cli,
    store_snapshot,
    weights,
)

from mreg import Blob
from mreg.registry import Registry

Serve = Callable[[Path], StoreServer]


def add(registry: Registry, spec: str, data: bytes, **options: object) -> str:
    """Register one in-memory file as a version; return the manifest digest."""
    return registry.add(spec, [Blob("model.bin", lambda: [data])], **options).digest  # type: ignore[arg-type]


def transfer_cli(*args: str, registry: Registry) -> dict:
    """Run push or pull with --json and return its report."""
    result = run_cli(*args, "--json", registry=registry)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def refs_of(registry: Registry) -> dict[str, tuple[dict, dict]]:
    """Every model's versions and tags."""
    return {name: (dict(t.versions), dict(t.tags)) for name in registry.refs.names() if (t := registry.refs.read(name)).versions}


def info_models(registry: Registry) -> list[str]:
    """The lines of .mreg/info/models."""
    return (registry.root / "info" / "models").read_text().splitlines()


def object_names(registry: Registry) -> set[str]:
    """The files under objects/ (blobs and .chunks indexes)."""
    return {str(p.relative_to(registry.objects.objects_dir)) for p in registry.objects.objects_dir.rglob("*") if p.is_file()}


@pytest.fixture
def origin(tmp_path: Path) -> Registry:
    """A registry with two models, several versions, moved tags and a multi-file version."""
    a = Registry.init(tmp_path / "a")
    add(a, "m@1.0.0", b"m one", author="alice", message="first", tags=["prod"])
    add(a, "m@1.1.0", b"m two", author="alice", message="second")
    add(a, "m@2.0.0-rc.1", b"m three")
    a.tag("m@1.1.0", "prod")
    a.tag("m@2.0.0-rc.1", "next")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "config.json").write_text("{}")
    (tmp_path / "files" / "weights.bin").write_bytes(os.urandom(5000))
    a.add("team/net@0.1.0", [tmp_path / "files"], metrics={"acc": 0.5})
    return a


def assert_same_models(source: Registry, copy: Registry) -> None:
    """Every version resolves to the same digest, with the same tags and the same file bytes."""
    assert refs_of(copy) == refs_of(source)
    for name, (versions, _) in refs_of(source).items():
        for version, digest in versions.items():
            assert copy.resolve(f"{name}@{version}") == digest
            for entry in source.manifest(digest).files:
                assert copy.path(digest, entry.path).read_bytes() == source.path(digest, entry.path).read_bytes()


def test_push_then_pull_round_trip_between_three_registries(origin: Registry, tmp_path: Path, serve: Serve) -> None:
    """A push -> B; C pull <- B (directory); D pull <- B (HTTP): every digest, tag and log entry arrives."""
    b, c, d = (Registry.init(tmp_path / n) for n in "bcd")
    origin_before = store_snapshot(origin)
    pushed = transfer_cli("push", str(b.root.parent), registry=origin)
    assert sorted(pushed["versions"]) == ["m@1.0.0", "m@1.1.0", "m@2.0.0-rc.1", "team/net@0.1.0"]
    assert sorted(pushed["tags"]) == ["m@next -> 2.0.0-rc.1", "m@prod -> 1.1.0"]
    assert pushed["objects"] == 4 + 5  # four manifests, five distinct files
    assert store_snapshot(origin) == origin_before
    b_before = store_snapshot(b)
    url = serve(b.root).url
    assert transfer_cli("pull", str(b.root.parent), registry=c)["objects"] == 9
    assert transfer_cli("pull", url, registry=d)["objects"] == 9
    assert store_snapshot(b) == b_before  # pulled from, never written to
    for copy in (b, c, d):
        assert_same_models(origin, Registry(copy.root))
        assert copy.fsck().ok, copy.fsck().problems
        assert info_models(copy) == ["m", "team/net"]
    assert origin.fsck().ok
    for args, registry in ((("pull", url), d), (("pull", str(b.root.parent)), c), (("push", str(b.root.parent)), origin)):
        again = transfer_cli(*args, registry=registry)
        assert (again["objects"], again["bytes"], again["versions"], again["tags"]) == (0, 0, [], [])
        assert "up to date" in run_cli(*args, registry=registry).stdout
    original = set(origin.log("m"))
    for copy in (b, c, d):
        log = Registry(copy.root).log("m")
        assert original <= set(log)
        assert any(e.ref == "tags/prod" and (e.old, e.new) == ("1.0.0", "1.1.0") for e in log)
        assert any(e.author == "alice" and e.message == "first" for e in log)


def test_only_missing_objects_and_chosen_models_are_copied(origin: Registry, tmp_path: Path, serve: Serve) -> None:
    """pull NAME copies that model only; a later pull copies just what is still missing."""
    b = Registry.init(tmp_path / "b")
    server = serve(origin.root)
    first = b.pull(server.url, ["team/net"])
    assert (first.objects, first.versions) == (3, ["team/net@0.1.0"])  # a manifest and two files
    assert b.refs.names() == ["team/net"]
    server.requests.clear()
    second = b.pull(server.url)
    assert second.objects == 3 + 3 and sorted(second.versions) == ["m@1.0.0", "m@1.1.0", "m@2.0.0-rc.1"]
    fetched = {p.removeprefix("/objects/").replace("/", "") for p in server.requests if p.startswith("/objects/")}
    m_objects = {
        d for v in ("1.0.0", "1.1.0", "2.0.0-rc.1") for d in (origin.resolve(f"m@{v}"), origin.file_entry(f"m@{v}").digest)
    }
    assert fetched == {d.removeprefix("sha256:") for d in m_objects}
    assert_same_models(origin, b)


def test_a_second_pull_reads_only_tables(origin: Registry, tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulling the same state again asks the server for the model list and each model's
    refs and notes tables only, and reads no manifest here."""
    b = Registry.init(tmp_path / "b")
    server = serve(origin.root)
    b.pull(server.url)
    server.requests.clear()
    read: list[str] = []
    manifest = Registry.manifest
    monkeypatch.setattr(Registry, "manifest", lambda self, digest, **kw: (read.append(digest), manifest(self, digest, **kw))[1])
    again = b.pull(server.url)
    assert (again.objects, again.versions, again.tags) == (0, [], [])
    names = origin.refs.names()
    assert sorted(server.requests) == sorted(["/info/models", *(f"/models/{n}/{f}" for n in names for f in ("_refs", "_notes"))])
    assert read == []


@pytest.mark.parametrize("kind", ["dir", "http"])
def test_chunked_weights_travel_by_pull_fetching_only_missing_chunks(tmp_path: Path, serve: Serve, kind: str) -> None:
    """Chunk indexes and chunks arrive; chunks the destination has are not fetched again."""
    pytest.importorskip("torch")
    from mreg.pytorch.models import register

    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    register(a, "w@1.0.0", weights())
    register(a, "w@1.1.0", weights(changed=3))
    register(b, "mine@1.0.0", weights())  # b has w@1.0.0's file, so 4 of the 5 chunks of w@1.1.0
    server = serve(a.root) if kind == "http" else None
    before = object_names(b)
    report = transfer_cli("pull", server.url if server else str(a.root), registry=b)
    assert report["versions"] == ["w@1.0.0", "w@1.1.0"]
    assert len(object_names(b) - before) == 2 + 1 + 1  # two manifests, w@1.1.0's index, one new chunk
    changed = a.objects.chunks(a.file_entry("w@1.1.0").digest)[-1][0]
    for version in ("1.0.0", "1.1.0"):
        entry = a.file_entry(f"w@{version}")
        assert b.objects.is_chunked(entry.digest)
        assert b.objects.chunks(entry.digest) == a.objects.chunks(entry.digest)
        assert b.path(f"w@{version}").read_bytes() == a.path(f"w@{version}").read_bytes()
    if server:
        manifests = {a.resolve("w@1.0.0"), a.resolve("w@1.1.0")}
        blobs = [p for p in server.requests if p.startswith("/objects/") and not p.endswith(".chunks")]
        downloaded = [p for p in blobs if (tmp_path / "a" / ".mreg" / p.lstrip("/")).is_file()]
        assert sorted(downloaded) == sorted(f"/objects/{d[7:9]}/{d[9:]}" for d in (*manifests, changed))
    assert b.fsck().ok and a.fsck().ok


def test_the_report_counts_the_bytes_actually_copied(tmp_path: Path) -> None:
    """Pulling a version that shares all but one chunk reports roughly that chunk's size."""
    pytest.importorskip("torch")
    from mreg.pytorch.models import register

    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    register(a, "w@1.0.0", weights())
    b.pull(str(a.root))
    register(a, "w@1.1.0", weights(changed=3))
    report = b.pull(str(a.root))
    assert report.bytes < a.file_entry("w@1.1.0").size // 2


@pytest.mark.parametrize("direction", ["push", "pull", "pull over http"])
def test_a_conflicting_version_is_refused_and_nothing_changes(tmp_path: Path, serve: Serve, direction: str) -> None:
    """The same version with other content on both sides: exit 4, destination byte for byte unchanged."""
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    add(a, "m@1.0.0", b"theirs")
    add(a, "fresh@1.0.0", b"would be new")
    add(b, "m@1.0.0", b"ours")
    before, source_before = store_snapshot(b), store_snapshot(a)
    for force in ([], ["--force"]):
        if direction == "push":
            result = run_cli("push", str(b.root.parent), *force, registry=a)
        else:
            result = run_cli("pull", serve(a.root).url if "http" in direction else str(a.root.parent), *force, registry=b)
        assert_clean_failure(result, code=4)
        assert "m@1.0.0" in result.stderr
        assert store_snapshot(b) == before and store_snapshot(a) == source_before
    assert Registry(b.root).fsck().ok


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_conflicting_tag_needs_force(tmp_path: Path, direction: str) -> None:
    """A tag pointing elsewhere on the destination is a conflict; --force moves it (and logs it)."""
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    add(a, "m@1.0.0", b"one")
    add(a, "m@1.1.0", b"two")
    b.pull(str(a.root))
    a.tag("m@1.1.0", "prod")
    b.tag("m@1.0.0", "prod")
    args = ("push", str(b.root.parent)) if direction == "push" else ("pull", str(a.root.parent))
    runner = a if direction == "push" else b
    before = store_snapshot(b)
    refused = run_cli(*args, registry=runner)
    assert_clean_failure(refused, code=4)
    assert "prod" in refused.stderr and "--force" in refused.stderr
    assert store_snapshot(b) == before
    forced = transfer_cli(*args, "--force", registry=runner)
    assert forced["tags"] == ["m@prod -> 1.1.0"]
    assert Registry(b.root).resolve("m@prod") == a.resolve("m@1.1.0")
    assert any(e.ref == "tags/prod" and (e.old, e.new) == ("1.0.0", "1.1.0") for e in Registry(b.root).log("m"))
    assert Registry(b.root).fsck().ok


@pytest.mark.parametrize("fault", ["corrupt dir", "corrupt http", "truncated http", "500 http"])
def test_a_bad_source_object_stops_a_pull_before_any_ref_changes(origin: Registry, tmp_path: Path, serve: Serve, fault: str) -> None:
    """pull verifies every object: a bad one stops it (exit 7) naming it; no ref changes, no temp file."""
    b = Registry.init(tmp_path / "b")
    bad = origin.file_entry("m@1.1.0").digest
    if fault == "corrupt dir":
        flip_byte(object_file(origin, bad))
        location = str(origin.root.parent)
    else:
        server = serve(origin.root)
        server.fault = http_fault(fault.split()[0], f"/objects/{bad[7:9]}/{bad[9:]}", threading.Event())
        location = server.url
    result = run_cli("pull", location, registry=b)
    assert_clean_failure(result, code=7)
    assert bad[9:] in result.stderr and location in result.stderr  # the digest, or the object's URL
    assert b.refs.names() == [] and not b.objects.contains(bad)
    assert list((b.root / "tmp").iterdir()) == [] and b.fsck().ok
    assert not (b.root / "info" / "models").exists() or info_models(b) == []


def test_a_pull_killed_midway_leaves_both_stores_clean_and_can_be_repeated(tmp_path: Path) -> None:
    """SIGKILL while a 256 MiB file is being copied: both stores fsck clean, and pulling again works."""
    src, dst = Registry.init(tmp_path / "src"), Registry.init(tmp_path / "dst")
    big = tmp_path / "big.bin"
    with open(big, "wb") as stream:
        stream.truncate(256 << 20)
    assert run_cli("add", "big@1.0.0", str(big), registry=src).exit_code == 0
    big.unlink()
    process = subprocess.Popen(
        [sys.executable, "-m", "mreg", "--registry", str(dst.root), "pull", str(src.root.parent)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while not any(size > (1 << 20) for size in _sizes(dst.root / "tmp")):
            assert process.poll() is None, "the pull ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert dst.refs.names() == [] or not dst.refs.read("big").versions
    assert dst.fsck().ok and src.fsck().ok
    repeated = transfer_cli("pull", str(src.root.parent), registry=dst)
    assert repeated["versions"] == ["big@1.0.0"]
    assert dst.resolve("big@1.0.0") == src.resolve("big@1.0.0")
    assert dst.objects.size(dst.file_entry("big").digest) == 256 << 20
    assert dst.fsck().ok  # re-hashes the copy


def _sizes(directory: Path) -> list[int]:
    """The sizes of the files in a directory now (some may vanish while we look)."""
    found = []
    for path in directory.iterdir():
        try:
            found.append(path.stat().st_size)
        except FileNotFoundError:
            pass
    return found


def test_clone_records_origin_and_pull_origin_works(origin: Registry, tmp_path: Path) -> None:
    """mreg clone SRC DIR copies every model and sets remote.origin.url; pull origin fetches more."""
    result = run_cli("clone", "a", "copy")  # relative to the working directory, tmp_path
    assert result.exit_code == 0, result.stderr
    copy = Registry.open(tmp_path / "copy")
    assert_same_models(origin, copy)
    assert run_cli("config", "remote.origin.url", registry=copy).stdout == f"{tmp_path / 'a'}\n"
    add(origin, "m@3.0.0", b"later")
    pulled = transfer_cli("pull", "origin", registry=copy)
    assert pulled["versions"] == ["m@3.0.0"]
    assert Registry(copy.root).resolve("m") == origin.resolve("m@3.0.0")
    assert copy.fsck().ok
    add(copy, "m@4.0.0", b"made in the clone")
    assert transfer_cli("push", "origin", registry=copy)["versions"] == ["m@4.0.0"]
    assert origin.resolve("m") == copy.resolve("m@4.0.0") and origin.fsck().ok
    assert_clean_failure(run_cli("clone", "a", "copy"), code=4)  # not into a registry with models


def test_clone_over_http_and_push_to_http_is_refused(origin: Registry, tmp_path: Path, serve: Serve) -> None:
    """A clone from a URL pulls over HTTP; pushing to an http URL (or to such an origin) fails cleanly."""
    url = serve(origin.root).url
    assert run_cli("clone", url, str(tmp_path / "copy")).exit_code == 0
    copy = Registry.open(tmp_path / "copy")
    assert_same_models(origin, copy)
    assert copy.config.get("remote.origin.url") == url
    add(copy, "mine@1.0.0", b"local only")
    before, served = store_snapshot(copy), store_snapshot(origin)
    for target in ("origin", url, closed_port_url()):
        result = run_cli("push", target, registry=copy)
        assert_clean_failure(result, code=7)
        assert "http" in result.stderr.lower()
    assert store_snapshot(copy) == before and store_snapshot(origin) == served


def test_transfer_errors_are_clean(registry: Registry, tmp_path: Path) -> None:
    """A source or destination that is not a registry, or an unreachable URL, is one clear error."""
    add(registry, "m@1.0.0", b"x")
    before = store_snapshot(registry)
    assert_clean_failure(run_cli("pull", str(tmp_path / "nowhere"), registry=registry), code=7)
    assert_clean_failure(run_cli("pull", closed_port_url(), registry=registry), code=7)
    assert_clean_failure(run_cli("push", str(tmp_path / "nowhere"), registry=registry), code=3)
    assert_clean_failure(run_cli("pull", str(Registry.init(tmp_path / "e").root), "absent", registry=registry), code=3)
    assert store_snapshot(registry) == before


def test_a_model_whose_versions_were_all_removed_does_not_stop_a_transfer(tmp_path: Path) -> None:
    """A removed model is simply not there: pull and push copy the others."""
    a, b, c = (Registry.init(tmp_path / n) for n in "abc")
    add(a, "gone@1.0.0", b"gone")
    add(a, "kept@1.0.0", b"kept")
    a.remove("gone@1.0.0")
    assert b.pull(str(a.root)).versions == ["kept@1.0.0"]
    assert run_cli("push", str(c.root.parent), registry=a).exit_code == 0


def test_info_models_is_kept_current_and_update_server_info_rewrites_it(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """add of a new model, rm of its last version and pull keep info/models exact."""
    assert run_cli("add", "b/net@1.0.0", str(Path(__file__)), registry=registry).exit_code == 0
    assert info_models(registry) == ["b/net"]
    add(registry, "a@1.0.0", b"a1")
    add(registry, "a@1.1.0", b"a2")
    assert info_models(registry) == ["a", "b/net"]
    run_cli("rm", "a@1.0.0", registry=registry)
    assert info_models(registry) == ["a", "b/net"]
    run_cli("rm", "a@1.1.0", registry=registry)
    assert info_models(registry) == ["b/net"]
    other = Registry.init(tmp_path / "other")
    add(other, "c@1.0.0", b"c")
    registry.pull(str(other.root))
    assert info_models(registry) == ["b/net", "c"]
    for damage in ("stale\n", None):
        info = registry.root / "info" / "models"
        info.write_text(damage) if damage else info.unlink()
        assert run_cli("update-server-info", registry=registry).exit_code == 0
        assert info_models(registry) == ["b/net", "c"]
    (other.root / "info" / "models").unlink()  # a store copied by other means, not yet updated
    result = run_cli("pull", serve(other.root).url, registry=registry)
    assert_clean_failure(result, code=7)
    assert "update-server-info" in result.stderr


def test_a_chunk_index_that_lies_is_refused(tmp_path: Path) -> None:
    """A source whose .chunks lists real chunks in the wrong order: the pull fails (exit 7), nothing is kept."""
    from mreg.pytorch.models import register
    from mreg.storage.chunk_index import encode_chunk_index

    source = Registry.init(tmp_path / "source")
    digest = register(source, "net@1.0.0", weights()).digest
    entry = source.manifest(digest).files[0]
    chunks = source.objects.chunks(entry.digest)
    assert len(chunks) > 1
    index = source.objects.index_path(entry.digest)
    index.chmod(0o644)
    index.write_bytes(encode_chunk_index(entry.size, [chunks[1], chunks[0], *chunks[2:]]))
    copy = Registry.init(tmp_path / "copy")
    result = run_cli("pull", str(source.root), registry=copy)
    assert_clean_failure(result, 7)
    assert "do not add up" in result.stderr
    assert not copy.objects.contains(entry.digest) and copy.refs.names() == []
