"""A real S3-protocol server on 127.0.0.1 for the bucket tests: moto in server mode.

One server per test session; each test gets a bucket of its own and the standard
AWS variables pointing at the server (see :mod:`bucket_servers`).
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


@dataclass
class S3Server:
    """The running server's endpoint."""

    endpoint: str

    def create_bucket(self, name: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"), timeout=10).close()

    @contextmanager
    def authenticating(self) -> Iterator[dict[str, str]]:
        """Turn on moto's IAM checks; yield the keys of a user allowed everything on S3
        and of one allowed nothing (``DENIED_*``)."""
        import boto3
        from moto import settings
        from moto.core.responses import ActionAuthenticatorMixin

        iam = boto3.client("iam", endpoint_url=self.endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        keys = {}
        for user, policy in (("allowed", "Allow"), ("denied", "Deny")):
            name = f"{user}-{uuid.uuid4().hex[:8]}"
            iam.create_user(UserName=name)
            document = {"Version": "2012-10-17", "Statement": [{"Effect": policy, "Action": "s3:*", "Resource": "*"}]}
            iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(document))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            prefix = "" if user == "allowed" else "DENIED_"
            keys[prefix + "AWS_ACCESS_KEY_ID"] = key["AccessKeyId"]
            keys[prefix + "AWS_SECRET_ACCESS_KEY"] = key["SecretAccessKey"]
        before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        try:
            yield keys
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = before


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on a free port of 127.0.0.1 for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(f"http://{host}:{port}")
    server.stop()
