"""Fallback stores: lookups through directories and static HTTP servers, and their failures."""

from __future__ import annotations

import json
import os
import shutil
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
    run_cli_raw,
    run_mreg,
    store_snapshot,
    weights,
)

from mreg import Blob
from mreg.registry import Registry
from mreg.sharing.locations import split_locations

DATA = bytes(range(256)) * 256  # 64 KiB: big enough to truncate halfway
Serve = Callable[[Path], StoreServer]


def add(registry: Registry, spec: str, data: bytes = DATA, **options: object) -> str:
    """Register one in-memory file as a version; return the manifest digest."""
    return registry.add(spec, [Blob("model.bin", lambda: [data])], **options).digest  # type: ignore[arg-type]


def file_digest(registry: Registry, ref: str) -> str:
    """The digest of a version's only file."""
    return registry.manifest(registry.resolve(ref)).files[0].digest


def use_fallbacks(registry: Registry, *locations: str) -> None:
    """Add fallback.url entries through the CLI, in order."""
    for location in locations:
        assert run_cli("config", "--add", "fallback.url", location, registry=registry).exit_code == 0


def url_path(digest: str, suffix: str = "") -> str:
    """The URL path of an object in a served store."""
    return f"/objects/{digest[7:9]}/{digest[9:]}{suffix}"


def assert_nothing_cached(registry: Registry, digest: str) -> None:
    """No object, no chunk index, no temporary file for ``digest`` in the local store."""
    assert not registry.objects.contains(digest)
    assert not object_file(registry, digest).exists()
    assert list((registry.root / "tmp").iterdir()) == []


# --------------------------------------------------------------- split_locations


@pytest.mark.skipif(os.pathsep != ":", reason="POSIX path separator")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/a:/b", ["/a", "/b"]),
        ("http://127.0.0.1:8000/x:/dir", ["http://127.0.0.1:8000/x", "/dir"]),
        ("/dir:http://127.0.0.1:8000/x", ["/dir", "http://127.0.0.1:8000/x"]),
        ("http://host/x:https://host/y", ["http://host/x", "https://host/y"]),
        ("https://h.example:8443/r:relative/dir", ["https://h.example:8443/r", "relative/dir"]),
        ("http://127.0.0.1:8000:/d", ["http://127.0.0.1:8000", "/d"]),
        ("http://h/x:8000/y", ["http://h/x", "8000/y"]),  # a relative directory, not a port
        ("::/a::", ["/a"]),
        ("", []),
    ],
)
def test_split_locations(text: str, expected: list[str]) -> None:
    """os.pathsep splits the list, but URL schemes and ports stay attached."""
    assert split_locations(text) == expected


# ---------------------------------------------------------------- resolving


def test_resolve_through_a_two_level_chain(registry: Registry, tmp_path: Path) -> None:
    """local -> A (no such model) -> B (has it); local first, then the fallbacks in order."""
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    mine = add(registry, "shared@2.0.0", b"local")
    add(a, "other@1.0.0", b"other")
    add(a, "shared@2.0.0", b"a shared")
    newer = add(a, "shared@3.0.0", b"a newer")
    wanted = add(b, "m@1.0.0", b"from b", tags=["prod"])
    oldest = add(b, "shared@1.0.0", b"b shared")
    use_fallbacks(registry, str(a.root.parent), str(b.root.parent))
    assert run_cli("resolve", "m@1.0.0", registry=registry).stdout == wanted + "\n"
    assert run_cli("resolve", "m@prod", registry=registry).stdout == wanted + "\n"
    assert registry.resolve("m") == wanted and "prod" in registry.get("m@prod").tags
    assert run_cli("resolve", "shared@2.0.0", registry=registry).stdout == mine + "\n"  # local first
    assert registry.resolve("shared") == mine
    assert registry.resolve("shared@3.0.0") == newer
    assert registry.resolve("shared@1.0.0") == oldest  # A has the model, but not the version
    assert_clean_failure(run_cli("resolve", "m@9.9.9", registry=registry), code=3)


@pytest.mark.parametrize("first", ["closed port", "http without the model"])
def test_http_chain_skips_a_first_fallback_without_the_model(registry: Registry, tmp_path: Path, serve: Serve, first: str) -> None:
    """local -> A (unreachable, or served without the model) -> B over HTTP: B answers."""
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    add(a, "other@1.0.0", b"other")
    wanted = add(b, "m@1.0.0")
    url_a = closed_port_url() if first == "closed port" else serve(a.root).url
    use_fallbacks(registry, url_a, serve(b.root).url)
    resolved = run_cli("resolve", "m@1.0.0", registry=registry)
    assert (resolved.exit_code, resolved.stdout) == (0, wanted + "\n")
    shown = run_cli("path", "m@1.0.0", registry=registry)
    assert shown.exit_code == 0, shown.stderr
    assert Path(shown.stdout.strip()).read_bytes() == DATA
    assert "Traceback" not in shown.stderr + resolved.stderr


@pytest.mark.parametrize("kind", ["dir", "http"])
def test_a_fetched_object_is_cached_and_works_without_the_fallback(registry: Registry, tmp_path: Path, serve: Serve, kind: str) -> None:
    """After show and path the manifest and file are local; the path stays valid offline."""
    b = Registry.init(tmp_path / "b")
    manifest = add(b, "m@1.0.0")
    blob = file_digest(b, "m@1.0.0")
    server = serve(b.root) if kind == "http" else None
    use_fallbacks(registry, server.url if server else str(b.root.parent))
    assert not registry.objects.contains(manifest)
    assert run_cli("show", "m@1.0.0", registry=registry).exit_code == 0
    assert registry.objects.contains(manifest) and not registry.objects.contains(blob)
    printed = run_cli("path", "m@1.0.0", registry=registry).stdout.strip()
    assert Path(printed) == object_file(registry, blob) and Path(printed).read_bytes() == DATA
    assert Registry(registry.root).path("m@1.0.0").is_relative_to(registry.root)
    if server:
        server.close()
    else:
        shutil.rmtree(b.root.parent)
    offline = Registry(registry.root)
    assert offline.path(manifest).read_bytes() == DATA  # by digest, with the fallback gone
    assert run_cli_raw("cat-file", "-p", blob, registry=registry)[1] == DATA
    assert run_cli("show", manifest, "--json", registry=registry).exit_code == 0
    assert offline.fsck().ok


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("kind", ["500", "truncated", "corrupt", "slow"])
def test_http_object_faults_are_clear_and_cache_nothing(registry: Registry, tmp_path: Path, serve: Serve, kind: str) -> None:
    """A failing object transfer: one error naming store and object, exit 7, nothing kept; the next fallback works."""
    b = Registry.init(tmp_path / "b")
    add(b, "m@1.0.0")
    blob = file_digest(b, "m@1.0.0")
    mine = add(registry, "local@1.0.0", b"local")
    release = threading.Event()
    server = serve(b.root)
    server.fault = http_fault(kind, url_path(blob), release)
    use_fallbacks(registry, server.url)
    run_cli("config", "http.timeout", "0.5", registry=registry)
    started = time.monotonic()
    try:
        result = run_cli("path", "m@1.0.0", registry=registry)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert_clean_failure(result, code=7)
    assert server.url in result.stderr and blob in result.stderr
    assert {"500": "500", "truncated": "expected; refused", "corrupt": "does not match", "slow": "timed out"}[kind] in result.stderr
    assert_nothing_cached(registry, blob)
    assert run_cli("path", "local", registry=registry).exit_code == 0  # local data keeps working
    assert registry.resolve("local") == mine
    copy = shutil.copytree(b.root.parent, tmp_path / "copy")
    use_fallbacks(registry, str(copy))
    again = run_cli("path", "m@1.0.0", registry=registry)
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()).read_bytes() == DATA and registry.fsck().ok


def test_http_404_for_an_object_names_the_store(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """The fallback's refs name a version whose file it lacks: the error says which store."""
    b = Registry.init(tmp_path / "b")
    add(b, "m@1.0.0")
    blob = file_digest(b, "m@1.0.0")
    server = serve(b.root)
    server.fault = http_fault("404", url_path(blob), threading.Event())
    use_fallbacks(registry, server.url)
    result = run_cli("path", "m@1.0.0", registry=registry)
    assert_clean_failure(result)
    assert_nothing_cached(registry, blob)
    assert blob in result.stderr and server.url in result.stderr


def test_a_slow_refs_file_times_out_and_the_next_fallback_answers(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """http.timeout bounds a lookup; with a second fallback the command still succeeds."""
    b = Registry.init(tmp_path / "b")
    wanted = add(b, "m@1.0.0")
    release = threading.Event()
    server = serve(b.root)
    server.fault = http_fault("slow", "/models/m/_refs", release)
    use_fallbacks(registry, server.url)
    run_cli("config", "http.timeout", "0.5", registry=registry)
    started = time.monotonic()
    try:
        result = run_cli("resolve", "m@1.0.0", registry=registry)
        assert_clean_failure(result, code=7)
        assert server.url in result.stderr and "m@1.0.0" in result.stderr
        use_fallbacks(registry, str(b.root.parent))
        assert run_cli("resolve", "m@1.0.0", registry=registry).stdout == wanted + "\n"
    finally:
        release.set()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["dir", "http"])
def test_a_corrupted_object_on_the_fallback_is_refused(registry: Registry, tmp_path: Path, serve: Serve, kind: str) -> None:
    """A flipped byte in the fallback's object file: refused naming store and object, not cached."""
    b = Registry.init(tmp_path / "b")
    add(b, "m@1.0.0")
    blob = file_digest(b, "m@1.0.0")
    good = shutil.copytree(b.root.parent, tmp_path / "good")
    flip_byte(object_file(b, blob), 100)
    location = serve(b.root).url if kind == "http" else str(b.root.parent)
    use_fallbacks(registry, location)
    result = run_cli("path", "m@1.0.0", registry=registry)
    assert_clean_failure(result, code=7)
    assert location in result.stderr and blob in result.stderr
    assert_nothing_cached(registry, blob)
    with pytest.raises(Exception, match=blob):
        Registry(registry.root).path("m@1.0.0")
    assert_nothing_cached(registry, blob)
    use_fallbacks(registry, str(good))
    assert Registry(registry.root).path("m@1.0.0").read_bytes() == DATA


def test_an_unreachable_fallback_is_a_clear_error_and_local_data_keeps_working(registry: Registry, tmp_path: Path) -> None:
    """Nothing else has the ref: exit 7 naming the URL; local refs, paths and ls still work."""
    mine = add(registry, "local@1.0.0", b"local")
    url = closed_port_url()
    use_fallbacks(registry, url)
    result = run_cli("resolve", "m@1.0.0", registry=registry)
    assert_clean_failure(result, code=7)
    assert url in result.stderr and "m@1.0.0" in result.stderr
    assert run_cli("resolve", "local", registry=registry).stdout == mine + "\n"
    assert Path(run_cli("path", "local", registry=registry).stdout.strip()).read_bytes() == b"local"
    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0 and "local" in listed.stdout
    assert "Traceback" not in listed.stderr


def test_ls_survives_a_fallback_whose_refs_fail(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """A fallback that lists a model but fails to serve its refs is a warning; local models are listed."""
    add(registry, "local@1.0.0", b"local")
    b = Registry.init(tmp_path / "b")
    add(b, "remote@1.0.0", b"remote")
    server = serve(b.root)
    server.fault = http_fault("500", "/models/remote/_refs", threading.Event())
    use_fallbacks(registry, server.url)
    assert run_cli("ls", "local", registry=registry).exit_code == 0  # listing one model's versions copes
    listed = run_cli("ls", registry=registry)
    assert listed.exit_code == 0, listed.stderr
    assert "local" in listed.stdout and "mreg: warning:" in listed.stderr


def test_an_unreachable_directory_fallback_is_named(registry: Registry, tmp_path: Path) -> None:
    """A fallback directory that is gone (an unmounted share) is reported like an unreachable URL."""
    use_fallbacks(registry, str(tmp_path / "unmounted"))
    result = run_cli("resolve", "m@1.0.0", registry=registry)
    assert_clean_failure(result, code=7)
    assert "unmounted" in result.stderr


# ------------------------------------------------------- configuration, env


def test_relative_config_paths_are_relative_to_the_registry(registry: Registry, tmp_path: Path) -> None:
    """fallback.url ../team works from any working directory."""
    team = Registry.init(tmp_path / "team")
    wanted = add(team, "m@1.0.0")
    project = Registry.init(tmp_path / "work" / "project")
    use_fallbacks(project, "../../team")
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    assert run_cli("resolve", "m@1.0.0", registry=project).stdout == wanted + "\n"
    nested = project.root.parent / "src" / "deep"
    nested.mkdir(parents=True)
    assert run_mreg("resolve", "m@1.0.0", cwd=nested).stdout == wanted + "\n"


def test_mreg_fallback_mixes_an_http_url_with_a_port_and_a_directory(registry: Registry, tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """MREG_FALLBACK="http://127.0.0.1:PORT/x:DIR" (os.pathsep) serves both, before fallback.url."""
    web, disk, configured = (Registry.init(tmp_path / n) for n in ("web", "disk", "configured"))
    from_web, from_disk = add(web, "h@1.0.0", b"web"), add(disk, "d@1.0.0", b"disk")
    add(configured, "h@1.0.0", b"configured")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "x").symlink_to(web.root)
    use_fallbacks(registry, str(configured.root.parent))
    variable = f"{serve(tmp_path / 'site').url}/x{os.pathsep}{disk.root.parent}"
    monkeypatch.setenv("MREG_FALLBACK", variable)
    assert run_cli("resolve", "h@1.0.0", registry=registry).stdout == from_web + "\n"
    assert run_cli("resolve", "d@1.0.0", registry=registry).stdout == from_disk + "\n"
    assert Path(run_cli("path", "h@1.0.0", registry=registry).stdout.strip()).read_bytes() == b"web"
    real = run_mreg("--registry", str(registry.root), "path", "d@1.0.0", env={"MREG_FALLBACK": variable})
    assert real.exit_code == 0, real.stderr
    assert Path(real.stdout.strip()).read_bytes() == b"disk"
    monkeypatch.delenv("MREG_FALLBACK")
    assert Registry(registry.root).resolve("h@1.0.0") == configured.resolve("h@1.0.0")


# ------------------------------------------------------- listings, no writes


def test_ls_lists_fallback_models_with_a_from_column(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """Models and versions only a fallback has are listed with where they come from."""
    add(registry, "local@1.0.0", b"local")
    b = Registry.init(tmp_path / "b")
    add(b, "remote@1.0.0", b"r1")
    add(b, "remote@1.1.0", b"r2", tags=["prod"])
    assert "FROM" not in run_cli("ls", registry=registry).stdout
    url = serve(b.root).url
    use_fallbacks(registry, url)
    lines = run_cli("ls", registry=registry).stdout.splitlines()
    assert lines[0].split()[-1] == "FROM"
    row = next(line for line in lines if line.startswith("remote"))
    assert row.split()[:3] == ["remote", "1.1.0", "2"] and row.split()[-1] == url
    assert url not in next(line for line in lines if line.startswith("local"))
    versions = run_cli("ls", "remote", registry=registry).stdout.splitlines()
    assert "FROM" in versions[0] and [v.split()[0] for v in versions[1:]] == ["1.1.0", "1.0.0"]
    assert all(v.split()[-1] == url for v in versions[1:])
    document = json.loads(run_cli("ls", "--json", registry=registry).stdout)
    assert {m["name"]: m["source"] for m in document} == {"local": None, "remote": url}


def test_fallbacks_are_never_written_to(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """Lookups, paths, listings and failed fetches leave every fallback byte for byte unchanged."""
    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    add(a, "m@1.0.0", b"a1", tags=["prod"])
    add(b, "n@1.0.0", b"b1")
    add(b, "n@2.0.0", b"b2")
    flip_byte(object_file(b, file_digest(b, "n@2.0.0")))
    before = {a.root: store_snapshot(a), b.root: store_snapshot(b)}
    use_fallbacks(registry, serve(a.root).url, str(b.root.parent))
    for command in ("resolve m@prod", "show m", "path m", "path n@1.0.0", "ls", "ls n", "path n@2.0.0", "show n@2.0.0 --json"):
        run_cli(*command.split(), registry=registry)
    assert registry.resolve("n@1.0.0") == b.resolve("n@1.0.0")
    assert {a.root: store_snapshot(a), b.root: store_snapshot(b)} == before


# ------------------------------------------------------- chunked weight files


def object_names(registry: Registry) -> set[str]:
    """The hex names of the files under objects/ (blobs, and indexes with their .chunks suffix)."""
    return {p.parent.name + p.name for p in registry.objects.objects_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["dir", "http"])
def test_chunked_weights_travel_through_a_fallback_fetching_only_missing_chunks(
    registry: Registry, tmp_path: Path, serve: Serve, kind: str
) -> None:
    """The .chunks index and the chunks the local store lacks arrive; the bytes read back equal."""
    pytest.importorskip("torch")
    from mreg.pytorch.models import register

    b = Registry.init(tmp_path / "b")
    register(b, "w@1.0.0", weights())
    register(b, "w@1.1.0", weights(changed=3))
    register(registry, "mine@1.0.0", weights())  # the same tensors as w@1.0.0
    server = serve(b.root) if kind == "http" else None
    use_fallbacks(registry, server.url if server else str(b.root.parent))
    entry = b.file_entry("w@1.1.0")
    before = object_names(registry)
    printed = run_cli("path", "w@1.1.0", registry=registry)
    assert printed.exit_code == 0, printed.stderr
    assert Path(printed.stdout.strip()).read_bytes() == b.path("w@1.1.0").read_bytes()
    assert Path(printed.stdout.strip()).is_relative_to(registry.root)
    assert registry.objects.is_chunked(entry.digest)
    assert registry.objects.chunks(entry.digest) == b.objects.chunks(entry.digest)
    manifest, changed = b.resolve("w@1.1.0"), b.objects.chunks(entry.digest)[-1][0]
    assert object_names(registry) - before == {manifest[7:], changed[7:], entry.digest[7:] + ".chunks"}
    if server:
        blobs = [p for p in server.requests if p.startswith("/objects/") and p != url_path(entry.digest) and ".chunks" not in p]
        assert blobs == [url_path(manifest), url_path(changed)]  # 4 of the 5 chunks were here already
    assert Registry(registry.root).path("w@1.0.0").read_bytes() == b.path("w@1.0.0").read_bytes()
    assert registry.fsck().ok


def test_a_corrupted_chunk_on_an_http_fallback_is_refused(registry: Registry, tmp_path: Path, serve: Serve) -> None:
    """One bad chunk: clear error naming store and chunk; the file is not cached, nor its index."""
    pytest.importorskip("torch")
    from mreg.pytorch.models import register

    b = Registry.init(tmp_path / "b")
    register(b, "w@1.0.0", weights())
    entry = b.file_entry("w@1.0.0")
    bad = b.objects.chunks(entry.digest)[2][0]
    flip_byte(object_file(b, bad), 10)
    server = serve(b.root)
    use_fallbacks(registry, server.url)
    result = run_cli("path", "w@1.0.0", registry=registry)
    assert_clean_failure(result, code=7)
    assert server.url in result.stderr and bad in result.stderr
    assert_nothing_cached(registry, entry.digest)
    assert not registry.objects.index_path(entry.digest).exists() and not registry.objects.contains(bad)
    assert not list(registry.objects.cached_files())
    assert registry.fsck().ok
