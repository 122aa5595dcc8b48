"""A real Azure Blob Storage server on 127.0.0.1 for the bucket tests: Microsoft's emulator Azurite.

One ``azurite-blob`` process per test session, on a free port, keeping its data in a
temporary directory, with telemetry off (Azurite reports to Microsoft by default).
Each test gets a container of its own. Tests skip, saying why, when Node.js or
Azurite is missing: ``.ci/run`` installs it with npm into :data:`TOOLS`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

VERSION = "3.37"
"""The Azurite release the tests are run against (``npm install azurite@3.37``)."""
TOOLS = Path(os.environ.get("MREG_TEST_TOOLS") or Path.home() / ".cache" / "mreg-test-tools")
"""Where ``.ci/run`` installs test servers from npm (``npm install --prefix TOOLS``)."""
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's account and key: public, the same in every copy of the emulator."""
API_VERSION = "2021-08-06"
STARTUP_SECONDS = 60


def azurite_program() -> Path | None:
    """``azurite-blob`` from the PATH or :data:`TOOLS`; None when missing."""
    for candidate in (shutil.which("azurite-blob"), TOOLS / "node_modules" / ".bin" / "azurite-blob"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass
class Azurite:
    """The running emulator's blob endpoint (``http://127.0.0.1:PORT``)."""

    endpoint: str

    @property
    def account_url(self) -> str:
        """The account's URL, as a private endpoint is given to mreg (``remote.NAME.endpoint``)."""
        return f"{self.endpoint}/{ACCOUNT}"

    def create_container(self, name: str) -> None:
        """Create a container with a request signed by the account key (mreg never creates one)."""
        headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": API_VERSION}
        # SharedKey: eleven empty standard headers (Content-Length is empty when 0), then
        # the x-ms-* headers and the resource, whose path starts with the account here.
        canonical = "".join(f"{key}:{value}\n" for key, value in sorted(headers.items()))
        signed = "PUT\n" + "\n" * 11 + canonical + f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
        headers["Authorization"] = f"SharedKey {ACCOUNT}:{_sign(signed)}"
        host, port = urllib.parse.urlsplit(self.endpoint).netloc.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("PUT", f"/{ACCOUNT}/{name}?restype=container", body=b"", headers=headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 201:
            raise RuntimeError(f"Azurite refused to create container {name}: {response.status} {body[:300]!r}")

    @staticmethod
    def sas_token(permissions: str, expiry: datetime) -> str:
        """An account SAS for the blob service, allowing ``permissions`` (``r``, ``w``, ``d``, ...) until ``expiry``."""
        expires = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = [ACCOUNT, permissions, "b", "sco", "", expires, "", "", API_VERSION, ""]
        query = {"sv": API_VERSION, "ss": "b", "srt": "sco", "sp": permissions, "se": expires}
        return urllib.parse.urlencode({**query, "sig": _sign("\n".join(fields) + "\n")})


def _sign(text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(ACCOUNT_KEY), text.encode(), hashlib.sha256).digest()).decode()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Start ``azurite-blob`` on a free port of 127.0.0.1 for the whole session (skip when missing)."""
    program = azurite_program()
    if program is None:
        pytest.skip(f"Azurite is not installed (npm install --prefix {TOOLS} azurite@{VERSION}; .ci/run does it)")
    if shutil.which("node") is None:
        pytest.skip("Azurite needs Node.js, and `node` is not on the PATH")
    root = tmp_path_factory.mktemp("azurite")
    log = root / "azurite.log"
    command = [str(program), "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", str(root / "data"),
               "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield Azurite(_wait_for_endpoint(process, log))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_endpoint(process: subprocess.Popen[bytes], log: Path) -> str:
    """The URL Azurite prints once it listens (it picks the port: no race for a free one)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        listening = re.search(r"listens on (http://127\.0\.0\.1:\d+)", text)
        if listening:
            return listening[1]
        if process.poll() is not None:
            pytest.fail(f"Azurite exited with {process.returncode} before listening: {text[-500:]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"Azurite did not listen within {STARTUP_SECONDS} s: {log.read_text(errors='replace')[-500:]}")
