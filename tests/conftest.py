"""Shared fixtures: every test gets its own registry in a temporary directory.

Helpers here run mreg the two ways users do: in-process through Click's CliRunner
(fast, for most CLI tests) and as a real ``mreg`` subprocess (for exit codes, crash
and concurrency tests).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from no_cloud import keep_clouds_local

from mreg import Blob
from mreg.cli.app import cli
from mreg.registry import Registry


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in its own directory with a fixed author, no inherited store and no
    way to a cloud (see no_cloud)."""
    monkeypatch.chdir(tmp_path)
    keep_clouds_local(monkeypatch)
    monkeypatch.setenv("MREG_AUTHOR", "tester")
    for variable in ("MREG_DIR", "MREG_FALLBACK", "MREG_DEBUG", "MREG_LOCK_TIMEOUT"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """An empty registry in the test's directory."""
    return Registry.init(tmp_path)


@pytest.fixture
def make_file(tmp_path: Path):
    """Write a file under the test directory and return its path."""

    def make(name: str, content: bytes | str = b"weights") -> Path:
        path = tmp_path / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


@dataclass
class Invocation:
    """What a CLI run printed and returned."""

    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, registry: Registry | None = None) -> Invocation:
    """Run mreg in-process with CliRunner (stdout and stderr kept apart)."""
    prefix = ["--registry", str(registry.root)] if registry is not None else []
    result: Result = CliRunner().invoke(cli, [*prefix, *args], catch_exceptions=False)
    return Invocation(result.exit_code, result.stdout, result.stderr)


def run_mreg(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Invocation:
    """Run the real ``mreg`` entry point in a subprocess (``python -m mreg``)."""
    completed = subprocess.run(
        [sys.executable, "-m", "mreg", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Invocation(completed.returncode, completed.stdout, completed.stderr)


LOADED_MODULES = """
import runpy, sys
prefixes = sys.argv[1].split(",")
sys.argv = ["mreg", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("mreg", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
loaded = sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in prefixes))
print("LOADED:" + ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


def modules_loaded_by(*args: str, cwd: Path, prefixes: Sequence[str]) -> tuple[Invocation, list[str]]:
    """Run ``mreg ARGS`` in a fresh interpreter: what it did, and which modules named by
    ``prefixes`` (each a package, with its submodules) it imported."""
    completed = subprocess.run(
        [sys.executable, "-c", LOADED_MODULES, ",".join(prefixes), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    lines = completed.stderr.strip().splitlines()
    report = lines[-1] if lines and lines[-1].startswith("LOADED:") else "LOADED:(no report)"
    loaded = [m for m in report.removeprefix("LOADED:").split(",") if m]
    return Invocation(completed.returncode, completed.stdout, completed.stderr), loaded


def store_snapshot(registry: Registry) -> dict[str, str]:
    """Every file of the store (locks aside) with the hash of its content."""
    snapshot = {}
    for path in sorted(registry.root.rglob("*")):
        if path.is_file() and path.name not in ("_lock", "lock"):
            snapshot[str(path.relative_to(registry.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snapshot


def assert_clean_failure(result: Invocation, code: int | None = None) -> None:
    """A failure as the contract describes it: one ``mreg: error:`` line, no traceback."""
    assert result.exit_code != 0, result
    if code is not None:
        assert result.exit_code == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mreg: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def run_cli_raw(*args: str, registry: Registry | None = None) -> tuple[int, bytes, str]:
    """Like :func:`run_cli`, but return stdout as raw bytes (for blobs on stdout)."""
    prefix = ["--registry", str(registry.root)] if registry is not None else []
    result: Result = CliRunner().invoke(cli, [*prefix, *args], catch_exceptions=False)
    return result.exit_code, result.stdout_bytes, result.stderr


def object_file(registry: Registry, digest: str) -> Path:
    """Where the object of ``digest`` lives: ``objects/<2 hex>/<62 hex>``."""
    hexdigest = digest.removeprefix("sha256:")
    return registry.root / "objects" / hexdigest[:2] / hexdigest[2:]


def flip_byte(path: Path, offset: int = 0) -> None:
    """Corrupt one byte of a (read-only) stored file in place."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def colliding_pair(make: Callable[[int], bytes], digits: int = 8) -> tuple[bytes, bytes]:
    """Two different byte strings ``make(i)`` whose SHA-256 share the first ``digits`` hex digits.

    A birthday search: about 80,000 small hashes for 8 digits, a fraction of a second.
    """
    seen: dict[str, int] = {}
    i = 0
    while True:
        prefix = hashlib.sha256(make(i)).hexdigest()[:digits]
        if prefix in seen:
            return make(seen[prefix]), make(i)
        seen[prefix] = i
        i += 1


# ------------------------------------------------ HTTP stores (fallback and transfer tests)


class StoreServer:
    """A store's ``.mreg`` served read-only over HTTP on 127.0.0.1, as a static server would."""

    def __init__(self, root: Path) -> None:
        import functools
        import http.server

        self.requests: list[str] = []
        self.fault: Callable[[Any], bool] | None = None  # answers instead of the server when it returns True
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if server.fault is None or not server.fault(self):
                    super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (a timeout test) is expected, not news

        self.httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], StoreServer]]:
    """Serve a directory (a store's ``.mreg``) over HTTP; every server stops after the test."""
    import urllib.request

    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    urllib.request.install_opener(None)  # urlopen caches its proxies: drop any an earlier test set
    servers: list[StoreServer] = []

    def start(root: Path) -> StoreServer:
        servers.append(StoreServer(root))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/x"


def weights(changed: int | None = None) -> dict:
    """A state dict of four 32 KiB tensors (stored as chunks); ``changed`` alters one of them."""
    import torch

    generator = torch.Generator().manual_seed(0)
    tensors = {f"layer{i}": torch.randn(64, 128, generator=generator) for i in range(4)}
    if changed is not None:
        tensors[f"layer{changed}"] = tensors[f"layer{changed}"] + 1
    return tensors


def http_fault(kind: str, target: str, release: threading.Event) -> Callable[[Any], bool]:
    """A server fault on the URL path ``target``: 500, 404, truncated, corrupted or slow."""

    def fault(handler: Any) -> bool:  # a SimpleHTTPRequestHandler
        if handler.path != target:
            return False
        if kind in ("500", "404"):
            handler.send_error(int(kind))
            return True
        if kind == "slow":
            release.wait(10)
            return False
        data = bytearray(Path(handler.translate_path(handler.path)).read_bytes())
        length = len(data)
        if kind == "corrupt":
            data[len(data) // 2] ^= 0xFF
        else:  # truncated: promise more than is sent, then hang up
            length, data = length + 1000, data[: len(data) // 2]
        handler.send_response(200)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        handler.wfile.write(bytes(data))
        handler.close_connection = True
        return True

    return fault


def one_file(data: bytes) -> list[Blob]:
    """The files of a version made of one small file, ``w.bin``, held in memory."""
    return [Blob("w.bin", lambda: [data])]
