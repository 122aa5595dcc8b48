"""The Python API end to end: opening, add, resolve, immutability, tags, rm, log and path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import colliding_pair, store_snapshot

from mreg import Blob
from mreg.errors import (
    AmbiguousRefError,
    ConflictError,
    InputFileError,
    InvalidInputError,
    InvalidNameError,
    NotFoundError,
    ObjectNotFoundError,
    RefChangedError,
    RegistryNotFoundError,
    UnknownModelError,
    UnknownRefError,
    VersionConflictError,
)
from mreg.records.manifest import FileEntry, Lineage, Manifest
from mreg.registry import Registry


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def add(registry: Registry, make_file):
    """Register one file with the given content as ``spec``."""

    def add(spec: str, content: str = "weights", **options):
        folder = hashlib.sha256(f"{spec} {content}".encode()).hexdigest()[:12]
        return registry.add(spec, [make_file(f"{folder}/w.dat", content)], **options)

    return add


# ------------------------------------------------------------------ opening


def test_init_is_idempotent(tmp_path: Path, add, registry: Registry) -> None:
    result = add("demo@1.0.0")
    before = store_snapshot(registry)
    again = Registry.init(tmp_path)
    assert again.root == registry.root == (tmp_path / ".mreg").resolve()
    assert store_snapshot(again) == before
    assert again.resolve("demo") == result.digest


def test_open_via_path_and_mreg_path(tmp_path: Path, registry: Registry, monkeypatch) -> None:
    monkeypatch.chdir("/")
    assert Registry.open(tmp_path).root == registry.root
    assert Registry.open(tmp_path / ".mreg").root == registry.root
    assert Registry.open(str(tmp_path)).root == registry.root


def test_open_via_mreg_dir_wins_over_the_current_directory(registry: Registry, tmp_path_factory, monkeypatch) -> None:
    other = Registry.init(tmp_path_factory.mktemp("other"))
    monkeypatch.setenv("MREG_DIR", str(other.root.parent))
    assert Registry.open().root == other.root
    monkeypatch.setenv("MREG_DIR", str(other.root))
    assert Registry.open().root == other.root


def test_open_walks_up_from_a_subdirectory(tmp_path: Path, registry: Registry, monkeypatch) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert Registry.open().root == registry.root


def test_no_registry_raises_registry_not_found(tmp_path_factory, monkeypatch) -> None:
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.chdir(empty)
    with pytest.raises(RegistryNotFoundError, match="mreg init") as caught:
        Registry.open()
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(RegistryNotFoundError, match="mreg init"):
        Registry.open(empty)
    monkeypatch.setenv("MREG_DIR", str(empty))
    with pytest.raises(RegistryNotFoundError):
        Registry.open()


# ---------------------------------------------------------------- adding


def test_add_with_every_metadata_option(registry: Registry, make_file, add, monkeypatch) -> None:
    parent = add("base@1.0.0", "parent weights")
    dataset = sha(b"dataset")
    result = registry.add(
        "org/resnet@1.2.0-rc.1",
        [make_file("model.dat", b"\x00\x01weights")],
        family="resnet",
        framework="pytorch 2.13.0",
        architecture="resnet18",
        input_shape="1,3,224,224",
        metrics={"top1": 0.75, "loss": 2},
        properties={"license": "mit", "epochs": 90, "nested": {"lr": 0.1}},
        datasets=[f"imagenet@{dataset}", "coco@s3://bucket/coco", "internal"],
        parents=["base@1.0.0"],
        message="first try",
        tags=["candidate", "nightly"],
        author="alice",
    )
    assert result.created and result.name == "org/resnet" and result.version == "1.2.0-rc.1"
    view = registry.get("org/resnet@1.2.0-rc.1")
    assert view.digest == result.digest
    assert view.files == (FileEntry("model.dat", sha(b"\x00\x01weights"), 9),)
    m = view.manifest
    assert (m.family, str(m.framework), m.architecture, m.input_shape) == ("resnet", "pytorch 2.13.0", "resnet18", (1, 3, 224, 224))
    assert m.metrics == {"top1": 0.75, "loss": 2.0}
    assert m.properties == {"license": "mit", "epochs": 90, "nested": {"lr": 0.1}}
    assert [d.to_dict() for d in m.lineage.datasets] == [
        {"name": "imagenet", "digest": dataset, "uri": None},
        {"name": "coco", "digest": None, "uri": "s3://bucket/coco"},
        {"name": "internal", "digest": None, "uri": None},
    ]
    assert m.lineage.parents == (parent.digest,)
    assert (m.lineage.author, m.lineage.message) == ("alice", "first try")
    assert m.lineage.created.endswith("Z") and len(m.lineage.created) == 20
    assert view.tags == ("latest", "candidate", "nightly")


def test_add_a_directory_recursively(registry: Registry, tmp_path: Path) -> None:
    root = tmp_path / "checkpoint"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "config.json").write_text("{}")
    (root / "sub" / "a.dat").write_bytes(b"a")
    (root / "sub" / "deeper" / "b.dat").write_bytes(b"bb")
    view = registry.get(registry.add("ckpt@1.0.0", [root]).digest)
    assert [(f.path, f.size) for f in view.files] == [("config.json", 2), ("sub/a.dat", 1), ("sub/deeper/b.dat", 2)]
    for entry in view.files:
        assert registry.path("ckpt", entry.path).read_bytes() == (root / entry.path).read_bytes()


def test_blob_sources(registry: Registry, make_file) -> None:
    calls: list[int] = []

    def blocks():
        calls.append(1)
        yield b"ab"
        yield memoryview(b"cd")

    result = registry.add("mem@1.0.0", [Blob("state/weights.bin", blocks), make_file("extra.txt", "x")])
    assert calls == [1]
    files = registry.get(result.digest).files
    assert files == (FileEntry("extra.txt", sha(b"x"), 1), FileEntry("state/weights.bin", sha(b"abcd"), 4))
    assert registry.path("mem", "state/weights.bin").read_bytes() == b"abcd"


def test_duplicate_paths_and_bad_inputs_are_refused(registry: Registry, make_file, tmp_path: Path) -> None:
    one, two = make_file("x/w.dat", "1"), make_file("y/w.dat", "2")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (lambda: registry.add("demo@1.0.0", [one, two]), InvalidInputError, "stored as 'w.dat'"),
        (lambda: registry.add("demo@1.0.0", [one, Blob("w.dat", lambda: [b""])]), InvalidInputError, "w.dat"),
        (lambda: registry.add("demo@1.0.0", [Blob("../x", lambda: [b""])]), InvalidNameError, "file path"),
        (lambda: registry.add("demo@1.0.0", []), InvalidInputError, "no files"),
        (lambda: registry.add("demo@1.0.0", [tmp_path / "missing"]), InputFileError, "no such file"),
        (lambda: registry.add("demo@1.0.0", [empty]), InputFileError, "no files"),
        (lambda: registry.add("demo@1.0.0", [one], bump="patch"), InvalidInputError, "not both"),
        (lambda: registry.add("demo", [one]), InvalidInputError, "neither"),
        (lambda: registry.add("demo@1.0.0", [one], parents=["nope@1.0.0"]), UnknownRefError, "nope"),
        (lambda: registry.add("demo@1.0.0", [one], tags=["latest"]), InvalidNameError, "latest"),
        (lambda: registry.add("demo@1.0.0", [one], datasets=["d@sha256:12"]), InvalidInputError, "dataset"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert set(store_snapshot(registry)) == {"config"}  # nothing was written


def test_progress_is_reported(registry: Registry, make_file) -> None:
    seen: list[tuple[int, int]] = []
    registry.add("demo@1.0.0", [make_file("a", b"x" * 10), make_file("b", b"y" * 5)], progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (15, 15)


# --------------------------------------------------------------- resolving


def test_resolve_every_reference_form(registry: Registry, add) -> None:
    one = add("demo@1.0.0", "one").digest
    two = add("demo@2.0.0", "two", tags=["production"]).digest
    add("demo@3.0.0-rc.1", "three")
    assert registry.resolve("demo") == registry.resolve("demo@latest") == two
    assert registry.resolve("demo@1.0.0") == one
    assert registry.resolve("demo@production") == two
    assert registry.resolve(one) == one
    assert registry.resolve(one[:15]) == one
    assert registry.resolve("sha256:" + one[7:15].upper()) == one
    assert registry.get("demo@3.0.0-rc.1").tags == ()
    assert registry.get("demo").tags == ("latest", "production")


@pytest.mark.parametrize(
    "ref, message",
    [
        ("nope", "no model named 'nope'"),
        ("demo@9.9.9", "no version 9.9.9"),
        ("demo@staging", "no tag 'staging'"),
        ("sha256:" + "0" * 64, "no such manifest"),
    ],
)
def test_resolve_unknown(registry: Registry, add, ref: str, message: str) -> None:
    add("demo@1.0.0")
    with pytest.raises(UnknownRefError, match=message) as caught:
        registry.resolve(ref)
    assert isinstance(caught.value, NotFoundError) and isinstance(caught.value, KeyError)


def test_resolve_unknown_prefix(registry: Registry, add) -> None:
    digest = add("demo@1.0.0").digest
    unknown = next(p for p in ("00000000", "ffffffff") if not digest[7:].startswith(p))
    with pytest.raises(UnknownRefError, match="no manifest has that digest prefix"):
        registry.resolve("sha256:" + unknown)
    blob = registry.get("demo").files[0].digest
    with pytest.raises(UnknownRefError):  # a blob is not a manifest
        registry.resolve(blob[:15])


TEMPLATE = Manifest(
    "demo", "1.0.0", (FileEntry("w", sha(b""), 0),), properties={"n": "XXXXXXXX"}, lineage=Lineage(created="T", author="a")
).encode()


def manifest_bytes(i: int) -> bytes:
    """A valid canonical manifest whose only varying part is an 8-character metadata value."""
    return TEMPLATE.replace(b"XXXXXXXX", b"%08d" % i)


def test_ambiguous_digest_prefixes(registry: Registry) -> None:
    # Two real, correctly named manifests (and two blobs) whose digests share 8 hex digits,
    # found by a birthday search; stored as objects without refs, as a fetch could leave them.
    first, second = colliding_pair(manifest_bytes)
    digests = [registry.objects.add_bytes(data).digest for data in (first, second)]
    assert all(registry.manifest(d).name == "demo" for d in digests)
    assert digests[0][:15] == digests[1][:15] and digests[0] != digests[1]
    with pytest.raises(AmbiguousRefError, match="ambiguous"):
        registry.resolve(digests[0][:15])
    differ = next(i for i, (a, b) in enumerate(zip(*digests)) if a != b)
    assert registry.resolve(digests[1][: differ + 1]) == digests[1]
    blobs = [registry.objects.add_bytes(data).digest for data in colliding_pair(lambda i: b"blob %d" % i)]
    with pytest.raises(AmbiguousRefError):
        registry.find_object(blobs[0][:15])
    assert registry.find_object(blobs[1]) == blobs[1]
    with pytest.raises(ObjectNotFoundError):
        registry.find_object("sha256:" + ("0" * 64 if blobs[0][7] != "0" else "f" * 64))


def test_full_blob_digest_is_not_a_manifest_reference(registry: Registry, add) -> None:
    add("demo@1.0.0")
    blob = registry.get("demo").files[0].digest
    with pytest.raises(UnknownRefError):
        registry.resolve(blob)


def test_large_manifest_resolves_by_prefix(registry: Registry, add) -> None:
    digest = add("demo@1.0.0", properties={"notes": "x" * (1 << 20)}).digest
    assert registry.object_type(digest) == "manifest"
    assert registry.resolve(digest[:15]) == digest


# ---------------------------------------------------------- immutability


def test_identical_re_add_is_a_no_op(registry: Registry, make_file, monkeypatch) -> None:
    file = make_file("w.dat", "weights")
    first = registry.add("demo@1.0.0", [file], metrics={"acc": 0.9}, message="m")
    before = store_snapshot(registry)
    monkeypatch.setenv("MREG_AUTHOR", "somebody-else")
    again = registry.add("demo@1.0.0", [make_file("copy/w.dat", "weights")], metrics={"acc": 0.9}, message="m")
    assert (again.digest, again.created) == (first.digest, False) and first.created
    assert store_snapshot(registry) == before


@pytest.mark.parametrize(
    "options, content, detail",
    [
        ({"metrics": {"acc": 0.9}}, "other weights", "different files"),
        ({"metrics": {"acc": 0.91}}, "weights", "different metadata"),
        ({"metrics": {"acc": 0.9}, "message": "changed"}, "weights", "different metadata"),
        ({"metrics": {"acc": 0.9}, "family": "resnet"}, "weights", "different metadata"),
        ({"metrics": {"acc": 0.9}, "properties": {"k": "v"}}, "weights", "different metadata"),
    ],
)
def test_conflicting_re_add_changes_nothing(registry: Registry, make_file, options, content, detail) -> None:
    first = registry.add("demo@1.0.0", [make_file("w.dat", "weights")], metrics={"acc": 0.9})
    before = store_snapshot(registry)
    with pytest.raises(VersionConflictError, match=detail) as caught:
        registry.add("demo@1.0.0", [make_file("new/w.dat", content)], **options)
    assert (caught.value.name, caught.value.version, caught.value.existing) == ("demo", "1.0.0", first.digest)
    assert store_snapshot(registry) == before


def test_bump(registry: Registry, add) -> None:
    assert add("demo", "a", bump="minor").version == "0.1.0"
    assert add("demo", "b", bump="patch").version == "0.1.1"
    assert add("demo", "c", bump="major").version == "1.0.0"
    add("demo@2.0.0-rc.1", "d")
    promoted = add("demo", "e", bump="major")
    assert promoted.version == "2.0.0" and registry.resolve("demo") == promoted.digest


def test_versions_differing_only_in_build_metadata_are_refused(registry: Registry, add) -> None:
    add("demo@1.0.0+build.1", "same")
    with pytest.raises(ConflictError, match="only in build metadata"):
        add("demo@1.0.0+build.2", "same")
    with pytest.raises(ConflictError):
        add("demo@1.0.0", "same")
    assert [v.version for v in registry.versions("demo")] == ["1.0.0+build.1"]


def test_model_names_differing_only_in_case_are_refused(registry: Registry, add) -> None:
    add("Demo@1.0.0", "x")
    with pytest.raises(InvalidNameError, match="differs only in case"):
        add("demo@1.0.0", "x")
    assert [m.name for m in registry.models()] == ["Demo"]


# --------------------------------------------------------- tags and rm


def test_tag_and_untag_with_compare_and_swap(registry: Registry, add) -> None:
    add("demo@1.0.0", "one")
    add("demo@2.0.0", "two")
    change = registry.tag("demo@1.0.0", "prod", expected=None)
    assert (change.old, change.new) == (None, "1.0.0")
    with pytest.raises(RefChangedError, match="points at 1.0.0"):
        registry.tag("demo@2.0.0", "prod", expected=None)
    with pytest.raises(RefChangedError):
        registry.tag("demo@2.0.0", "prod", expected="2.0.0")
    assert registry.tag("demo@2.0.0", "prod", expected="1.0.0").old == "1.0.0"
    assert registry.tag("demo@1.0.0", "prod").old == "2.0.0"  # unconditional move
    with pytest.raises(RefChangedError):
        registry.untag("demo", "prod", expected="2.0.0")
    assert registry.untag("demo", "prod", expected="1.0.0").new is None
    with pytest.raises(UnknownRefError, match="no such tag"):
        registry.untag("demo", "prod")
    with pytest.raises(InvalidNameError):
        registry.tag("demo@1.0.0", "latest")
    with pytest.raises(UnknownModelError):
        registry.untag("nope", "prod")
    registry.tag(registry.resolve("demo@2.0.0"), "by-digest")
    assert registry.refs.read("demo").tags == {"by-digest": "2.0.0"}


def test_remove_drops_tags_and_recomputes_latest(registry: Registry, add) -> None:
    one = add("demo@1.0.0", "one").digest
    add("demo@2.0.0-rc.1", "rc", tags=["beta"])
    two = add("demo@1.1.0", "two", tags=["prod", "stable"]).digest
    assert registry.resolve("demo") == two
    assert registry.remove("demo@1.1.0") == two
    assert registry.refs.read("demo").tags == {"beta": "2.0.0-rc.1"}
    assert registry.resolve("demo") == one
    registry.remove("demo@1.0.0", message="bad data")
    assert registry.refs.read("demo").latest == "2.0.0-rc.1"  # only pre-releases left
    assert registry.get("demo").tags == ("latest", "beta")
    assert registry.objects.contains(one)  # objects stay until gc
    with pytest.raises(UnknownRefError, match="no version 1.0.0"):
        registry.remove("demo@1.0.0")
    with pytest.raises(InvalidInputError, match="exact version"):
        registry.remove("demo")
    registry.remove("demo@2.0.0-rc.1")
    with pytest.raises(UnknownModelError):
        registry.versions("demo")
    assert registry.models() == []


def test_log_newest_first_with_author(registry: Registry, add, monkeypatch) -> None:
    monkeypatch.setenv("MREG_AUTHOR", "alice")
    first = add("demo@1.0.0", "one", message="initial").digest
    monkeypatch.setenv("MREG_AUTHOR", "bob")
    registry.tag("demo@1.0.0", "prod")
    registry.remove("demo@1.0.0", message="withdrawn")
    entries = registry.log("demo")
    assert [(e.ref, e.author) for e in entries] == [
        ("latest", "bob"),
        ("tags/prod", "bob"),
        ("versions/1.0.0", "bob"),
        ("tags/prod", "bob"),
        ("latest", "alice"),
        ("versions/1.0.0", "alice"),
    ]
    assert (entries[-1].old, entries[-1].new, entries[-1].message) == (None, first, "initial")
    assert (entries[2].old, entries[2].new, entries[2].message) == (first, None, "withdrawn")
    assert all(e.time.endswith("Z") for e in entries)
    with pytest.raises(UnknownModelError):
        registry.log("nope")


def test_path(registry: Registry, make_file, tmp_path: Path) -> None:
    registry.add("single@1.0.0", [make_file("model.dat", "single")])
    path = registry.path("single")
    assert path.is_absolute() and path.read_text() == "single"
    assert path == registry.objects.object_path(sha(b"single"))
    (tmp_path / "multi").mkdir()
    (tmp_path / "multi" / "a.dat").write_text("A")
    (tmp_path / "multi" / "b.dat").write_text("B")
    registry.add("multi@1.0.0", [tmp_path / "multi"])
    assert registry.path("multi", "b.dat").read_text() == "B"
    with pytest.raises(InvalidInputError, match="a.dat, b.dat"):
        registry.path("multi")
    with pytest.raises(NotFoundError, match="no file 'c.dat'"):
        registry.path("multi", "c.dat")
