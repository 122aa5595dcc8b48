"""Manifests: canonical msgpack encoding, validated decoding, content comparison."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from mreg.errors import CorruptObjectError, InvalidInputError
from mreg.records.codec import canonical_encode
from mreg.records.manifest import (
    Dataset,
    FileEntry,
    Framework,
    Lineage,
    Manifest,
    looks_like_manifest,
    validate_input_shape,
    validate_metrics,
    validate_properties,
)

BLOB = "sha256:" + "ab" * 32
PARENT = "sha256:" + "cd" * 32


def sample(**changes: Any) -> Manifest:
    """A manifest with every field set."""
    manifest = Manifest(
        name="org/resnet",
        version="1.2.0-rc.1+b7",
        files=(FileEntry("model.safetensors", BLOB, 1234), FileEntry("sub/config.json", PARENT, 0)),
        family="resnet",
        framework=Framework("pytorch", "2.13.0"),
        architecture="resnet18",
        input_shape=(1, 3, -1, 224),
        metrics={"top1": 0.75, "loss": 1.5},
        properties={"license": "mit", "nested": {"b": [1, 2.5, None, True], "a": "x"}, "epochs": 90},
        lineage=Lineage(
            datasets=(Dataset("imagenet", digest=PARENT), Dataset("coco", uri="s3://bucket/coco")),
            parents=(PARENT,),
            created="2024-05-01T12:00:00Z",
            author="alice",
            message="first try",
        ),
    )
    return replace(manifest, **changes)


def test_same_content_gives_same_bytes_regardless_of_insertion_order() -> None:
    one = sample(metrics={"top1": 0.75, "loss": 1.5}, properties={"z": 1, "a": {"y": 2, "b": 3}})
    two = sample(metrics={"loss": 1.5, "top1": 0.75}, properties={"a": {"b": 3, "y": 2}, "z": 1})
    assert one.encode() == two.encode()
    assert one.digest == two.digest
    assert one.digest == "sha256:" + hashlib.sha256(one.encode()).hexdigest()


def test_encoding_sorts_keys_and_uses_float64() -> None:
    data = sample().encode()
    raw = msgpack.unpackb(data, raw=False)
    assert list(raw) == sorted(raw)
    assert list(raw["lineage"]) == sorted(raw["lineage"])
    assert b"\xcb" in data  # msgpack float64 marker
    assert canonical_encode({"b": 1, "a": {"d": 2, "c": 3}}) == msgpack.packb({"a": {"c": 3, "d": 2}, "b": 1})


def test_different_content_gives_different_digest() -> None:
    assert sample().digest != sample(metrics={"top1": 0.76, "loss": 1.5}).digest
    assert sample().digest != sample(version="1.2.0-rc.1+b8").digest


@pytest.mark.parametrize(
    "manifest",
    [sample(), Manifest("demo", "1.0.0", (FileEntry("f", BLOB, 1),))],
    ids=["full", "minimal"],
)
def test_decode_round_trip(manifest: Manifest) -> None:
    data = manifest.encode()
    decoded = Manifest.decode(data)
    assert decoded == manifest
    assert decoded.encode() == data
    assert looks_like_manifest(data)


def test_to_dict_has_every_field() -> None:
    data = sample().to_dict()
    assert data["kind"] == "mreg.manifest" and data["schema"] == 1
    assert data["files"][0] == {"path": "model.safetensors", "digest": BLOB, "size": 1234}
    assert data["framework"] == {"name": "pytorch", "version": "2.13.0"}
    assert data["input_shape"] == [1, 3, -1, 224]
    assert set(data["lineage"]) == {"datasets", "parents", "created", "author", "message"}


def encode_raw(mutate) -> bytes:
    """Canonically encode the sample's dict after ``mutate`` changed it."""
    raw = sample().to_dict()
    mutate(raw)
    return canonical_encode(raw)


def test_decode_refuses_non_canonical_key_order() -> None:
    raw = sample().to_dict()
    assert list(raw) != sorted(raw)
    data = msgpack.packb(raw, use_bin_type=True)  # same content, keys in to_dict order
    assert msgpack.unpackb(data) == msgpack.unpackb(sample().encode())
    with pytest.raises(CorruptObjectError, match="canonical"):
        Manifest.decode(data)


def test_decode_refuses_float32_and_integer_metrics() -> None:
    as_float32 = msgpack.packb(msgpack.unpackb(sample().encode()), use_single_float=True, use_bin_type=True)
    with pytest.raises(CorruptObjectError):
        Manifest.decode(as_float32)
    with pytest.raises(CorruptObjectError, match="canonical"):
        Manifest.decode(encode_raw(lambda raw: raw.update(metrics={"top1": 1})))


def test_decode_refuses_extra_fields() -> None:
    with pytest.raises(CorruptObjectError, match="canonical"):
        Manifest.decode(encode_raw(lambda raw: raw.update(extra=1)))


@pytest.mark.parametrize("cut", [1, 10, 100, -1])
def test_decode_refuses_truncated_bytes(cut: int) -> None:
    data = sample().encode()
    with pytest.raises(CorruptObjectError, match="not a valid manifest"):
        Manifest.decode(data[:cut], "sha256:x")


@pytest.mark.parametrize("data", [b"", b"\xc1", b"garbage", msgpack.packb([1, 2]), msgpack.packb({1: 2}), msgpack.packb("x")])
def test_decode_refuses_garbage(data: bytes) -> None:
    with pytest.raises(CorruptObjectError) as caught:
        Manifest.decode(data, "sha256:feed")
    assert caught.value.digest == "sha256:feed"


BAD_FIELDS = {
    "wrong kind": lambda r: r.update(kind="mreg.other"),
    "schema 2": lambda r: r.update(schema=2),
    "schema as text": lambda r: r.update(schema="1"),
    "missing name": lambda r: r.pop("name"),
    "bad name": lambda r: r.update(name="../evil"),
    "name not text": lambda r: r.update(name=5),
    "bad version": lambda r: r.update(version="1.0"),
    "files not a list": lambda r: r.update(files={"a": 1}),
    "file size text": lambda r: r["files"][0].update(size="3"),
    "file size negative": lambda r: r["files"][0].update(size=-1),
    "file size bool": lambda r: r["files"][0].update(size=True),
    "file path escapes": lambda r: r["files"][0].update(path="../../etc/passwd"),
    "file path absolute": lambda r: r["files"][0].update(path="/etc/passwd"),
    "file digest bad": lambda r: r["files"][0].update(digest="sha256:abc"),
    "file missing digest": lambda r: r["files"][0].pop("digest"),
    "family not text": lambda r: r.update(family=3),
    "framework not a map": lambda r: r.update(framework="pytorch"),
    "input shape zero": lambda r: r.update(input_shape=[0]),
    "metric text": lambda r: r.update(metrics={"acc": "0.9"}),
    "metric bad key": lambda r: r.update(metrics={"a b": 1.0}),
    "properties not a map": lambda r: r.update(properties=[1]),
    "lineage not a map": lambda r: r.update(lineage=[]),
    "parent not a digest": lambda r: r["lineage"].update(parents=["demo@1.0.0"]),
    "dataset not a map": lambda r: r["lineage"].update(datasets=["imagenet"]),
    "author not text": lambda r: r["lineage"].update(author=None),
}


@pytest.mark.parametrize("mutate", list(BAD_FIELDS.values()), ids=list(BAD_FIELDS))
def test_decode_refuses_bad_fields(mutate) -> None:
    with pytest.raises(CorruptObjectError, match="not a valid manifest"):
        Manifest.decode(encode_raw(mutate))


def test_same_content_ignores_created_and_author_only() -> None:
    base = sample()
    other_time = sample(lineage=replace(base.lineage, created="2030-01-01T00:00:00Z", author="bob"))
    assert base.same_content(other_time) and other_time.same_content(base)
    assert base.digest != other_time.digest
    differing = [
        sample(lineage=replace(base.lineage, message="second try")),
        sample(lineage=replace(base.lineage, parents=())),
        sample(lineage=replace(base.lineage, datasets=())),
        sample(metrics={"top1": 0.75}),
        sample(properties={}),
        sample(family="vit"),
        sample(framework=Framework("pytorch", "2.4.0")),
        sample(architecture=None),
        sample(input_shape=(1, 3, 224, 224)),
        sample(files=base.files[:1]),
        sample(files=(FileEntry("renamed", BLOB, 1234), base.files[1])),
    ]
    for manifest in differing:
        assert not base.same_content(manifest), manifest


def test_validate_metrics() -> None:
    assert validate_metrics({"acc": 1, "loss": 0.5}) == {"acc": 1.0, "loss": 0.5}
    assert isinstance(validate_metrics({"acc": 1})["acc"], float)
    for bad in [{"acc": float("nan")}, {"acc": float("inf")}, {"acc": True}, {"acc": "0.9"}, {"acc": None}, {"a b": 1}, [("acc", 1)]]:
        with pytest.raises(InvalidInputError):
            validate_metrics(bad)


def test_validate_properties() -> None:
    value = {"k": [1, {"x": None}], "b": True, "f": 0.5, "s": "text"}
    assert validate_properties(value) == value
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    for bad in [{"k": float("nan")}, {"k": object()}, {"k": b"bytes"}, {"k": {1: 2}}, {"": 1}, {"k": deep}, "text"]:
        with pytest.raises(InvalidInputError):
            validate_properties(bad)


def test_validate_input_shape() -> None:
    assert validate_input_shape([1, 3, 224, 224]) == (1, 3, 224, 224)
    assert validate_input_shape((-1, 3)) == (-1, 3)
    for bad in [[], [0], [-2], [1.5], [True], "1,3", None, [1, "3"]]:
        with pytest.raises(InvalidInputError):
            validate_input_shape(bad)


def test_looks_like_manifest() -> None:
    assert not looks_like_manifest(b"")
    assert not looks_like_manifest(b"hello\n")
    assert not looks_like_manifest(msgpack.packb({"kind": "other"}))
    assert looks_like_manifest(msgpack.packb({"kind": "mreg.manifest"}))
