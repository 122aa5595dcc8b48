"""Bucket URLs and settings for S3, GCS and Azure: parsing, config keys, credentials
files and the errors of a bucket that cannot be reached (no server needed)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli

from mreg.errors import InvalidInputError
from mreg.registry import Registry
from mreg.sharing.buckets.client import (
    allow_http,
    aws_profile,
    aws_profile_region,
    store_options,
)
from mreg.sharing.buckets.url import (
    BucketURL,
    is_bucket_url,
    parse_bucket_url,
    remote_settings,
)
from mreg.sharing.locations import split_locations
from mreg.storage.config import Config


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("s3://team-models", BucketURL("s3", "team-models", "")),
        ("s3://team.models/registry/", BucketURL("s3", "team.models", "registry")),
        ("gs://ml_bucket/a/b", BucketURL("gs", "ml_bucket", "a/b")),
        ("az://container//deep/prefix//", BucketURL("az", "container", "deep/prefix")),
    ],
)
def test_bucket_urls_parse(text: str, parsed: BucketURL) -> None:
    assert parse_bucket_url(text) == parsed and is_bucket_url(text)
    assert parse_bucket_url(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["s3://", "s3://Upper/x", "gs://b/../x", "az://c/./x", "s3://b/x?versionId=1", "s3://b/sp ace", "s3://b/x#y"])
def test_bad_bucket_urls_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid bucket URL"):
        parse_bucket_url(text)


def test_split_locations_keeps_bucket_urls_whole() -> None:
    text = os.pathsep.join(["s3://a/p", "/mnt/team", "gs://b", "http://host:8000/x", "az://c/d/e"])
    assert split_locations(text) == ["s3://a/p", "/mnt/team", "gs://b", "http://host:8000/x", "az://c/d/e"]


def test_remote_settings_come_from_the_remote_with_that_url(tmp_path: Path) -> None:
    """endpoint / region / allow-http of the remote whose URL is the bucket's (spelled either way)."""
    path = tmp_path / "config"
    path.write_text(
        '[remote "minio"]\n\turl = s3://team/reg/\n\tendpoint = http://minio:9000\n\tallow-http = true\n'
        '[remote "aws"]\n\turl = s3://other\n\tregion = eu-west-1\n'
        '[remote "broken"]\n\turl = s3://BAD\n\tendpoint = http://evil\n'
    )
    config = Config.load(path)
    assert remote_settings(config, parse_bucket_url("s3://team/reg")) == {"endpoint": "http://minio:9000", "allow-http": "true"}
    assert remote_settings(config, parse_bucket_url("s3://other")) == {"region": "eu-west-1"}
    assert remote_settings(config, parse_bucket_url("gs://team/reg")) == {}
    assert remote_settings(None, parse_bucket_url("s3://team/reg")) == {}


def test_store_options_per_provider(tmp_path: Path) -> None:
    """S3 takes endpoint and region; GCS's endpoint is its base_url; Azure's its endpoint."""
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_REGION": "us-west-2"}
    s3 = parse_bucket_url("s3://b/p")
    assert store_options(s3, {"endpoint": "http://m:9000", "region": "eu-central-1"}, env) == {"endpoint": "http://m:9000", "region": "eu-central-1"}
    assert store_options(s3, {}, env) == {}  # obstore reads AWS_* itself
    assert store_options(parse_bucket_url("gs://b"), {"endpoint": "http://gcs:4443"}, {}) == {"base_url": "http://gcs:4443"}
    assert store_options(parse_bucket_url("az://c"), {"endpoint": "http://azurite:10000"}, {}) == {"endpoint": "http://azurite:10000"}
    assert not allow_http({}, {}) and allow_http({"allow-http": "true"}, {}) and allow_http({}, {"AWS_ALLOW_HTTP": "TRUE"})


def test_aws_profile_files_are_read_when_the_environment_has_no_key(tmp_path: Path) -> None:
    credentials, config = tmp_path / "credentials", tmp_path / "config"
    credentials.write_text(
        "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[work]\naws_access_key_id = W\naws_secret_access_key = WS\naws_session_token = T\n"
    )
    config.write_text("[default]\nregion = eu-north-1\n[profile work]\nregion = ap-south-1\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(config)}
    assert aws_profile(env) == {"access_key_id": "D", "secret_access_key": "DS"}
    assert aws_profile({**env, "AWS_PROFILE": "work"}) == {"access_key_id": "W", "secret_access_key": "WS", "session_token": "T"}
    assert aws_profile_region({**env, "AWS_PROFILE": "work"}) == "ap-south-1"
    options = store_options(parse_bucket_url("s3://b"), {}, {**env, "AWS_PROFILE": "work"})
    assert options == {"access_key_id": "W", "secret_access_key": "WS", "session_token": "T", "region": "ap-south-1"}
    assert aws_profile({"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "missing")}) == {}
    assert store_options(parse_bucket_url("s3://b"), {}, {"AWS_ACCESS_KEY_ID": "E", **env}) == {"region": "eu-north-1"}


@pytest.mark.parametrize("key", ["remote.s3.secret-access-key", "remote.az.account-key", "remote.g.credentials", "remote.x.session-token", "remote.az.sas"])
def test_config_never_stores_secrets(registry: Registry, key: str) -> None:
    result = run_cli("config", key, "s3cr3t", registry=registry)
    assert_clean_failure(result, 2)
    config = registry.root / "config"
    assert not config.exists() or "s3cr3t" not in config.read_text()


def test_config_accepts_bucket_remotes_and_refuses_bad_ones(registry: Registry) -> None:
    for key, value in (
        ("remote.g.url", "gs://ml/reg"),
        ("remote.g.endpoint", "http://gcs:4443"),
        ("remote.a.url", "az://models"),
        ("fallback.url", "s3://b/p"),
    ):
        assert run_cli("config", key, value, registry=registry).exit_code == 0
    assert Registry.open(registry.root).config.get("remote.g.url") == "gs://ml/reg"
    assert_clean_failure(run_cli("config", "--add", "fallback.url", "gs://Bad Bucket", registry=registry), 2)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_azure_and_gcs_failures_are_one_line_exit_7(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """No account, no credentials, an endpoint that does not answer: exit 7 naming the URL, nothing changed."""
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SERVICE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    run_cli("config", "http.timeout", "2", registry=registry)
    no_account = run_cli("pull", "az://models/team", registry=registry)
    assert_clean_failure(no_account, 7)
    assert "az://models/team" in no_account.stderr and "Account" in no_account.stderr
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "team")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    for key, value in (("url", "az://models/team"), ("endpoint", f"http://127.0.0.1:{_closed_port()}"), ("allow-http", "true")):
        run_cli("config", f"remote.azure.{key}", value, registry=registry)
    unreachable = run_cli("push", "azure", registry=registry)
    assert_clean_failure(unreachable, 7)
    assert "az://models/team" in unreachable.stderr and "cannot reach the endpoint" in unreachable.stderr
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(Path("no-such-key.json").resolve()))
    gcs = run_cli("clone", "gs://models/team", "copy", registry=registry)
    assert_clean_failure(gcs, 7)
    assert "gs://models/team" in gcs.stderr
    assert registry.refs.names() == []
