"""Google Cloud Storage's compare-and-swap, checked on the wire.

No GCS emulator installable here serves the requests obstore makes (its XML API: plain
PUT with ``x-goog-if-generation-match``, multipart uploads; see docs/object-storage.md),
so the bucket suite does not run on ``gs://``. This stand-in answers GET and PUT of
single objects as GCS documents them, to check what differs from S3 and Azure: a
conditional write names the object's generation, not its ETag. It is no substitute for
a real server.
"""

from __future__ import annotations

import email.utils
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from mreg.sharing.buckets.client import Bucket
from mreg.storage.config import Config


class StandIn(http.server.BaseHTTPRequestHandler):
    """GET and PUT of ``/BUCKET/KEY`` with generations, as GCS's XML API answers them."""

    objects: ClassVar[dict[str, tuple[bytes, int]]] = {}
    conditions: ClassVar[list[str | None]] = []  # x-goog-if-generation-match of every PUT

    def do_GET(self) -> None:
        found = self.objects.get(self.path)
        if found is None:
            self._answer(404)
        else:
            self._answer(200, *found)

    def do_PUT(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        condition = self.headers.get("x-goog-if-generation-match")
        self.conditions.append(condition)
        generation = self.objects.get(self.path, (b"", 0))[1]
        if condition is not None and int(condition) != generation:
            self._answer(412, b"<Error><Code>ConditionNotMet</Code></Error>")
            return
        self.objects[self.path] = (data, generation + 1)
        self._answer(200, b"", generation + 1)

    def _answer(self, status: int, body: bytes = b"", generation: int = 0) -> None:
        self.send_response(status)
        if generation:
            self.send_header("ETag", f'"etag-{generation}"')
            self.send_header("x-goog-generation", str(generation))
            self.send_header("Last-Modified", email.utils.formatdate(usegmt=True))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gcs_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    """``gs://models/team`` on the stand-in, reached as a user reaches an emulator: a remote's
    endpoint and a service-account file that turns OAuth off (no token service is asked)."""
    StandIn.objects, StandIn.conditions = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    account = tmp_path / "emulator.json"
    account.write_text(json.dumps({"disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""}))
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    (tmp_path / "config").write_text(
        f'[remote "gcs"]\n\turl = gs://models/team\n\tendpoint = http://127.0.0.1:{server.server_address[1]}\n\tallow-http = true\n'
    )
    yield Bucket.open("gs://models/team", Config.load(tmp_path / "config"), 5, check=False)
    server.shutdown()
    server.server_close()


def test_gcs_compare_and_swap_names_the_generation(gcs_bucket: Bucket) -> None:
    """A new key is written only if absent (generation 0); a swap sends the generation its
    read returned, and loses once another write has changed it."""
    assert gcs_bucket.swap("models/net/_refs", b"one", None)
    assert not gcs_bucket.swap("models/net/_refs", b"again", None)
    got = gcs_bucket.get("models/net/_refs", 100)
    assert got is not None and got[0] == b"one"
    assert gcs_bucket.swap("models/net/_refs", b"two", got[1])
    assert not gcs_bucket.swap("models/net/_refs", b"stale", got[1])
    assert gcs_bucket.get("models/net/_refs", 100)[0] == b"two"  # type: ignore[index]
    assert StandIn.conditions == ["0", "0", "1", "1"]  # generations: none, none, the first, the first
