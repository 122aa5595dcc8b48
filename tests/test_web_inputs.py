"""`mreg serve` with strange query strings and extreme numbers: a 4xx or a page, never a 500,
and never NaN or infinity in a page, a chart or the JSON.

Hypothesis fuzzes the query string of every route through the in-process application;
the regressions found run against a real server too.
"""

from __future__ import annotations

import math
import re
import sys
from urllib.parse import quote

import pytest
from asgi_client import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_web import request
from test_web_registry import build_registry, served

from mreg import Registry
from mreg.web import create_app
from mreg.web.charts import HEIGHT, WIDTH, metric_chart
from mreg.web.pages import Point

BIG = sys.float_info.max  # 1.797e308
EXTREMES = [BIG, -BIG, 5e-324, 0.0, -0.0, 1e-300, 1.0]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The example registry, and models whose metrics sit at the ends of the float range."""
    root = tmp_path_factory.mktemp("inputs")
    registry = build_registry(root)
    weights = root / "w.bin"
    for index, value in enumerate(EXTREMES):
        weights.write_bytes(f"extreme {index}".encode())
        registry.add(f"extreme@{index + 1}.0.0", [weights], metrics={"m": value, "n": -value, "big": BIG})
        registry.add(f"flat@{index + 1}.0.0", [weights], metrics={"m": BIG})
    return registry


@pytest.fixture(scope="module")
def app(store: Registry):  # type: ignore[no-untyped-def]
    return create_app(store.root, warm_up=False)


# ------------------------------------------------------------------ query parameters

BAD_PAGES = ["٣", "١", "²", "１", "𝟙", "0", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x1", "99999999999999999999", "", "1_0"]


@pytest.mark.parametrize("page", BAD_PAGES)
def test_page_numbers_are_ascii_digits_only(app, page: str) -> None:  # type: ignore[no-untyped-def]
    for route in ("/", "/api/models", "/m/classifier", "/api/m/classifier"):
        reply = call(app, f"{route}?page={quote(page)}")
        assert reply.status == 400, (route, page, reply.status)
        assert "digits 0-9" in reply.text


def test_parameters_given_twice_too_long_or_with_control_characters_are_refused(app) -> None:  # type: ignore[no-untyped-def]
    for target in ("/?page=1&page=1", "/?q=a&q=b", "/m/classifier?sort=created&sort=version", "/compare?a=x&a=y&b=z"):
        assert call(app, target).status == 400, target
    assert call(app, "/?q=" + "a" * 501).status == 400
    assert call(app, "/?q=%00").status == 400 and call(app, "/?family=%1b[31m").status == 400
    assert call(app, "/?q=" + "a" * 500).status == 200 and call(app, "/?utm_source=x&utm_source=y").status == 200


def test_the_regressions_over_http(store: Registry) -> None:
    with served(store.root.parent) as url:
        for page in ("%D9%A3", "%C2%B2", "1&page=2"):
            assert request(url, f"/?page={page}").status == 400
        compared = request(url, "/api/compare?a=extreme@1.0.0&b=extreme@2.0.0")
        rows = {row["name"]: row for row in compared.json()["all_metrics"]}
        assert compared.status == 200 and rows["m"]["delta"] is None and rows["n"]["delta"] is None
        assert request(url, "/compare?a=extreme@1.0.0&b=extreme@2.0.0").status == 200
        for page in ("/m/extreme", "/m/flat"):
            assert_finite_svg(request(url, page).text)


ROUTES = [
    "/", "/api/models", "/m/classifier", "/api/m/classifier", "/m/extreme", "/api/m/flat", "/m/classifier@1.1.0",
    "/api/m/resnet18@2.0.0", "/compare", "/api/compare", "/models/classifier/_refs", "/info/models", "/static/style.css",
    "/objects/00/" + "0" * 62, "/no/such/page",
]  # fmt: skip
KEYS = ["q", "family", "page", "sort", "order", "a", "b"]
REFS = ["classifier@1.0.0", "extreme@1.0.0", "extreme@2.0.0", "flat@latest", "resnet18@production", "sha256:00", "x@{2030-01-01}"]
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1", "2", "٣", "²", "metric:auc", "metric:m", "metric:", "version", "created", "asc", "desc", *REFS]),
    st.integers(-(10**30), 10**30).map(str),
)
queries = st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), values), max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), query=queries)
def test_no_query_string_makes_a_500(app, route: str, query: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    target = route + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    reply = call(app, target)
    assert reply.status < 500, (target, reply.status, reply.text[-300:])
    if reply.headers.get("content-type", "").startswith("application/json"):
        reply.json()  # valid JSON: no NaN or Infinity in it
    else:
        assert_finite_svg(reply.text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), raw=st.binary(max_size=60))
def test_no_raw_query_bytes_make_a_500(app, route: str, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    reply = call(app, route.encode() + b"?" + raw.replace(b"#", b""))
    assert reply.status < 500, (route, raw, reply.status, reply.text[-300:])


# ------------------------------------------------------------------ numbers


def test_changes_that_overflow_are_a_dash_and_null(app) -> None:  # type: ignore[no-untyped-def]
    data = call(app, "/api/compare?a=extreme@1.0.0&b=extreme@2.0.0").json()
    rows = {row["name"]: row for row in data["all_metrics"]}
    assert rows["m"] == {"name": "m", "old": BIG, "new": -BIG, "delta": None}  # -BIG - BIG overflows
    assert rows["big"]["delta"] == 0
    html = call(app, "/compare?a=extreme@1.0.0&b=extreme@2.0.0").text
    table = html[html.index('<table class="data" id="metrics">') : html.index("</table>")]
    assert "inf" not in table.lower() and "nan" not in table.lower()
    assert re.search(r"<td>m</td>.*?<td class=\"num change\"><span class=\"muted\">–</span>", table, re.DOTALL)


@pytest.mark.parametrize("page", ["/m/extreme", "/m/flat", "/m/classifier"])
def test_charts_of_extreme_metrics_have_finite_coordinates(app, page: str) -> None:  # type: ignore[no-untyped-def]
    html = call(app, page).text
    assert html.count('<svg class="chart"') >= 1
    assert_finite_svg(html)


finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(finite_floats, st.sampled_from([math.nan, math.inf, -math.inf])), min_size=1, max_size=70))
def test_a_chart_of_any_values_stays_inside_its_box(values: list[float]) -> None:
    svg = metric_chart("m", [Point(f"1.{i}.0", v) for i, v in enumerate(values)], lambda v: f"/m/x@{v}")
    assert_finite_svg(svg)


NUMBER_ATTRIBUTE = re.compile(r'\b(?:x|y|x1|x2|y1|y2|cx|cy)="([^"]*)"|\bpoints="([^"]*)"')


def assert_finite_svg(html: str) -> None:
    """Every coordinate in every SVG of ``html`` is a finite number inside the drawing."""
    for svg in re.findall(r'<svg class="chart".*?</svg>', html, re.DOTALL):
        assert "nan" not in svg.lower() and "inf" not in svg.lower(), svg
        for single, points in NUMBER_ATTRIBUTE.findall(svg):
            for number in (single,) if single else re.split(r"[ ,]", points):
                value = float(number)
                assert math.isfinite(value) and -1 <= value <= max(WIDTH, HEIGHT) + 1, (number, svg)
