"""Registries in a bucket, against real servers on 127.0.0.1 (moto's S3, Azurite's Azure
Blob Storage; every test taking ``bucket_url`` runs on each): round trips, remotes,
fallbacks, gc, failures and hostile content."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from bucket_servers import BucketService, azurite, bucket_server, bucket_url, raw_store, s3_server  # noqa: F401 - fixtures
from conftest import assert_clean_failure, closed_port_url, run_cli, run_mreg, store_snapshot, weights
from test_transfer import add, refs_of
from test_transfer import transfer_cli as cli_json

from mreg.registry import Registry


def keys(url: str) -> list[str]:
    import obstore

    return sorted(str(meta["path"]) for batch in obstore.list(raw_store(url)) for meta in batch)


@pytest.fixture
def origin(tmp_path: Path) -> Registry:
    """Two models: chunked weights (two versions sharing chunks), tags, a multi-file version."""
    from mreg.pytorch.models import register

    a = Registry.init(tmp_path / "a")
    register(a, "net@1.0.0", weights(), tags=["prod"], message="first")
    register(a, "net@1.1.0", weights(changed=1))
    a.tag("net@1.1.0", "prod")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "config.json").write_text("{}")
    (tmp_path / "files" / "data.bin").write_bytes(os.urandom(20000))
    a.add("team/tok@0.1.0", [tmp_path / "files"])
    return a


def test_notes_travel_through_a_bucket(origin: Registry, bucket_url: str, tmp_path: Path) -> None:
    """push a note, clone it back; a changed note pushes again; both sides changing it conflict."""
    origin.note("net@1.1.0", message="evaluated", metrics={"test_acc": 0.9})
    pushed = cli_json("push", bucket_url, registry=origin)
    assert pushed["notes"] == ["net@1.1.0"]
    assert run_cli("clone", bucket_url, str(tmp_path / "c")).exit_code == 0
    copy = Registry.open(tmp_path / "c")
    note = copy.get("net@1.1.0").note
    assert note is not None and note.message == "evaluated" and dict(note.metrics) == {"test_acc": 0.9}
    assert copy.fsck().ok
    assert cli_json("push", bucket_url, registry=origin)["notes"] == []  # nothing new: nothing moves
    origin.note("net@1.1.0", deprecated="superseded")
    assert cli_json("push", bucket_url, registry=origin)["notes"] == ["net@1.1.0"]
    assert cli_json("pull", "origin", registry=copy)["notes"] == ["net@1.1.0"]
    assert copy.get("net@1.1.0").deprecated == "superseded"
    copy.note("net@1.1.0", message="the copy's view")
    origin.note("net@1.1.0", message="the origin's view")
    assert cli_json("push", bucket_url, registry=origin)["notes"] == ["net@1.1.0"]
    conflict = run_cli("push", bucket_url, registry=copy)
    assert_clean_failure(conflict, 4)
    assert "the note on net@1.1.0" in conflict.stderr


def test_push_clone_pull_round_trip_is_byte_identical(origin: Registry, bucket_url: str, tmp_path: Path) -> None:
    """push -> bucket -> clone and pull: same digests, tags, bytes and log; again: nothing moves."""
    before = store_snapshot(origin)
    pushed = cli_json("push", bucket_url, registry=origin)
    assert sorted(pushed["versions"]) == ["net@1.0.0", "net@1.1.0", "team/tok@0.1.0"]
    assert pushed["destination"] == bucket_url and pushed["objects"] > 0
    assert store_snapshot(origin) == before
    assert "info/models" in keys(bucket_url) and any("/_logs/" in k for k in keys(bucket_url))

    clone = run_mreg("clone", bucket_url, str(tmp_path / "c"))
    assert clone.exit_code == 0, clone.stderr
    copy = Registry.open(tmp_path / "c")
    assert refs_of(copy) == refs_of(origin)
    for versions, _ in refs_of(origin).values():
        for digest in versions.values():
            for entry in origin.manifest(digest).files:
                assert copy.path(digest, entry.path).read_bytes() == origin.path(digest, entry.path).read_bytes()
    assert copy.fsck().ok, copy.fsck().problems
    assert copy.config.get("remote.origin.url") == bucket_url
    log = copy.log("net")
    assert any(e.ref == "tags/prod" and (e.old, e.new) == ("1.0.0", "1.1.0") for e in log)
    assert any(e.message == "first" for e in log)

    for args, registry in ((("push", bucket_url), origin), (("pull", "origin"), copy)):
        again = cli_json(*args, registry=registry)
        assert (again["objects"], again["bytes"], again["versions"], again["tags"]) == (0, 0, [], [])
    third = Registry.init(tmp_path / "d")
    assert sorted(cli_json("pull", bucket_url, "team/tok", registry=third)["versions"]) == ["team/tok@0.1.0"]


def test_new_versions_push_only_new_objects_and_moved_tags(origin: Registry, bucket_url: str, tmp_path: Path) -> None:
    """A second push sends the new version's objects only; a pull elsewhere sees the moved tag."""
    cli_json("push", bucket_url, registry=origin)
    laptop = Registry.init(tmp_path / "laptop")
    cli_json("pull", bucket_url, registry=laptop)
    add(origin, "net@2.0.0", b"small new weights", tags=["prod"])
    # prod moved here, and only here, since the last push: a fast-forward, no --force
    pushed = cli_json("push", bucket_url, registry=origin)
    assert pushed["versions"] == ["net@2.0.0"] and pushed["objects"] == 2  # a manifest and one blob
    pulled = cli_json("pull", bucket_url, registry=laptop)  # the laptop never moved it: a fast-forward too
    assert pulled["versions"] == ["net@2.0.0"] and pulled["tags"] == ["net@prod -> 2.0.0"]
    assert laptop.resolve("net@prod") == origin.resolve("net@2.0.0")


def record_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request mreg makes from now on, as (verb, key under the registry's prefix)."""
    import obstore

    made: list[tuple[str, str]] = []
    for verb in ("get", "head", "list", "put", "delete"):
        monkeypatch.setattr(obstore, verb, _logging(made, verb, getattr(obstore, verb)))
    return made


def _logging(made: list[tuple[str, str]], verb: str, call):  # type: ignore[no-untyped-def]
    def logged(store, path="", *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append((verb, str(path)))
        return call(store, path, *args, **kwargs)

    return logged


def test_second_push_and_pull_read_only_the_tables(origin: Registry, bucket_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transfer of the same state again: one request per model's table (and notes table
    where the bucket has one) and the model list, nothing written; a change in the bucket
    is still seen by the next pull."""
    origin.note("net@1.1.0", message="evaluated")
    cli_json("push", bucket_url, registry=origin)
    laptop = Registry.init(tmp_path / "laptop")
    cli_json("pull", bucket_url, registry=laptop)
    made = record_requests(monkeypatch)
    tables = [("get", "models/net/_refs"), ("get", "models/team/tok/_refs")]

    pushed = cli_json("push", bucket_url, registry=origin)
    assert (pushed["objects"], pushed["versions"], pushed["tags"], pushed["notes"]) == (0, [], [], [])
    assert sorted(made) == sorted([("get", "info/models"), ("get", "models/net/_notes"), *tables])
    made.clear()
    pulled = cli_json("pull", bucket_url, registry=laptop)
    assert (pulled["objects"], pulled["versions"], pulled["tags"], pulled["notes"]) == (0, [], [], [])
    assert sorted(made) == sorted([("list", "models/"), ("get", "models/net/_notes"), *tables])
    made.clear()
    named = cli_json("pull", bucket_url, "team/tok", registry=laptop)
    assert named["versions"] == [] and sorted(made) == [("get", "models/team/tok/_notes"), ("get", "models/team/tok/_refs")]

    origin.tag("net@1.0.0", "stable")
    origin.note("net@1.1.0", message="re-evaluated")
    cli_json("push", bucket_url, registry=origin)
    pulled = cli_json("pull", bucket_url, registry=laptop)
    assert pulled["tags"] == ["net@stable -> 1.0.0"] and pulled["notes"] == ["net@1.1.0"]


def test_named_remote_with_endpoint_in_config(
    origin: Registry, bucket_url: str, bucket_server: BucketService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """remote.NAME.url/endpoint/allow-http reach the server without the endpoint variables; secrets are refused."""
    settings, replaced = bucket_server.named_remote()
    for name in replaced:
        monkeypatch.delenv(name)
    for key, value in {"url": bucket_url, **settings}.items():
        assert run_cli("config", f"remote.team.{key}", value, registry=origin).exit_code == 0
    assert cli_json("push", "team", registry=origin)["versions"]
    refused = run_cli("config", "remote.team.secret-access-key", "hunter2", registry=origin)
    assert_clean_failure(refused, 2)
    assert "hunter2" not in (origin.root / "config").read_text()
    assert_clean_failure(run_cli("config", "remote.bad.url", "s3://Bad_Bucket!/x", registry=origin), 2)


def test_bucket_as_fallback(origin: Registry, bucket_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MREG_FALLBACK and fallback.url may name a bucket: refs resolve there, objects are fetched and verified."""
    cli_json("push", bucket_url, registry=origin)
    empty = Registry.init(tmp_path / "e")
    monkeypatch.setenv("MREG_FALLBACK", bucket_url + os.pathsep + str(tmp_path / "nowhere"))
    digest = origin.resolve("team/tok@0.1.0")
    assert Registry.open(empty.root).path("team/tok@0.1.0", "data.bin").read_bytes() == (tmp_path / "files" / "data.bin").read_bytes()
    monkeypatch.delenv("MREG_FALLBACK")
    other = Registry.init(tmp_path / "f")
    assert run_cli("config", "--add", "fallback.url", bucket_url, registry=other).exit_code == 0
    result = run_cli("resolve", "net@prod", registry=other)
    assert result.stdout.strip() == origin.resolve("net@prod")
    assert Registry.open(other.root).get("team/tok@0.1.0").digest == digest


def test_gc_sweeps_unreachable_old_objects_only(origin: Registry, bucket_url: str) -> None:
    """gc BUCKET keeps what refs and notes reach; an unreachable object goes only once older than the grace."""
    import obstore

    origin.note("net@1.0.0", message="first")
    origin.note("net@1.0.0", message="second")  # the first stays as its history
    cli_json("push", bucket_url, registry=origin)
    stray = b"left by an interrupted push"
    import hashlib

    hexdigest = hashlib.sha256(stray).hexdigest()
    obstore.put(raw_store(bucket_url), f"objects/{hexdigest[:2]}/{hexdigest[2:]}", stray)
    obstore.put(raw_store(bucket_url), "objects/zz/not-an-object", b"x")
    before = keys(bucket_url)
    young = cli_json("gc", bucket_url, registry=origin)
    assert young["objects"] == 0 and keys(bucket_url) == before
    dry = cli_json("gc", bucket_url, "--grace", "0", "--dry-run", registry=origin)
    assert dry["objects"] == 1 and keys(bucket_url) == before
    swept = cli_json("gc", bucket_url, "--grace", "0", registry=origin)
    assert swept["objects"] == 1 and swept["bytes"] == len(stray)
    assert set(before) - set(keys(bucket_url)) == {f"objects/{hexdigest[:2]}/{hexdigest[2:]}"}
    clone = Registry.init(origin.root.parent.parent / "g")
    cli_json("pull", bucket_url, registry=clone)
    assert clone.fsck().ok and clone.get("net@1.0.0").note.message == "second"


@pytest.mark.parametrize("case", ["no bucket", "closed port", "bad key", "bad secret", "forbidden"])
def test_failures_name_the_url_and_cause_and_change_nothing(
    case: str, origin: Registry, bucket_url: str, bucket_server: BucketService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each failure: exit 7, one line naming the URL and the cause, the local store unchanged."""
    url = bucket_url
    if case == "no bucket":
        url = f"{bucket_server.scheme}://mreg-no-such-bucket/team"
    elif case == "closed port":
        for name, value in bucket_server.unreachable(closed_port_url().removesuffix("/x")).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MREG_DEBUG", "")
        run_cli("config", "http.timeout", "2", registry=origin)
    before = store_snapshot(origin)
    expected = {
        "no bucket": bucket_server.missing_bucket,
        "closed port": "cannot reach the endpoint",
        "bad key": "credentials were refused",
        "bad secret": "credentials were refused",
        "forbidden": "access denied",
    }[case]
    if case in ("bad key", "bad secret", "forbidden"):
        with bucket_server.refused(case) as variables:
            for name, value in variables.items():
                if value is None:
                    monkeypatch.delenv(name)
                else:
                    monkeypatch.setenv(name, value)
            results = [run_cli(*args, registry=origin) for args in (("push", url), ("pull", url))]
    else:
        results = [run_cli(*args, registry=origin) for args in (("push", url), ("pull", url))]
        results.append(run_mreg("clone", url, str(tmp_path / "c")))
        assert not (tmp_path / "c").exists()
    for result in results:
        assert_clean_failure(result, 7)
        assert url in result.stderr and expected in result.stderr, result.stderr
    snapshot = store_snapshot(origin)
    snapshot.pop("config", None), before.pop("config", None)
    assert snapshot == before


def test_hostile_bucket_content_is_refused(origin: Registry, bucket_url: str, tmp_path: Path) -> None:
    """Spoiled objects, refs and logs in the bucket: clean errors, nothing bad cached."""
    import obstore

    cli_json("push", bucket_url, registry=origin)
    store = raw_store(bucket_url)
    digest = origin.file_entry("team/tok@0.1.0", "data.bin").digest
    key = f"objects/{digest[7:9]}/{digest[9:]}"
    obstore.put(store, key, b"not the bytes " * 100)
    victim = Registry.init(tmp_path / "v")
    result = run_cli("pull", bucket_url, "team/tok", registry=victim)
    assert_clean_failure(result, 7)
    assert "does not match" in result.stderr
    assert not victim.objects.contains(digest) and victim.refs.names() == []

    obstore.put(store, "models/net/_refs", b"# mreg refs 1\nversion 1.0.0 sha256:zz\n")
    assert_clean_failure(run_cli("pull", bucket_url, "net", registry=victim))
    obstore.put(store, "models/net/_refs", b"\xff\xfe garbage")
    assert_clean_failure(run_cli("pull", bucket_url, "net", registry=victim))
    obstore.put(store, "models/-x/_refs", b"# mreg refs 1\n")  # a name mreg never writes
    assert_clean_failure(run_cli("pull", bucket_url, registry=victim), 7)
    assert victim.refs.names() == [] and victim.fsck().ok


def test_commands_that_touch_no_bucket_never_import_obstore(registry: Registry) -> None:
    """`mreg ls`, `show`, `config` of a bucket remote: obstore stays unimported."""
    code = (
        "import sys; from mreg.cli import main; sys.argv=['mreg','config','remote.x.url','s3://b/p'];\n"
        "try: main()\nexcept SystemExit: pass\n"
        "sys.argv=['mreg','ls']\ntry: main()\nexcept SystemExit: pass\n"
        "assert 'obstore' not in sys.modules, 'obstore imported'"
    )
    import subprocess

    completed = subprocess.run([sys.executable, "-c", code], cwd=registry.root.parent, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_reused_old_objects_are_freshened_and_gc_never_guesses(
    origin: Registry, bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push rewrites an existing object older than the freshen age instead of trusting it to
    outlive gc; gc with a ref whose manifest is gone deletes nothing."""
    import obstore

    from mreg.sharing.buckets import destination
    from mreg.sharing.buckets.client import Bucket

    origin.push(bucket_url, ["team/tok"])
    blob = origin.file_entry("team/tok@0.1.0", "data.bin").digest
    rewritten: list[str] = []
    overwrite = Bucket.overwrite
    monkeypatch.setattr(Bucket, "overwrite", lambda self, path, data: (rewritten.append(path), overwrite(self, path, data)))
    monkeypatch.setattr(destination, "FRESHEN_AFTER", timedelta(0))
    origin.add("team/tok@0.2.0", [origin.root.parent.parent / "files"])  # the same files again
    origin.push(bucket_url, ["team/tok"])
    assert f"objects/{blob[7:9]}/{blob[9:]}" in rewritten

    manifest = origin.resolve("team/tok@0.1.0")
    obstore.delete(raw_store(bucket_url), f"objects/{manifest[7:9]}/{manifest[9:]}")
    before = keys(bucket_url)
    result = run_cli("gc", bucket_url, "--grace", "0", registry=origin)
    assert_clean_failure(result, 7)
    assert "missing" in result.stderr and keys(bucket_url) == before


def test_fsck_of_a_bucket_finds_what_refs_lack_and_changes_nothing(origin: Registry, bucket_url: str) -> None:
    """`mreg fsck BUCKET`: clean after a push; a missing chunk, manifest or note object, a
    file of the wrong size and a spoiled chunk index are each named, exit 1; no key changes."""
    import obstore

    origin.note("net@1.1.0", message="evaluated")
    cli_json("push", bucket_url, registry=origin)
    clean = cli_json("fsck", bucket_url, registry=origin)
    assert (clean["models"], clean["versions"], clean["problems"]) == (2, 3, [])
    store = raw_store(bucket_url)
    weights = origin.manifest(origin.resolve("net@1.1.0")).files[0].digest
    index = f"objects/{weights[7:9]}/{weights[9:]}.chunks"
    original_index = bytes(obstore.get(store, index).bytes())
    data = origin.file_entry("team/tok@0.1.0", "data.bin").digest
    manifest = origin.resolve("net@1.0.0")
    note = origin.refs.read_notes("net")[origin.resolve("net@1.1.0")]
    spoiled = {
        f"objects/{data[7:9]}/{data[9:]}": b"short",
        index: b"not an index",
    }
    for key, value in spoiled.items():
        obstore.put(store, key, value)
    for digest in (manifest, note):
        obstore.delete(store, f"objects/{digest[7:9]}/{digest[9:]}")
    before = keys(bucket_url)
    result = run_cli("fsck", bucket_url, registry=origin)
    assert result.exit_code == 1, result.stderr
    assert f"net@1.0.0: manifest {manifest} is missing" in result.stdout
    assert f"team/tok@0.1.0: data.bin: object {data} has 5 bytes, not 20000" in result.stdout
    assert "chunk index cannot be read" in result.stdout and f"note object {note} is missing" in result.stdout
    assert keys(bucket_url) == before
    assert run_cli("fsck", bucket_url, "--repair", registry=origin).exit_code == 2

    from mreg.storage.chunk_index import decode_chunk_index

    obstore.put(store, index, original_index)
    chunk = decode_chunk_index(original_index, weights)[-1][0]
    obstore.delete(store, f"objects/{chunk[7:9]}/{chunk[9:]}")
    assert f"chunk {chunk} of {weights} is missing" in run_cli("fsck", bucket_url, registry=origin).stdout
