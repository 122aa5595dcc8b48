"""A hostile store, as a directory and over HTTP on 127.0.0.1, against every reading command.

Each case crafts what a broken or malicious registry could serve. Whatever it is,
no command exits 70, hangs past its deadline, writes what it refused, or stops the
other models of the store from listing and resolving.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StoreServer, assert_clean_failure, run_cli, store_snapshot

from mreg import Blob
from mreg.errors import MregError
from mreg.records.manifest import Manifest
from mreg.registry import Registry
from mreg.storage.chunk_index import encode_chunk_index

Serve = Callable[[Path], StoreServer]
GOOD = b"good weights" * 100


def add(registry: Registry, spec: str, data: bytes = GOOD, **options: Any) -> str:
    return registry.add(spec, [Blob("model.bin", lambda: [data])], **options).digest


def write_refs(store: Registry, name: str, *lines: str, raw: bytes | None = None) -> None:
    path = store.root / "models" / name / "_refs"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw if raw is not None else ("# mreg refs 1\n" + "".join(f"{line}\n" for line in lines)).encode())


def store_manifest(store: Registry, manifest: Manifest) -> str:
    return store.objects.add_bytes(manifest.encode()).digest


@pytest.fixture
def hostile(tmp_path: Path, serve: Serve, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """A store with a model 'good' and whatever a test plants; yields a function giving its location."""
    store = Registry.init(tmp_path / "hostile")
    add(store, "good@1.0.0")
    add(store, "bad@1.0.0", b"bad weights")
    store.update_server_info()
    servers: list[StoreServer] = []

    def location() -> str:
        if request.param == "dir":
            return str(store.root.parent)
        servers.append(serve(store.root))
        return servers[-1].url

    location.store = store  # type: ignore[attr-defined]
    yield location


def local(tmp_path: Path, *fallbacks: str) -> Registry:
    registry = Registry.init(tmp_path / "local")
    for location in fallbacks:
        registry.set_config("fallback.url", location, add=True)
    return registry


BAD_TABLES = {
    "tag at a missing version": ["version 1.0.0 {d}", "tag prod 9.9.9", "latest 1.0.0"],
    "latest at a missing version": ["version 1.0.0 {d}", "latest 9.9.9"],
    "tag named latest": ["version 1.0.0 {d}", "tag latest 1.0.0", "latest 1.0.0"],
    "version-like tag": ["version 1.0.0 {d}", "tag v1 1.0.0", "latest 1.0.0"],
    "version as tag": ["version 1.0.0 {d}", "tag 1.0.0 1.0.0", "latest 1.0.0"],
    "invalid tag": ["version 1.0.0 {d}", "tag -x\x1b[31m 1.0.0", "latest 1.0.0"],
    "build-metadata twins": ["version 1.0.0+a {d}", "version 1.0.0+b {d}", "latest 1.0.0+b"],
    "versions out of order": ["version 2.0.0 {d}", "version 1.0.0 {d}", "latest 2.0.0"],
    "invalid digest": ["version 1.0.0 sha256:zz", "latest 1.0.0"],
    "garbage line": ["version 1.0.0 {d}", "rm -rf /", "latest 1.0.0"],
}


HTTP_TABLES = ("tag at a missing version", "build-metadata twins", "garbage line")  # the parsing is shared


@pytest.mark.parametrize(
    ("hostile", "case"),
    [("dir", case) for case in sorted(BAD_TABLES)] + [("http", case) for case in HTTP_TABLES],
    indirect=["hostile"],
)
def test_a_bad_ref_table_is_skipped_and_the_other_models_still_work(tmp_path: Path, hostile: Callable[[], str], case: str) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    digest = store.resolve("bad@1.0.0")
    write_refs(store, "bad", *(line.format(d=digest) for line in BAD_TABLES[case]))
    where = hostile()
    registry = local(tmp_path, where)
    before = store_snapshot(registry)

    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0, listed
    assert "\ngood " in listed.stdout and "\nbad " not in listed.stdout
    assert "'bad'" in listed.stderr and "\x1b" not in listed.stderr  # the warning names the model
    assert run_cli("show", "good", registry=registry).exit_code == 0
    for args in (("show", "bad@1.0.0"), ("resolve", "bad"), ("path", "bad@1.0.0"), ("ls", "bad"), ("diff", "good@1.0.0", "bad@1.0.0")):
        result = run_cli(*args, registry=registry)
        assert result.exit_code in (3, 7) or (args[0] == "ls" and result.exit_code == 3), (args, result)
        assert_clean_failure(result)
    assert [m.name for m in registry.models()] == ["good"]
    with pytest.raises(MregError):
        registry.get("bad")

    assert_clean_failure(run_cli("pull", where, registry=registry), code=7)
    assert_clean_failure(run_cli("pull", where, "bad", registry=registry), code=7)
    assert_clean_failure(run_cli("clone", where, str(tmp_path / "clone")), code=7)
    assert not (tmp_path / "clone" / ".mreg").exists()  # a failed clone leaves no registry
    after = store_snapshot(registry)
    unchanged = lambda files: {k: v for k, v in files.items() if not k.startswith(("objects/", "index.sqlite"))}  # noqa: E731 - the index is a cache reads fill
    assert unchanged(after) == unchanged(before)
    assert run_cli("pull", where, "good", registry=registry).exit_code == 0
    assert run_cli("fsck", registry=registry).exit_code == 0


@pytest.mark.parametrize("hostile", ["dir", "http"], indirect=True)
def test_a_ref_to_another_models_manifest_is_refused_and_not_kept(tmp_path: Path, hostile: Callable[[], str]) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    good = store.resolve("good@1.0.0")
    write_refs(store, "bad", f"version 1.0.0 {good}", "latest 1.0.0")
    where = hostile()
    registry = local(tmp_path, where)
    result = run_cli("show", "bad", registry=registry)
    assert_clean_failure(result, code=7)
    assert "good@1.0.0" in result.stderr
    assert not registry.objects.contains(good)  # the rejected manifest is not cached
    before = store_snapshot(registry)
    assert_clean_failure(run_cli("pull", where, registry=registry))
    assert registry.refs.names() == [] and store_snapshot(registry).keys() >= before.keys()
    assert run_cli("fsck", registry=registry).exit_code == 0


@pytest.mark.parametrize("hostile", ["dir", "http"], indirect=True)
@pytest.mark.parametrize("line", ['{"time": 5, "author": [], "ref": "latest", "old": null, "new": "1.0.0"}', "[1, 2]", '"text"', "{"])
def test_log_lines_of_the_wrong_types_stop_a_pull_before_anything_is_written(tmp_path: Path, hostile: Callable[[], str], line: str) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    with open(store.root / "models" / "bad" / "_log", "a") as log:
        log.write(line + "\n")
    registry = local(tmp_path)
    result = run_cli("pull", hostile(), registry=registry)
    assert_clean_failure(result, code=7)
    assert "log of 'bad'" in result.stderr
    assert registry.refs.names() == []


def replace_file(store: Registry, spec: str, size: int | None = None, digest: str | None = None) -> str:
    """Point ``spec`` at a manifest whose only file claims another size or digest; return the file digest."""
    manifest = store.manifest(store.resolve(spec))
    entry = manifest.files[0]
    entry = entry._replace(size=entry.size if size is None else size, digest=digest or entry.digest)
    forged = Manifest(**{**manifest.__dict__, "files": (entry,)})
    name, version = spec.split("@")
    write_refs(store, name, f"version {version} {store_manifest(store, forged)}", f"latest {version}")
    return entry.digest


@pytest.mark.parametrize("hostile", ["dir", "http"], indirect=True)
def test_a_file_size_the_manifest_lies_about_is_refused(tmp_path: Path, hostile: Callable[[], str]) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    replace_file(store, "bad@1.0.0", size=999 << 40)
    replace_file(store, "good@1.0.0", size=3)
    where = hostile()
    registry = local(tmp_path, where)
    for ref in ("bad", "good"):
        result = run_cli("path", ref, registry=registry)
        assert_clean_failure(result, code=7)
        assert "manifest says" in result.stderr or "expected" in result.stderr
    assert_clean_failure(run_cli("pull", where, registry=registry), code=7)
    fsck = run_cli("fsck", registry=registry)
    assert fsck.exit_code in (0, 1) and "Traceback" not in fsck.stderr


@pytest.mark.parametrize("hostile", ["dir", "http"], indirect=True)
def test_an_empty_chunk_index_under_the_empty_files_digest_is_refused(tmp_path: Path, hostile: Callable[[], str]) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    empty = "sha256:" + hashlib.sha256(b"").hexdigest()
    replace_file(store, "bad@1.0.0", size=0, digest=empty)
    store.objects.delete(empty)
    index = store.objects.index_path(empty)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(encode_chunk_index(0, []))
    registry = local(tmp_path, hostile())
    assert_clean_failure(run_cli("path", "bad", registry=registry), code=7)
    assert not registry.objects.contains(empty)
    # Had it been stored by an older mreg, fsck reports it instead of crashing.
    local_index = registry.objects.index_path(empty)
    local_index.parent.mkdir(parents=True, exist_ok=True)
    local_index.write_bytes(encode_chunk_index(0, []))
    fsck = run_cli("fsck", registry=registry)
    assert fsck.exit_code == 1 and "chunk index is empty" in fsck.stdout


@pytest.mark.parametrize("hostile", ["dir", "http"], indirect=True)
def test_chunk_sizes_that_do_not_match_the_chunks_are_refused(tmp_path: Path, hostile: Callable[[], str]) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    data = bytes(range(40))
    spec_digest = add(store, "chunky@1.0.0", data)
    whole = store.manifest(spec_digest).files[0].digest
    first, second = (store.objects.add_bytes(part).digest for part in (data[:10], data[10:]))
    store.objects.delete(whole)
    index = store.objects.index_path(whole)
    index.write_bytes(encode_chunk_index(40, [(first, 30), (second, 10)]))  # the sizes are swapped
    where = hostile()
    registry = local(tmp_path, where)
    result = run_cli("path", "chunky", registry=registry)
    assert_clean_failure(result, code=7)
    assert not registry.objects.contains(whole)
    assert_clean_failure(run_cli("pull", where, "chunky", registry=registry), code=7)
    assert registry.refs.names() == []


# ------------------------------------------------------------------ directory stores


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "outside"])
def test_a_directory_store_refuses_fifos_devices_and_links_out_of_it(tmp_path: Path, kind: str) -> None:
    store = Registry.init(tmp_path / "hostile")
    add(store, "good@1.0.0")
    add(store, "bad@1.0.0", b"bad")
    refs = store.root / "models" / "bad" / "_refs"
    outside = tmp_path / "outside_refs"
    outside.write_bytes(refs.read_bytes())
    refs.unlink()
    if kind == "fifo":
        os.mkfifo(refs)
    else:
        refs.symlink_to("/dev/zero" if kind == "/dev/zero" else outside)
    registry = local(tmp_path, str(store.root.parent))
    started = time.monotonic()
    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0 and "\ngood " in listed.stdout and "\nbad " not in listed.stdout
    assert "bad" in listed.stderr
    result = run_cli("show", "bad", registry=registry)
    assert_clean_failure(result, code=7)
    assert "regular file" in result.stderr or "outside the store" in result.stderr
    assert_clean_failure(run_cli("pull", str(store.root.parent), registry=registry), code=7)
    assert time.monotonic() - started < 10


def test_hash_object_and_add_refuse_a_fifo(registry: Registry, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    before = store_snapshot(registry)
    for args in (("hash-object", str(fifo)), ("hash-object", "-w", str(fifo)), ("add", "m@1.0.0", str(fifo))):
        result = run_cli(*args, registry=registry)
        assert_clean_failure(result, code=3)
        assert "regular file" in result.stderr
    assert store_snapshot(registry) == before


def test_push_refuses_a_destination_with_planted_symlinks(registry: Registry, tmp_path: Path) -> None:
    add(registry, "m@1.0.0")
    destination = Registry.init(tmp_path / "dest")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (destination.root / "models" / "m").symlink_to(elsewhere)
    result = run_cli("push", str(destination.root.parent), registry=registry)
    assert_clean_failure(result, code=7)
    assert "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------------ HTTP stores


def endless(handler: Any, rate: float | None = None, length: int | None = None) -> None:
    """Answer 200 and send bytes until the client goes away (slowly with ``rate``)."""
    handler.send_response(200)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            handler.wfile.write(b"x" if rate else b"x" * 65536)
            handler.wfile.flush()
            if rate:
                time.sleep(rate)
    except OSError:
        pass
    handler.close_connection = True


def redirect(handler: Any, to: str) -> None:
    handler.send_response(302)
    handler.send_header("Location", to)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


HTTP_FAULTS: dict[str, Callable[[Any], None]] = {
    "slow refs": lambda h: endless(h, rate=0.05, length=100),
    "slow refs without length": lambda h: endless(h, rate=0.05),
    "endless refs": endless,
    "redirect to file": lambda h: redirect(h, "file:///etc/passwd"),
    "redirect to ftp": lambda h: redirect(h, "ftp://127.0.0.1/x"),
    "redirect loop": lambda h: redirect(h, h.path),
}


@pytest.mark.parametrize("fault", sorted(HTTP_FAULTS))
def test_http_faults_end_in_time_with_the_failing_url(tmp_path: Path, serve: Serve, fault: str) -> None:
    store = Registry.init(tmp_path / "hostile")
    add(store, "good@1.0.0")
    add(store, "bad@1.0.0", b"bad")
    server = serve(store.root)
    server.fault = lambda h: h.path == "/models/bad/_refs" and (HTTP_FAULTS[fault](h) or True)
    registry = local(tmp_path, server.url)
    registry.set_config("http.timeout", "0.5")
    started = time.monotonic()
    result = run_cli("show", "bad", registry=registry)
    assert_clean_failure(result, code=7)
    assert f"{server.url}/models/bad/_refs" in result.stderr
    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0 and "good" in listed.stdout
    assert time.monotonic() - started < 15


def test_a_redirect_to_another_http_path_is_followed(tmp_path: Path, serve: Serve) -> None:
    store = Registry.init(tmp_path / "hostile")
    add(store, "good@1.0.0")
    server = serve(store.root)
    server.fault = lambda h: h.path == "/moved/models/good/_refs" and (redirect(h, "/models/good/_refs") or True)
    registry = local(tmp_path, server.url + "/moved")
    assert run_cli("resolve", "good", registry=registry).stdout.strip() == store.resolve("good")


def test_an_object_body_is_bounded_by_its_declared_size(tmp_path: Path, serve: Serve) -> None:
    store = Registry.init(tmp_path / "hostile")
    add(store, "six@1.0.0", b"sixbyt")
    blob = store.manifest(store.resolve("six")).files[0].digest
    server = serve(store.root)
    server.fault = lambda h: h.path == f"/objects/{blob[7:9]}/{blob[9:]}" and (endless(h) or True)
    registry = local(tmp_path, server.url)
    assert_clean_failure(run_cli("path", "six", registry=registry), code=7)
    assert sum(p.stat().st_size for p in (registry.root / "tmp").iterdir()) == 0


def test_non_utf8_info_models_is_a_clear_error(tmp_path: Path, serve: Serve) -> None:
    store = Registry.init(tmp_path / "hostile")
    add(store, "good@1.0.0")
    server = serve(store.root)
    (store.root / "info" / "models").write_bytes(b"good\n\xff\xfe\n")
    registry = local(tmp_path, server.url)
    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0 and "UTF-8" in listed.stderr
    assert_clean_failure(run_cli("pull", server.url, registry=registry), code=7)
    assert_clean_failure(run_cli("clone", server.url, str(tmp_path / "c")), code=7)
    assert not (tmp_path / "c" / ".mreg").exists()


@pytest.mark.parametrize("url", ["http://[::1", "http://a b", "http://", "https://:80/x", "http://host:99999/x"])
def test_malformed_urls_are_clear_errors_as_remotes_and_fallbacks(tmp_path: Path, url: str) -> None:
    registry = local(tmp_path)
    add(registry, "m@1.0.0")
    assert_clean_failure(run_cli("pull", url, registry=registry), code=7)
    assert_clean_failure(run_cli("clone", url, str(tmp_path / "c")), code=7)
    registry.set_config("fallback.url", url, add=True)
    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0 and "invalid URL" in listed.stderr
    assert_clean_failure(run_cli("show", "absent", registry=registry), code=7)


# ---------------------------------------------------------------- output and the API


@pytest.mark.parametrize("hostile", ["dir"], indirect=True)
def test_control_characters_from_another_store_never_reach_the_terminal(tmp_path: Path, hostile: Callable[[], str]) -> None:
    store = hostile.store  # type: ignore[attr-defined]
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"
    add(store, "evil@1.0.0", b"e", message=evil, author=evil, family="fam", properties={"k": evil})
    where = hostile()
    registry = local(tmp_path, where)
    for args in (("show", "evil"), ("show", "evil", "--json"), ("ls",), ("ls", "evil")):
        result = run_cli(*args, registry=registry)
        assert result.exit_code == 0, result
        assert not any(c in result.stdout + result.stderr for c in "\x1b\x07\x9b\u202e"), args
    assert run_cli("pull", where, "evil", registry=registry).exit_code == 0
    log = run_cli("log", "evil", registry=registry)
    assert log.exit_code == 0 and "\x1b" not in log.stdout and "\\x1b" in log.stdout


def test_tagging_a_version_only_a_fallback_has_is_refused_without_leftovers(tmp_path: Path) -> None:
    store = Registry.init(tmp_path / "other")
    add(store, "m@1.0.0")
    registry = local(tmp_path, str(store.root.parent))
    result = run_cli("tag", "m@1.0.0", "prod", registry=registry)
    assert_clean_failure(result, code=3)
    assert "pull" in result.stderr and "no longer" not in result.stderr
    assert not (registry.root / "models" / "m").exists()


def test_gc_with_a_fallback_and_a_missing_manifest_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Registry.init(tmp_path / "other")
    add(store, "m@1.0.0")
    registry = local(tmp_path, str(store.root.parent))
    digest = add(registry, "m@1.0.0")
    registry.objects.delete(digest)
    monkeypatch.setenv("MREG_LOCK_TIMEOUT", "20")
    started = time.monotonic()
    result = run_cli("gc", registry=registry)
    assert_clean_failure(result, code=3)
    assert "lock" not in result.stderr and time.monotonic() - started < 10


def test_info_models_differences_are_reported_and_repaired(registry: Registry) -> None:
    add(registry, "a@1.0.0")
    add(registry, "b@1.0.0")
    info = registry.root / "info" / "models"
    assert info.read_text() == "a\nb\n"
    info.write_text("b\nghost\n")
    fsck = run_cli("fsck", registry=registry)
    assert fsck.exit_code == 1 and "does not list model 'a'" in fsck.stdout and "ghost" in fsck.stdout
    assert run_cli("fsck", "--repair", registry=registry).exit_code == 0
    assert info.read_text() == "a\nb\n" and run_cli("fsck", registry=registry).exit_code == 0
    registry.remove("a@1.0.0")
    assert info.read_text() == "b\n"


@pytest.mark.parametrize(
    "args",
    [
        ("add", "m@1.0.0", "f.bin", "--input-shape", "1," + "9" * 30),
        ("add", "m@1.0.0", "f.bin", "--input-shape", "9" * 5000),
        ("add", "m@1.0.0", "f.bin", "--metric", "a=" + "9" * 400),
        ("add", "m@1.0.0", "f.bin", "--metric", "a=1e999"),
        ("ls", "--metric", "a>" + "9" * 400),
    ],
)
def test_huge_numbers_on_the_command_line_are_input_errors(registry: Registry, args: tuple[str, ...]) -> None:
    Path("f.bin").write_bytes(b"x")
    before = store_snapshot(registry)
    result = run_cli(*args, registry=registry)
    assert result.exit_code in (0, 2), result
    if result.exit_code:
        assert_clean_failure(result)
        assert store_snapshot(registry) == before


BAD_CALLS: dict[str, Callable[[Registry], object]] = {
    "tags as a str": lambda r: r.add("m@1.1.0", ["f.bin"], tags="prod"),
    "files as a str": lambda r: r.add("m@1.1.0", "f.bin"),
    "files as a Path": lambda r: r.add("m@1.1.0", Path("f.bin")),
    "a file that is None": lambda r: r.add("m@1.1.0", [None]),
    "spec None": lambda r: r.add(None, ["f.bin"]),
    "bad bump": lambda r: r.add("m", ["f.bin"], bump="huge"),
    "family int": lambda r: r.add("m@1.2.0", ["f.bin"], family=3),
    "framework int": lambda r: r.add("m@1.2.0", ["f.bin"], framework=3),
    "huge input shape": lambda r: r.add("m@1.2.0", ["f.bin"], input_shape=[10**30]),
    "input shape int": lambda r: r.add("m@1.2.0", ["f.bin"], input_shape=5),
    "huge metric": lambda r: r.add("m@1.2.0", ["f.bin"], metrics={"a": 10**400}),
    "metric key int": lambda r: r.add("m@1.2.0", ["f.bin"], metrics={1: 1.0}),
    "huge metadata int": lambda r: r.add("m@1.2.0", ["f.bin"], properties={"a": 2**70}),
    "datasets as a str": lambda r: r.add("m@1.2.0", ["f.bin"], datasets="imagenet"),
    "parents as a str": lambda r: r.add("m@1.2.0", ["f.bin"], parents="m@1.0.0"),
    "message int": lambda r: r.add("m@1.2.0", ["f.bin"], message=1),
    "progress int": lambda r: r.add("m@1.2.0", ["f.bin"], progress=1),
    "manifest over 16 MiB": lambda r: r.add("m@1.3.0", ["f.bin"], properties={"a": "x" * (17 << 20)}),
    "get None": lambda r: r.get(None),
    "resolve bytes": lambda r: r.resolve(b"m"),
    "log int": lambda r: r.log(1),
    "tag None": lambda r: r.tag("m", None),
    "remove int": lambda r: r.remove(1),
    "query unknown": lambda r: r.query(bogus=1),
    "pull names as a str": lambda r: r.pull(".", "m"),
    "pull None": lambda r: r.pull(None),
    "hash_object int": lambda r: r.hash_object(1),
    "hash_object a directory": lambda r: r.hash_object("."),
    "open int": lambda r: Registry.open(1),
    "set_config int": lambda r: r.set_config(1, "x"),
}


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_every_bad_api_call_raises_an_mreg_error_and_changes_nothing(registry: Registry, call: str) -> None:
    Path("f.bin").write_bytes(b"abc")
    registry.add("m@1.0.0", ["f.bin"])
    before = store_snapshot(registry)
    with pytest.raises(MregError):
        BAD_CALLS[call](registry)
    assert {k: v for k, v in store_snapshot(registry).items() if not k.startswith(("objects/", "tmp/"))} == {
        k: v for k, v in before.items() if not k.startswith(("objects/", "tmp/"))
    }
    assert "prod" not in registry.get("m").tags and [v.version for v in registry.versions("m")] == ["1.0.0"]


def test_the_slowest_server_cannot_outlast_the_deadline(tmp_path: Path, serve: Serve) -> None:
    """One byte a second within each read's timeout: the overall deadline still ends it."""
    from mreg.sharing.sources import HttpSource

    store = Registry.init(tmp_path / "hostile")
    server = serve(store.root)
    release = threading.Event()
    server.fault = lambda h: h.path == "/x" and (endless(h, rate=0.2, length=1000) or True)
    started = time.monotonic()
    with pytest.raises(MregError, match="timed out"):
        HttpSource(server.url, timeout=1.0).read_limited("x", 10_000)
    release.set()
    assert time.monotonic() - started < 5


DAMAGE: dict[str, Callable[[Registry, str], None]] = {
    "garbage chunk index": lambda r, d: r.objects.index_path(d).write_bytes(b"\x93garbage"),
    "chunk index of a map": lambda r, d: r.objects.index_path(d).write_bytes(b"\x80"),
    "a directory for a blob": lambda r, d: r.objects.object_path(d).mkdir(parents=True),
    "a manifest of garbage": lambda r, d: r.objects.object_path(d).write_bytes(b"\xc1\xc1"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_fsck_reports_any_damaged_object_and_never_crashes(registry: Registry, damage: str) -> None:
    manifest = add(registry, "m@1.0.0")
    blob = registry.manifest(manifest).files[0].digest
    target = manifest if damage == "a manifest of garbage" else blob
    registry.objects.delete(target)
    DAMAGE[damage](registry, target)
    for args in (("fsck",), ("fsck", "--json"), ("gc", "--dry-run"), ("show", "m"), ("path", "m"), ("cat-file", "-p", target)):
        result = run_cli(*args, registry=registry)
        assert result.exit_code != 70 and "Traceback" not in result.stderr, (args, result)
    fsck = run_cli("fsck", registry=registry)
    assert fsck.exit_code == 1 and target in fsck.stdout


def test_diff_neutralizes_control_characters_from_manifests(registry: Registry) -> None:
    add(registry, "m@1.0.0", b"a", message="\x1b[2J")
    add(registry, "m@2.0.0", b"b", properties={"k": "\x1b]0;x\x07\x9b31m"})
    result = run_cli("diff", "m@1.0.0", "m@2.0.0", registry=registry)
    assert result.exit_code == 0, result
    assert not any(c in result.stdout for c in "\x1b\x07\x9b") and "\\x1b" in result.stdout
