"""`mreg serve` over HTTP: pages and JSON twins, status codes, store files, path tricks, clone.

Every test talks to a real `mreg serve` subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import (
    assert_clean_failure,
    flip_byte,
    modules_loaded_by,
    object_file,
    run_cli,
    store_snapshot,
)
from test_web_registry import build_registry, served

from mreg.registry import Registry


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def server(example: Registry) -> Iterator[str]:
    before = store_snapshot(example)
    with served(example.root.parent) as url:
        yield url
    assert store_snapshot(example) == before, "the web server wrote to the store"


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> dict:
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def request(url: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


# ------------------------------------------------------------------ pages and JSON twins

MODELS = ["classifier", "mobilenet_v2", "resnet18", "team/vision/detector"]


def test_models_page_and_its_filters(server: str) -> None:
    page = request(server, "/")
    assert page.status == 200 and page.headers["Cache-Control"] == "no-cache"
    for name in MODELS:
        assert f'href="/m/{name}"' in page.text
    data = request(server, "/api/models").json()
    assert data["total"] == 4 and [m["name"] for m in data["models"]] == MODELS
    assert data["pagination"] == {"page": 1, "pages": 1, "size": 100, "rows": 4}
    assert data["families"] == ["detector", "mobilenetv2", "resnet"]
    resnet = next(m for m in data["models"] if m["name"] == "resnet18")
    assert resnet["latest"] == "2.0.0" and resnet["versions"] == 2 and resnet["tags"] == {"production": "1.0.0"}
    assert [m["name"] for m in request(server, "/api/models?q=NET").json()["models"]] == ["mobilenet_v2", "resnet18"]
    assert [m["name"] for m in request(server, "/api/models?family=resnet").json()["models"]] == ["classifier", "resnet18"]
    assert "No model matches" in request(server, "/?q=nothing-like-this").text


def test_model_page_sorts_versions_by_metric_and_shows_tag_history(server: str) -> None:
    data = request(server, "/api/m/classifier").json()
    assert [v["version"] for v in data["versions"]] == ["1.2.0", "1.1.0", "1.0.0"]
    assert data["metrics"] == ["auc", "loss", "test_auc"] and data["tags"] == {"production": "1.1.0", "staging": "1.2.0"}
    assert data["series"]["auc"] == [["1.0.0", 0.81], ["1.1.0", 0.88], ["1.2.0", 0.86]]
    assert data["versions"][0]["tags"] == ["latest", "staging"]
    by_auc = request(server, "/api/m/classifier?sort=metric:auc&order=desc").json()
    assert [v["version"] for v in by_auc["versions"]] == ["1.1.0", "1.2.0", "1.0.0"]
    by_loss = request(server, "/api/m/classifier?sort=metric:loss&order=asc").json()
    assert [v["version"] for v in by_loss["versions"]] == ["1.2.0", "1.1.0", "1.0.0"]
    history = [(e["ref"], e["new"]) for e in data["tag_history"]]
    assert ("tags/production", "1.1.0") in history and ("tags/staging", "1.2.0") in history
    html = request(server, "/m/classifier").text
    assert html.count('<svg class="chart"') == 2 and "Tag history" in html
    assert 'href="/m/classifier@1.1.0"' in html


def test_version_page_shows_lineage_files_and_snippets(server: str, example: Registry) -> None:
    data = request(server, "/api/m/resnet18@2.0.0").json()
    assert data["digest"] == example.resolve("resnet18@2.0.0")
    assert data["architecture"] == "resnet18" and data["input_shape"] == [1, 3, 224, 224]
    assert data["framework"].startswith("pytorch") and data["weights"]["tensors"] == 4
    assert [p["label"] for p in data["parents"]] == ["resnet18@1.0.0"]
    assert sorted(c["label"] for c in data["children"]) == ["classifier@1.0.0", "classifier@1.1.0", "classifier@1.2.0"]
    assert data["lineage"]["datasets"][0]["name"] == "synthetic-squares"
    assert data["files"][0]["path"] == "model.safetensors" and data["files"][0]["digest"].startswith("sha256:")
    assert f"mreg pull {server} resnet18" in data["snippets"]["shell"]
    assert 'load_state_dict(registry, "resnet18@2.0.0")' in data["snippets"]["python"]  # added as a plain state dict
    html = request(server, "/m/resnet18@2.0.0").text
    assert '<svg class="lineage"' in html and html.count('class="node ') == 5
    # a tag, latest and a digest prefix name the same page
    assert request(server, "/api/m/resnet18@production").json()["version"] == "1.0.0"
    assert request(server, f"/api/m/{data['digest'][:20]}").json()["ref"] == "resnet18@2.0.0"


def test_version_page_shows_notes_and_deprecation(server: str) -> None:
    noted = request(server, "/api/m/classifier@1.1.0").json()["notes"]
    assert noted["message"] == "Reviewed by the clinical team." and noted["metrics"] == {"test_auc": 0.87}
    html = request(server, "/m/classifier@1.1.0").text
    assert 'id="notes"' in html and "Reviewed by the clinical team." in html and "test_auc" in html
    assert 'id="deprecated"' not in html
    deprecated = request(server, "/m/classifier@1.0.0").text
    assert 'id="deprecated"' in deprecated and "superseded by 1.1.0" in deprecated
    rows = {row["version"]: row for row in request(server, "/api/m/classifier").json()["versions"]}
    assert rows["1.1.0"]["metrics"]["test_auc"] == 0.87 and rows["1.1.0"]["noted"] == ["test_auc"]
    assert rows["1.0.0"]["deprecated"] == "superseded by 1.1.0" and rows["1.2.0"]["deprecated"] is None
    assert 'class="pill deprecated"' in request(server, "/m/classifier").text


def test_nested_model_names_are_paths_of_their_own(server: str) -> None:
    assert request(server, "/api/m/team/vision/detector").json()["latest"] == "0.1.0"
    version = request(server, "/m/team/vision/detector@0.1.0")
    assert version.status == 200 and 'href="/m/team/vision/detector"' in version.text
    assert request(server, "/models/team/vision/detector/_refs").status == 200
    assert request(server, "/m/team/vision").status == 404


def test_compare_shows_metrics_metadata_and_tensors(server: str) -> None:
    data = request(server, "/api/compare?a=classifier@1.1.0&b=classifier@1.2.0").json()
    assert data["old"]["ref"] == "classifier@1.1.0" and data["new"]["ref"] == "classifier@1.2.0"
    auc = next(m for m in data["all_metrics"] if m["name"] == "auc")
    assert auc["old"] == 0.88 and auc["new"] == 0.86 and auc["delta"] == pytest.approx(-0.02)
    tensors = data["files"][0]["tensors"]
    assert [c["name"] for c in tensors["changed"]] == ["backbone.bn.weight"] and tensors["unchanged"] == 3
    assert tensors["changed"][0]["max_abs_diff"] == pytest.approx(0.5)
    assert "lineage.message" in [f["field"] for f in data["fields"]]
    html = request(server, "/compare?a=resnet18@1.0.0&b=resnet18@2.0.0").text
    assert "fc.weight" in html and "float32[1000, 128]" in html


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "path, status",
    [
        ("/m/no-such-model", 404),
        ("/m/resnet18@9.9.9", 404),
        ("/m/resnet18@nosuchtag", 404),
        ("/m/sha256:0123456789abcdef", 404),
        ("/m/bad@@ref", 400),
        ("/m/-bad-name", 400),
        ("/m/resnet18@1.0", 400),
        ("/m/sha256:xyz", 400),
        ("/m/classifier?sort=nonsense", 400),
        ("/m/classifier?page=2", 400),
        ("/?page=0", 400),
        ("/?page=x", 400),
        ("/compare?a=resnet18@1.0.0", 400),
        ("/compare?a=resnet18@1.0.0&b=nothing@1.0.0", 404),
        ("/no/such/page", 404),
    ],
)
def test_errors_are_pages_with_the_right_status(server: str, path: str, status: int) -> None:
    page = request(server, path)
    assert page.status == status and page.headers["Content-Type"].startswith("text/html")
    assert "Traceback" not in page.text and f"<p class=\"status\">{status}</p>" in page.text
    twin = request(server, "/api" + path if path.startswith(("/m/", "/compare")) else path)
    assert twin.status == status


def test_the_server_is_read_only(server: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert request(server, "/models/resnet18/_refs", method=method).status == 405
        assert request(server, "/", method=method).status == 405


TRICKS = [
    "/objects/../config",
    "/objects/%2e%2e/config",
    "/objects/..%2fconfig",
    "/objects/ab/..%2f..%2fconfig",
    "/models/..%2F..%2Fconfig/_refs",
    "/models/../../../../etc/passwd",
    "/models/%2Fetc%2Fpasswd/_refs",
    "/models//etc/passwd/_refs",
    "/models/resnet18/_lock",
    "/models/resnet18/../../config",
    "/static/..%2f..%2f..%2fregistry.py",
    "/static/%2e%2e/%2e%2e/app.py",
    "/m/..%2f..%2fconfig",
    "/m/%2fetc%2fpasswd",
    "/api/m/..%5c..%5cconfig",
    "//etc/passwd",
    "/config",
    "/tmp/",
    "/info/../config",
    "/objects/" + "a" * 5000,
    "/m/" + "x" * 5000,
    "/m/%00",
    "/m/%ff%fe",
    "/compare?a=%00&b=..",
]


@pytest.mark.parametrize("path", TRICKS)
def test_path_tricks_never_reach_outside_the_store(server: str, path: str) -> None:
    reply = request(server, path)
    assert reply.status in (400, 404), (path, reply.status)
    assert "formatversion" not in reply.text and "root:" not in reply.text and "Traceback" not in reply.text


def test_every_response_carries_protective_headers(server: str) -> None:
    for path in ("/", "/api/models", "/static/style.css", "/info/models", "/m/none"):
        headers = request(server, path).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["X-Content-Type-Options"] == "nosniff"


# ------------------------------------------------------------------ the store, to mreg clients


def test_objects_are_immutable_with_etags_and_ranges(server: str, example: Registry) -> None:
    manifest = example.resolve("resnet18@1.0.0")
    path = f"/objects/{manifest[7:9]}/{manifest[9:]}"
    whole = request(server, path)
    assert whole.status == 200 and whole.body == example.objects.read_bytes(manifest)
    assert whole.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert whole.headers["ETag"] == f'"{manifest[7:]}"' and whole.headers["Accept-Ranges"] == "bytes"
    part = request(server, path, headers={"Range": "bytes=2-9"})
    assert part.status == 206 and part.body == whole.body[2:10]
    assert part.headers["Content-Range"] == f"bytes 2-9/{len(whole.body)}"
    assert request(server, path, headers={"If-None-Match": whole.headers["ETag"]}).status == 304
    assert request(server, path, method="HEAD").headers["Content-Length"] == str(len(whole.body))
    weights = example.file_entry("resnet18@1.0.0").digest  # stored as tensor chunks
    assert request(server, f"/objects/{weights[7:9]}/{weights[9:]}").status == 404
    index = request(server, f"/objects/{weights[7:9]}/{weights[9:]}.chunks")
    assert index.status == 200 and index.headers["Cache-Control"].endswith("immutable")


def test_refs_logs_and_the_model_list_are_not_cached(server: str, example: Registry) -> None:
    refs = request(server, "/models/classifier/_refs")
    assert refs.status == 200 and refs.headers["Cache-Control"] == "no-cache"
    assert refs.body == (example.root / "models" / "classifier" / "_refs").read_bytes()
    assert request(server, "/models/classifier/_refs", headers={"If-None-Match": refs.headers["ETag"]}).status == 304
    assert request(server, "/models/classifier/_log").body == (example.root / "models" / "classifier" / "_log").read_bytes()
    listing = request(server, "/info/models")
    assert listing.text == "".join(f"{name}\n" for name in MODELS) and listing.headers["Cache-Control"] == "no-cache"
    assert request(server, "/models/nothing/_refs").status == 404


def test_clone_pull_and_fallback_through_mreg_serve(server: str, tmp_path: Path) -> None:
    cloned = run_cli("clone", server, str(tmp_path / "copy"))
    assert cloned.exit_code == 0, cloned
    copy = Registry.open(tmp_path / "copy")
    assert [m.name for m in copy.models()] == MODELS
    assert copy.resolve("classifier@production") == copy.resolve("classifier@1.1.0")
    assert copy.get("classifier@1.1.0").note.message == "Reviewed by the clinical team."  # notes travel too
    assert copy.fsck().ok
    pulled = run_cli("pull", "origin", "--json", registry=copy)
    assert pulled.exit_code == 0 and json.loads(pulled.stdout)["objects"] == 0, pulled
    laptop = Registry.init(tmp_path / "laptop")
    assert run_cli("config", "--add", "fallback.url", server, registry=laptop).exit_code == 0
    path = run_cli("path", "resnet18@production", registry=laptop)
    assert path.exit_code == 0, path
    assert Path(path.stdout.strip()).read_bytes() == Path(copy.path("resnet18@production")).read_bytes()


# ------------------------------------------------------------------ consistency and the command


def test_pages_stay_consistent_while_another_process_adds_and_tags(tmp_path: Path, make_file) -> None:
    registry = Registry.init(tmp_path / "busy")
    registry.add("busy@1.0.0", [make_file("w0", b"0")], metrics={"acc": 0.0})
    stop = threading.Event()

    def write() -> None:
        for i in range(1, 12):
            registry.add(f"busy@1.{i}.0", [make_file(f"w{i}", str(i))], metrics={"acc": i / 100})
            registry.tag(f"busy@1.{i}.0", "production")
        stop.set()

    with served(registry.root.parent) as url:
        writer = threading.Thread(target=write)
        writer.start()
        seen = 0
        while not stop.is_set() or seen < 12:
            data = request(url, "/api/m/busy").json()
            versions = [v["version"] for v in data["versions"]]
            assert len(versions) >= seen and data["latest"] == versions[0]
            assert data["tags"].get("production", versions[0]) in versions
            seen = len(versions)
            assert request(url, "/m/busy").status == 200
        writer.join()


def test_a_damaged_store_gives_pages_that_say_so_not_tracebacks(tmp_path: Path, make_file) -> None:
    registry = Registry.init(tmp_path / "damaged")
    digest = registry.add("broken@1.0.0", [make_file("w", b"weights")]).digest
    flip_byte(object_file(registry, digest), 3)
    with served(registry.root.parent) as url:
        assert request(url, "/api/models").json()["models"][0]["name"] == "broken"
        assert request(url, "/api/m/broken").json()["versions"][0]["missing"] is True
        version = request(url, "/m/broken@1.0.0")
        assert version.status == 500 and "is corrupt" in version.text and "Traceback" not in version.text


def test_serve_warns_when_listening_beyond_this_machine(example: Registry) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mreg", "serve", "--registry", str(example.root), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "no authentication" in process.stderr.readline()
        assert process.stdout.readline().startswith("serving ")
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_serve_failures_are_one_line(tmp_path: Path, example: Registry) -> None:
    assert_clean_failure(run_cli("serve", "--registry", str(tmp_path / "none")), 3)
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_clean_failure(run_cli("serve", "--registry", str(example.root), "--port", str(port)), 1)


def test_serve_without_the_web_extra_says_how_to_install_it(example: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `pip install mreg` had left the extra out
    result = run_cli("serve", "--registry", str(example.root))
    assert_clean_failure(result, 1)
    assert "pip install -e '.[serve]'" in result.stderr and "uvicorn" in result.stderr


def test_other_commands_never_import_the_web_stack(example: Registry, tmp_path: Path) -> None:
    for args in (["show", "classifier"], ["serve", "--help"]):
        result, loaded = modules_loaded_by(
            "--registry", str(example.root), *args, cwd=tmp_path, prefixes=["starlette", "uvicorn", "jinja2", "mreg.web"]
        )
        assert result.exit_code == 0, (args, result.stderr)
        assert loaded == [], (args, result.stderr)


# ------------------------------------------------------------------ in a real browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def tab(browser, server: str) -> Iterator[tuple]:
    """A page, and the console errors, page errors and off-site requests it causes."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda r: None if r.url.startswith(server) else problems.append(f"off-site request: {r.url}"))
    yield page, problems
    context.close()


@needs_chromium
def test_browse_from_the_model_list_to_a_model_a_version_and_a_comparison(server: str, tab: tuple, tmp_path: Path) -> None:
    page, problems = tab
    page.goto(server + "/")
    assert page.locator("#models tbody tr").count() == 4
    page.screenshot(path=tmp_path / "models.png", full_page=True)
    page.fill("input[name=q]", "net")
    page.click("button[type=submit]")
    assert page.locator("#models tbody tr").count() == 2
    page.select_option("select[name=family]", "resnet")  # submits the filter by itself
    page.wait_for_url("**family=resnet**")
    assert page.locator("#models tbody tr .model-link").all_inner_texts() == ["resnet18"]
    page.click("text=clear")

    page.click("a.model-link:text-is('classifier')")
    page.wait_for_url("**/m/classifier")
    assert page.inner_text("h1") == "classifier"
    assert page.locator("svg.chart").count() == 2 and page.locator("#versions tbody tr").count() == 3
    page.screenshot(path=tmp_path / "model.png", full_page=True)
    page.click("#versions thead a:text-is('auc')")
    page.wait_for_url("**sort=metric%3Aauc**")
    assert page.locator("#versions tbody tr .version-link").all_inner_texts() == ["1.1.0", "1.2.0", "1.0.0"]

    page.click("#versions .version-link:text-is('1.2.0')")
    page.wait_for_url("**/m/classifier@1.2.0")
    assert page.inner_text("h1").replace("\n", "") == "classifier@1.2.0"
    assert page.locator("#files tbody tr").count() == 1 and page.locator("svg.lineage .node").count() == 3  # parent and grandparent
    assert "auc" in page.inner_text(".metrics") and "staging" in page.inner_text(".page-head .tags")
    copy = page.locator("button[data-copy='#snippet-python']")
    copy.click()
    # A locator assertion polls through the protocol: the page's CSP forbids the eval
    # that a string wait_for_function needs.
    from playwright.sync_api import expect

    expect(copy).not_to_have_text("copy")
    page.screenshot(path=tmp_path / "version.png", full_page=True)
    page.click("#parents a")
    page.wait_for_url("**/m/resnet18@2.0.0")
    assert page.locator("#children li").count() == 3

    page.goto(server + "/m/classifier")
    page.select_option(".compare-form select[name=a]", "classifier@1.0.0")
    page.click(".compare-form button")
    page.wait_for_url("**/compare?a=classifier%401.0.0&b=classifier%401.2.0")
    assert "backbone.bn.weight" in page.inner_text("table.tensors")
    assert page.locator("#metrics tbody tr").count() == 2
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    assert problems == []
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("models", "model", "version", "compare"))


@needs_chromium
def test_an_unknown_model_is_a_404_page_in_the_browser(server: str, tab: tuple) -> None:
    page, problems = tab
    response = page.goto(server + "/m/no-such-model")
    assert response is not None and response.status == 404
    assert page.inner_text("h1") == "Not found" and "no-such-model" in page.inner_text(".message")
    page.click("text=Back to all models")
    assert page.locator("#models tbody tr").count() == 4
    assert [p for p in problems if "404" not in p] == []
