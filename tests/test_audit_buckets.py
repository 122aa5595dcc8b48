"""Buckets (S3 via moto, Azure via Azurite): chained logs read in batches, signatures and
tombstones, gc that never takes an object a concurrent push reused, case twins, and an
fsck that sees what would make a clone refuse."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from audit_keys import allowed_signers, keys, needs_ssh_keygen  # noqa: F401 - fixture
from bucket_servers import azurite, bucket_server, bucket_url, raw_store, s3_server  # noqa: F401 - fixtures
from conftest import assert_clean_failure, one_file, run_cli
from test_bucket import keys as bucket_keys
from test_bucket import record_requests

from mreg.registry import Registry, fsck_bucket, gc_bucket


@needs_ssh_keygen
def test_signatures_and_approvals_travel_through_a_bucket(bucket_url: str, keys: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    allowed = allowed_signers(tmp_path / "allowed", keys, "alice", "bob")
    origin = Registry.init(tmp_path / "origin")
    origin.set_config("trust.allowedsigners", str(allowed))
    origin.add("m@1.0.0", one_file(b"one"), sign=True, key=str(keys["alice"]))
    origin.approve("m@1.0.0", "production", "validated", key=str(keys["bob"]))
    assert origin.push(bucket_url).versions == ["m@1.0.0"]
    assert fsck_bucket(bucket_url).ok
    copy, _ = Registry.clone(bucket_url, str(tmp_path / "copy"))
    copy.set_config("trust.allowedsigners", str(allowed))
    assert copy.verify("m@1.0.0").ok and copy.fsck().ok
    logs = [k for k in bucket_keys(bucket_url) if "/_logs/" in k]
    assert logs and all(k.rsplit("/", 1)[1].isdigit() and len(k.rsplit("/", 1)[1]) == 12 for k in logs)


def test_a_bucket_history_only_grows_and_fsck_sees_a_damaged_log(bucket_url: str, tmp_path: Path) -> None:
    import obstore

    origin = Registry.init(tmp_path / "origin")
    origin.add("m@1.0.0", one_file(b"one"))
    origin.push(bucket_url)
    copy = Registry.init(tmp_path / "copy")
    copy.pull(bucket_url)
    store = raw_store(bucket_url)
    first = sorted(k for k in bucket_keys(bucket_url) if "/_logs/" in k)[0]
    original = bytes(obstore.get(store, first).bytes())
    obstore.put(store, first, original.replace(b'"tester"', b'"mallory"'))  # one log object rewritten
    report = fsck_bucket(bucket_url)
    assert not report.ok and any("log of 'm'" in p for p in report.problems), report.problems
    origin.add("m@1.1.0", one_file(b"two"))
    result = run_cli("push", bucket_url, registry=origin)
    assert result.exit_code == 0  # a writer appends after the newest object, as a file system's does
    refused = run_cli("pull", bucket_url, registry=copy)
    assert_clean_failure(refused)
    assert "log of 'm'" in refused.stderr and "refused" in refused.stderr
    obstore.put(store, first, b"not a log object at all\n")  # unreadable: fsck must say so, not pass it
    report = fsck_bucket(bucket_url)
    assert any("is damaged" in p or "not chained" in p for p in report.problems), report.problems
    assert_clean_failure(run_cli("clone", bucket_url, str(tmp_path / "clone")))
    assert run_cli("fsck", bucket_url).exit_code == 1


def test_names_that_differ_only_in_case_are_refused_and_seen(bucket_url: str, tmp_path: Path) -> None:
    import obstore

    a, b = Registry.init(tmp_path / "a"), Registry.init(tmp_path / "b")
    a.add("net@1.0.0", one_file(b"one"))
    b.add("Net@1.0.0", one_file(b"two"))
    a.push(bucket_url)
    before = bucket_keys(bucket_url)
    result = run_cli("push", bucket_url, registry=b)
    assert_clean_failure(result, 2)
    assert "differs only in case" in result.stderr and bucket_keys(bucket_url) == before
    store = raw_store(bucket_url)
    obstore.put(store, "models/NET/_refs", bytes(obstore.get(store, "models/net/_refs").bytes()))  # planted behind mreg's back
    report = fsck_bucket(bucket_url)
    assert any("differ only in case" in p for p in report.problems), report.problems


def test_pulls_read_only_the_new_log_objects_in_batches(bucket_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull used to read every log object one GET at a time; now the objects after the
    last pull only, several at once; a push reads back to its own last merge only."""
    origin = Registry.init(tmp_path / "origin")
    for i in range(40):
        origin.add(f"m@1.{i}.0", one_file(b"w%d" % i))
        origin.push(bucket_url)
    laptop = Registry.init(tmp_path / "laptop")
    laptop.pull(bucket_url)
    origin.add("m@2.0.0", one_file(b"new"))
    made = record_requests(monkeypatch)
    origin.push(bucket_url)
    log_reads = [path for verb, path in made if verb == "get" and "/_logs/" in path]
    assert len(set(log_reads)) == 1 and len(log_reads) <= 3, log_reads  # the newest object: origin's last merge is in it
    made.clear()
    assert laptop.pull(bucket_url).versions == ["m@2.0.0"]
    log_reads = [path for verb, path in made if verb == "get" and "/_logs/" in path]
    assert 1 <= len(set(log_reads)) <= 2, log_reads  # the object holding the head read last time, and those after it
    assert laptop.fsck().ok


def test_a_push_never_loses_an_object_to_a_concurrent_gc(bucket_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gc HEADs an unreachable old object, a push then rewrites it to reuse it and
    commits its refs, and gc deletes it: the push waits for that gc and uploads it again."""
    import hashlib

    import obstore

    from mreg.sharing.buckets import destination
    from mreg.sharing.buckets.client import Bucket

    data = b"weights a push will reuse" * 100
    path = f"objects/{hashlib.sha256(data).hexdigest()[:2]}/{hashlib.sha256(data).hexdigest()[2:]}"
    origin = Registry.init(tmp_path / "origin")
    origin.add("seed@1.0.0", one_file(b"seed"))
    origin.push(bucket_url)
    obstore.put(raw_store(bucket_url), path, data)  # old, and no ref reaches it
    origin.add("m@1.0.0", one_file(data))
    monkeypatch.setattr(destination, "FRESHEN_AFTER", timedelta(0))  # every reused object is rewritten
    headed, freshened = threading.Event(), threading.Event()
    real_head, real_overwrite = Bucket.head, Bucket.overwrite

    def head(self: Bucket, key: str) -> object:
        found = real_head(self, key)
        if key == path and threading.current_thread().name == "gc":
            headed.set()  # gc saw it old...
            assert freshened.wait(30)  # ...and deletes it after the push rewrote it
        return found

    def overwrite(self: Bucket, key: str, content: bytes) -> None:
        real_overwrite(self, key, content)
        if key == path:
            freshened.set()

    monkeypatch.setattr(Bucket, "head", head)
    monkeypatch.setattr(Bucket, "overwrite", overwrite)
    swept: list[object] = []
    gc = threading.Thread(target=lambda: swept.append(gc_bucket(bucket_url, grace=timedelta(0))), name="gc")
    gc.start()
    assert headed.wait(30)
    started = time.monotonic()
    origin.push(bucket_url)  # waits for the running gc, finds the object gone, uploads it again
    gc.join(30)
    assert swept and path.replace("/", "")[7:] in "".join(swept[0].objects).replace("sha256:", "")  # gc did delete it
    assert time.monotonic() - started < 30
    assert fsck_bucket(bucket_url).ok
    clone, _ = Registry.clone(bucket_url, str(tmp_path / "clone"))
    assert clone.path("m@1.0.0").read_bytes() == data
