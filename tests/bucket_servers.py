"""The object stores the bucket tests run against: one suite, every service, each a real
server on 127.0.0.1, as one suite runs over every kind of store.

A test that takes ``bucket_url`` runs once per service: ``s3`` (moto's S3 server) and
``az`` (Azurite, Microsoft's Azure Blob Storage emulator). ``bucket_server`` gives the
service itself, for what differs between them: the variables that point obstore at the
server, a named remote's settings, refused credentials. Google Cloud Storage is not
here: no emulator available here serves the requests obstore makes (docs/object-storage.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import pytest
from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, azurite  # noqa: F401 - fixture
from s3server import CREDENTIALS, S3Server, s3_server  # noqa: F401 - fixture

from mreg.sharing.buckets.url import parse_bucket_url

SERVICES = ("s3", "az")


class BucketService(Protocol):
    """What a bucket test needs to know of the service it runs against."""

    scheme: str
    missing_bucket: str
    """The cause mreg names when the bucket does not exist."""

    def environment(self) -> dict[str, str]:
        """The variables that point obstore at the server, with working credentials."""

    def create_bucket(self, name: str) -> None:
        """Make an empty bucket (mreg never creates one)."""

    def named_remote(self) -> tuple[dict[str, str], list[str]]:
        """A named remote's settings that reach the server (``remote.NAME.KEY``), and the
        variables of :meth:`environment` they replace."""

    def unreachable(self, endpoint: str) -> dict[str, str]:
        """The variables that point obstore at ``endpoint`` instead."""

    def refused(self, case: str) -> Any:  # a context manager giving variables
        """Credentials the server refuses: ``bad key``, ``bad secret`` or ``forbidden`` (valid but
        allowed nothing); a context manager yielding the variables to set (None: to unset)."""


class S3Service:
    """moto's S3 server: AWS variables; IAM users for refused credentials."""

    scheme = "s3"
    missing_bucket = "the bucket does not exist"

    def __init__(self, server: S3Server) -> None:
        self.server = server

    def environment(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.server.endpoint}

    def create_bucket(self, name: str) -> None:
        self.server.create_bucket(name)

    def named_remote(self) -> tuple[dict[str, str], list[str]]:
        settings = {"endpoint": self.server.endpoint, "allow-http": "true", "region": "us-east-1"}
        return settings, ["AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"]

    def unreachable(self, endpoint: str) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": endpoint}

    @contextmanager
    def refused(self, case: str) -> Iterator[dict[str, str | None]]:
        with self.server.authenticating() as keys:
            key, secret = keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]
            if case == "bad key":
                key = "AKIANOSUCHKEY0000000"
            elif case == "bad secret":
                secret = "not-the-secret"
            else:
                key, secret = keys["DENIED_AWS_ACCESS_KEY_ID"], keys["DENIED_AWS_SECRET_ACCESS_KEY"]
            yield {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}


class AzureService:
    """Azurite: the emulator's variables; a wrong key and SAS tokens for refused credentials."""

    scheme = "az"
    missing_bucket = "the container does not exist"

    def __init__(self, server: Azurite) -> None:
        self.server = server

    def environment(self) -> dict[str, str]:
        return {
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": self.server.endpoint,
            "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": ACCOUNT_KEY,
            "AZURE_ALLOW_HTTP": "true",
        }

    def create_bucket(self, name: str) -> None:
        self.server.create_container(name)

    def named_remote(self) -> tuple[dict[str, str], list[str]]:
        # As a private endpoint: the account's URL, the account's name and key.
        settings = {"endpoint": self.server.account_url, "allow-http": "true"}
        return settings, ["AZURE_STORAGE_USE_EMULATOR", "AZURITE_BLOB_STORAGE_URL", "AZURE_ALLOW_HTTP"]

    def unreachable(self, endpoint: str) -> dict[str, str]:
        return {"AZURITE_BLOB_STORAGE_URL": endpoint}

    @contextmanager
    def refused(self, case: str) -> Iterator[dict[str, str | None]]:
        """``bad key``: another account key; ``bad secret``: an expired SAS token;
        ``forbidden``: a SAS token allowing only deletes."""
        if case == "bad key":
            yield {"AZURE_STORAGE_ACCOUNT_KEY": "bm90IHRoZSBrZXk="}
            return
        now = datetime.now(timezone.utc)
        token = Azurite.sas_token("d", now + timedelta(hours=1)) if case == "forbidden" else Azurite.sas_token("rwdlc", now - timedelta(hours=1))
        yield {"AZURE_STORAGE_ACCOUNT_KEY": None, "AZURE_STORAGE_SAS_KEY": token}  # a key would win over the token


@pytest.fixture(params=SERVICES)
def bucket_server(request: pytest.FixtureRequest) -> BucketService:
    """Each service in turn; its server starts at its first test and serves the session."""
    if request.param == "s3":
        return S3Service(request.getfixturevalue("s3_server"))
    return AzureService(request.getfixturevalue("azurite"))


@pytest.fixture
def bucket_url(bucket_server: BucketService, monkeypatch: pytest.MonkeyPatch) -> str:
    """``SCHEME://<a new bucket>/team``, with that service's variables set (subprocesses
    inherit them) over conftest's, which keep every other cloud away."""
    for name, value in bucket_server.environment().items():
        monkeypatch.setenv(name, value)
    bucket = f"mreg-{uuid.uuid4().hex[:12]}"
    bucket_server.create_bucket(bucket)
    return f"{bucket_server.scheme}://{bucket}/team"


def raw_store(url: str) -> Any:
    """The bucket behind ``url``, through obstore directly (to look at or spoil its keys),
    configured by the variables ``bucket_url`` set."""
    from obstore.store import AzureStore, S3Store

    parsed = parse_bucket_url(url)
    kind = {"s3": S3Store, "az": AzureStore}[parsed.scheme]
    return kind(parsed.bucket, prefix=parsed.prefix, client_options={"allow_http": True})
