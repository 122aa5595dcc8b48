"""`mreg serve` against a hostile web page and a hostile store: DNS rebinding, planted links.

Each case runs against a real `mreg serve` subprocess over HTTP, and in-process through
the ASGI application (tests/asgi_client.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from asgi_client import call
from conftest import assert_clean_failure, object_file, run_cli
from test_web import request
from test_web_registry import build_registry, served

from mreg import Registry
from mreg.web import create_app
from mreg.web.hosts import HostPolicy

SECRET = "TOP-SECRET-LINE"
ROUTES = [
    "/", "/api/models", "/m/classifier", "/api/m/classifier@1.1.0", "/compare?a=classifier@1.0.0&b=classifier@1.1.0",
    "/models/classifier/_refs", "/models/classifier/_log", "/info/models", "/static/style.css", "/no/such/page",
]  # fmt: skip


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("security"))


@pytest.fixture(scope="module")
def server(example: Registry) -> str:
    with served(example.root.parent) as url:
        yield url  # type: ignore[misc]


def port_of(url: str) -> int:
    return int(urlsplit(url).port or 80)


# ------------------------------------------------------------------ DNS rebinding: the Host header


@pytest.mark.parametrize("path", ROUTES)
def test_a_request_naming_another_host_is_refused_on_every_route(server: str, example: Registry, path: str) -> None:
    port = port_of(server)
    objects = f"/objects/{example.resolve('classifier@1.0.0')[7:9]}/{example.resolve('classifier@1.0.0')[9:]}"
    for target in (path, objects):
        for method in ("GET", "HEAD"):
            for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}", "127.0.0.1", f"localhost.:{port}"):
                reply = request(server, target, method=method, headers={"Host": host})
                assert reply.status in (421, 400), (target, host, reply.status)
                assert reply.headers["Content-Security-Policy"].startswith("default-src 'self'")
                if method == "GET":
                    assert reply.text.count("\n") == 1 and "mreg refs" not in reply.text and "classifier" not in reply.text
        assert request(server, target, headers={"Host": f"localhost:{port}"}).status in (200, 404)


def test_loopback_names_with_the_port_are_answered(server: str) -> None:
    port = port_of(server)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert request(server, "/api/models", headers={"Host": host}).json()["total"] == 4, host


def test_a_request_without_a_host_header_is_refused(server: str) -> None:
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as connection:
        connection.sendall(b"GET /models/classifier/_refs HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave Host out
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"mreg refs" not in answer


def test_a_script_of_another_origin_is_refused(server: str) -> None:
    port = port_of(server)
    for origin in ("http://attacker.example", f"http://attacker.example:{port}", "null", f"http://127.0.0.1:{port + 1}"):
        reply = request(server, "/api/models", headers={"Origin": origin})
        assert reply.status == 403 and "classifier" not in reply.text, origin
    assert request(server, "/api/models", headers={"Origin": f"http://localhost:{port}"}).status == 200
    assert request(server, "/static/style.css").headers["Cross-Origin-Resource-Policy"] == "same-origin"


def test_allow_host_adds_names_for_clients_and_proxies(example: Registry, tmp_path: Path) -> None:
    with served(example.root.parent, "--host", "0.0.0.0", "--allow-host", "models.internal", "--allow-host", "10.1.2.3") as url:
        port = port_of(url)
        for host in ("models.internal", f"models.internal:{port}", "MODELS.internal:443", f"10.1.2.3:{port}", f"127.0.0.1:{port}"):
            assert request(url, "/models/classifier/_refs", headers={"Host": host}).status == 200, host
        for host in (f"other.internal:{port}", f"0.0.0.0:{port}", f"10.1.2.4:{port}", "models.internal.attacker.example"):
            assert request(url, "/models/classifier/_refs", headers={"Host": host}).status == 421, host
        assert request(url, "/api/models", headers={"Origin": "https://models.internal"}).status == 200
        cloned = run_cli("clone", url, str(tmp_path / "copy"))  # mreg's own client names 127.0.0.1:PORT
        assert cloned.exit_code == 0, cloned


def test_allow_host_refuses_what_is_not_a_host_name(example: Registry) -> None:
    for bad in ("http://models.internal", "models.internal:8080", "a b", "", "*"):
        assert_clean_failure(run_cli("serve", "--registry", str(example.root), "--allow-host", bad), 2)


def test_the_in_process_application_checks_the_host_of_every_route(example: Registry) -> None:
    app = create_app(example.root, warm_up=False, hosts=HostPolicy("127.0.0.1", 8080, ["models.internal"]))
    for path in ROUTES:
        assert call(app, path, headers={"Host": "attacker.example:8080"}).status == 421, path
        assert call(app, path, headers={"Host": None}).status == 400, path  # type: ignore[dict-item]
        assert call(app, path, headers={"Host": "models.internal"}).status in (200, 404), path
        assert call(app, path).status in (200, 404), path


# ------------------------------------------------------------------ planted links, FIFOs and devices


def plant(registry: Registry, relative: str, outside: Path, *, copy_of: Path | None = None, fifo: bool = False) -> None:
    """Replace ``relative`` in the store by a link to ``outside`` (a copy of the original when
    ``copy_of``, so a server following the link would find valid content), or by a FIFO."""
    target = registry.root / relative
    if copy_of is not None:
        shutil.copytree(copy_of, outside) if copy_of.is_dir() else shutil.copyfile(copy_of, outside)
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    if fifo:
        os.mkfifo(target)
    else:
        target.symlink_to(outside)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Registry, dict[str, str]]:
    """A store with links to files outside it (holding a secret, or valid copies of what they
    replace), FIFOs and a link to /dev/zero; and the URL paths of each."""
    registry = build_registry(tmp_path / "store")
    secret = tmp_path / "secret.txt"
    line = {"time": "2026-01-01T00:00:00Z", "author": SECRET, "ref": "latest", "old": None, "new": "1.0.0", "message": SECRET}
    secret.write_text(json.dumps(line) + "\n" + f"root:x:0:0:{SECRET}\n")
    manifest = registry.resolve("classifier@1.1.0")
    blob = object_file(registry, manifest).relative_to(registry.root)
    weights = registry.file_entry("resnet18@1.0.0").digest
    chunks = Path(str(object_file(registry, weights)) + ".chunks").relative_to(registry.root)
    detector = registry.resolve("team/vision/detector@0.1.0")
    plant(registry, "models/classifier/_log", secret)
    plant(registry, "models/classifier/_notes", tmp_path / "notes", copy_of=registry.root / "models/classifier/_notes")
    plant(registry, str(blob), tmp_path / "manifest", copy_of=registry.root / blob)  # the same bytes: its digest still holds
    plant(registry, str(chunks), tmp_path / "chunks", copy_of=registry.root / chunks)
    plant(registry, "models/mobilenet_v2/_refs", tmp_path / "refs", copy_of=registry.root / "models/mobilenet_v2/_refs")
    plant(registry, "models/resnet18/_log", Path("/dev/zero"))
    plant(registry, "models/team/vision/detector/_log", Path("unused"), fifo=True)
    (registry.root / "objects/ee").mkdir(exist_ok=True)
    plant(registry, "objects/ee/" + "e" * 62, Path("unused"), fifo=True)  # an object that would never open
    fanout = object_file(registry, detector).parent.relative_to(registry.root)
    plant(registry, str(fanout), tmp_path / "fanout", copy_of=registry.root / fanout)  # a linked directory
    return registry, {
        "log": "/models/classifier/_log",
        "notes": "/models/classifier/_notes",
        "manifest": f"/objects/{manifest[7:9]}/{manifest[9:]}",
        "chunks": f"/objects/{weights[7:9]}/{weights[9:]}.chunks",
        "refs": "/models/mobilenet_v2/_refs",
        "zero": "/models/resnet18/_log",
        "fifo": "/models/team/vision/detector/_log",
        "fanout": f"/objects/{detector[7:9]}/{detector[9:]}",
        "fifo object": "/objects/ee/" + "e" * 62,
    }


PAGES = [
    "/m/classifier", "/api/m/classifier", "/m/classifier@1.1.0", "/api/m/classifier@1.1.0", "/m/mobilenet_v2",
    "/m/resnet18", "/m/resnet18@1.0.0", "/m/team/vision/detector@0.1.0", "/m/classifier@{2030-01-01}", "/",
    "/compare?a=resnet18@1.0.0&b=resnet18@2.0.0", "/m/sha256:eeeeeeee", "/m/sha256:" + "e" * 64,
]  # fmt: skip


def test_links_fifos_and_devices_in_the_store_are_never_served(planted: tuple[Registry, dict[str, str]]) -> None:
    registry, paths = planted
    with served(registry.root.parent) as url:
        for page in PAGES:  # the pages read through the registry code: nothing followed, nothing hangs
            reply = request(url, page)
            assert SECRET not in reply.text and "root:" not in reply.text and "Traceback" not in reply.text, page
        for what, path in paths.items():
            for method in ("GET", "HEAD"):
                reply = request(url, path, method=method)
                assert reply.status == 404, (what, method, reply.status)
                assert SECRET not in reply.text and "mreg refs" not in reply.text
        assert "symbolic link" in request(url, "/m/classifier").text
        assert "symbolic link" in request(url, "/m/classifier@1.1.0").text  # its manifest object is a link
        assert "FIFO" in request(url, "/m/team/vision/detector").text
        detector = registry.resolve("team/vision/detector@0.1.0")  # its objects/ab directory is a link
        assert "symbolic link" in request(url, f"/m/{detector[:20]}").text


def test_the_in_process_application_follows_no_link_either(planted: tuple[Registry, dict[str, str]]) -> None:
    registry, paths = planted
    app = create_app(registry.root, warm_up=False)
    for page in PAGES:
        reply = call(app, page)
        assert SECRET not in reply.text and "root:" not in reply.text, page
    for what, path in paths.items():
        assert call(app, path).status == 404, what
    assert call(app, "/api/m/classifier").status == 500  # its log is a link: the page says so, in one line
    assert "symbolic link" in call(app, "/api/m/classifier").json()["error"]
