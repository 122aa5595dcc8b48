"""Keep every test away from the clouds: no provider variable of the machine leaks in,
and each provider's default endpoint, metadata service and credentials files are
replaced by a closed port of 127.0.0.1 or a file that does not exist.

obstore looks for credentials on its own when none are given: an instance metadata
service (169.254.169.254, metadata.google.internal), a token service, a credentials file
in the home directory. A test that forgot a variable must fail fast and locally, never
ask the network.
"""

from __future__ import annotations

import os

import pytest

NOWHERE = "127.0.0.1:9"
"""A local address where nothing answers (the discard port)."""
PREFIXES = ("AWS_", "AZURE_", "AZURITE_", "GOOGLE_", "GCE_", "IDENTITY_", "MSI_", "STORAGE_EMULATOR_")
NO_FILE = "/nonexistent/mreg-tests-read-no-cloud-credentials"
LOCAL_ONLY = {
    # S3: the endpoint, the EC2 instance metadata service, the profile files mreg reads
    "AWS_ENDPOINT_URL": f"http://{NOWHERE}",
    "AWS_METADATA_ENDPOINT": f"http://{NOWHERE}",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": NO_FILE,
    "AWS_CONFIG_FILE": NO_FILE,
    # Azure: the account endpoint and the managed identity endpoint
    "AZURE_STORAGE_ENDPOINT": f"http://{NOWHERE}",
    "AZURE_MSI_ENDPOINT": f"http://{NOWHERE}/token",
    # GCS: the endpoint, the metadata server (by name and by address), the
    # application default credentials (else read from the home directory)
    "GOOGLE_BASE_URL": f"http://{NOWHERE}",
    "GCE_METADATA_HOST": NOWHERE,
    "GCE_METADATA_IP": NOWHERE,
    "GOOGLE_APPLICATION_CREDENTIALS": NO_FILE,
}


def keep_clouds_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop the machine's cloud variables; point endpoints and metadata services at :data:`NOWHERE`."""
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    for name, value in LOCAL_ONLY.items():
        monkeypatch.setenv(name, value)
