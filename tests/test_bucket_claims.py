"""Two pushes that create models whose names differ only in case, at the same moment, in
S3 (moto) and Azure (Azurite): one wins, the other is refused, and every clone works."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from bucket_servers import azurite, bucket_server, bucket_url, raw_store, s3_server  # noqa: F401 - fixtures
from conftest import assert_clean_failure, one_file, run_cli

from mreg import MregError
from mreg.errors import InvalidNameError
from mreg.registry import Registry, fsck_bucket
from mreg.sharing.buckets import claims, destination


def plant(url: str, key: str, data: bytes) -> None:
    import obstore

    obstore.put(raw_store(url), key, data)


def test_two_pushes_creating_case_twins_at_once_one_wins(bucket_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lower, upper = Registry.init(tmp_path / "lower"), Registry.init(tmp_path / "upper")
    lower.add("net@1.0.0", one_file(b"one"))
    upper.add("Net@1.0.0", one_file(b"two"))
    both_checked = threading.Barrier(2, timeout=60)
    change_refs = destination.BucketDestination.update_refs

    def together(self: destination.BucketDestination, *args: object, **kwargs: object) -> object:
        both_checked.wait()  # each push has listed the bucket's models and uploaded its objects
        return change_refs(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(destination.BucketDestination, "update_refs", together)
    outcomes: dict[str, MregError | None] = {}

    def push(registry: Registry, who: str) -> None:
        try:
            registry.push(bucket_url)
            outcomes[who] = None
        except MregError as exc:
            outcomes[who] = exc

    threads = [threading.Thread(target=push, args=pair) for pair in ((lower, "lower"), (upper, "upper"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    refused = [exc for exc in outcomes.values() if exc is not None]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    assert isinstance(refused[0], InvalidNameError) and "differs only in case" in str(refused[0])
    winner = "net" if outcomes["lower"] is None else "Net"
    report = fsck_bucket(bucket_url)
    assert report.ok, report.problems
    clone, _ = Registry.clone(bucket_url, tmp_path / "clone")
    assert [m.name for m in clone.models()] == [winner]


def test_a_young_claim_without_a_model_holds_the_name_and_an_old_one_is_taken_over(
    bucket_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry.init(tmp_path / "r")
    registry.add("Net@1.0.0", one_file(b"weights"))
    plant(bucket_url, "names/net", b"net\n")  # a push creating 'net' claimed it, and has not made its table yet
    result = run_cli("push", bucket_url, registry=registry)
    assert_clean_failure(result, 2)
    assert "differs only in case from 'net', which a push" in result.stderr
    monkeypatch.setattr(claims, "FRESHEN_AFTER", timedelta(0))  # that push died longer ago than a push may last
    registry.push(bucket_url)
    assert fsck_bucket(bucket_url).ok
    assert Registry.clone(bucket_url, tmp_path / "clone")[0].get("Net@1.0.0").name == "Net"


@pytest.mark.parametrize("planted", [b"", b"\xff\xfe", b"other\n", b"NET/../x\n", b"n" * 5000])
def test_a_damaged_claim_is_refused_in_one_line(bucket_url: str, tmp_path: Path, planted: bytes) -> None:
    registry = Registry.init(tmp_path / "r")
    registry.add("net@1.0.0", one_file(b"weights"))
    plant(bucket_url, "names/net", planted)
    result = run_cli("push", bucket_url, registry=registry)
    assert result.exit_code != 0
    assert_clean_failure(result, result.exit_code)
    assert "names/net" in result.stderr, result.stderr


def test_a_registry_pushed_again_keeps_its_claims(bucket_url: str, tmp_path: Path) -> None:
    registry = Registry.init(tmp_path / "r")
    registry.add("Net@1.0.0", one_file(b"one"))
    registry.push(bucket_url)
    registry.add("Net@1.1.0", one_file(b"two"))
    registry.add("other@1.0.0", one_file(b"three"))
    registry.push(bucket_url)
    import obstore

    keys = sorted(str(info["path"]) for batch in obstore.list(raw_store(bucket_url), "names/") for info in batch)
    assert keys == ["names/net", "names/other"]
    assert bytes(obstore.get(raw_store(bucket_url), "names/net").bytes()) == b"Net\n"
