"""The pages lay out well with long names, long authors and messages, many metrics and a
wide lineage: measured in headless Chromium (see test_web.py), at a laptop's width.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_web import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from test_web_registry import safetensors_file, served

from mreg import Registry

NAME = "chest-xray/pneumonia-detector-densenet121-finetuned"
AUTHOR = "Dr. Maximiliana Konstantinopoulou-Vanderbergh (Radiology AI, St. Elsewhere)"
LONG_MESSAGE = (
    "retrained with the 2026 Q3 multi-site data release, heavier augmentation (random erasing, elastic "
    "deformation) and a cosine learning-rate schedule; see the evaluation report"
)


def build(root: Path) -> Registry:
    """Fourteen versions with four long-named metrics, each the child of the one before, and three
    children of 1.12.0 with longer names still."""
    registry = Registry.init(root)
    for i in range(14):
        registry.add(
            f"{NAME}@1.{i}.0",
            [safetensors_file(root / f"in/{i}/model.safetensors", i)],
            parents=[f"{NAME}@1.{i - 1}.0"] if i else [],
            author=AUTHOR,
            message=LONG_MESSAGE if i % 3 == 0 else f"round {i}",
            metrics={"auroc_validation": 0.8 + i / 100, "sensitivity_at_95_specificity": 0.5 + i / 50,
                     "calibration_error_ece": 0.1 - i / 200, "dice_lesion_segmentation": 0.7 + i / 90},
        )  # fmt: skip
    for k in range(3):
        registry.add(
            f"{NAME}-pediatric-variant-{k}@1.0.0",
            [safetensors_file(root / f"in/c{k}/model.safetensors", 50 + k)],
            parents=[f"{NAME}@1.12.0"],
            author=AUTHOR,
        )
    registry.tag(f"{NAME}@1.10.0", "production")
    return registry


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    registry = build(tmp_path_factory.mktemp("layout"))
    with served(registry.root.parent) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        tab.base = url  # type: ignore[attr-defined]
        yield tab
        browser.close()


def box(locator) -> dict[str, float]:  # type: ignore[no-untyped-def]
    found = locator.bounding_box()
    assert found is not None
    return found


@needs_chromium
def test_the_versions_table_keeps_its_message_column_readable(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/m/{NAME}")
    table, wrap = box(page.locator("#versions")), box(page.locator("#versions").locator("xpath=.."))
    assert table["x"] + table["width"] <= wrap["x"] + wrap["width"] + 1, "the table is wider than its card"
    messages = page.locator("#versions td.message")
    assert messages.count() == 14
    for i in range(14):
        assert box(messages.nth(i))["width"] >= 150
    for i in range(14):  # a long message takes at most two lines, a long author one
        assert box(page.locator("#versions tbody tr").nth(i))["height"] <= 72
    assert page.locator("#versions td.message .clamp").first.get_attribute("title") == "round 13"
    assert page.locator("#versions .author").first.get_attribute("title") == AUTHOR


@needs_chromium
def test_lineage_labels_fit_their_nodes_and_the_graph_its_card(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/m/{NAME}@1.12.0")
    nodes = page.locator("svg.lineage g.node")
    assert nodes.count() == 8  # three generations up, the version, four children
    for i in range(nodes.count()):
        rect, name = box(nodes.nth(i).locator("rect")), box(nodes.nth(i).locator("text").first)
        assert name["x"] + name["width"] <= rect["x"] + rect["width"] - 4, nodes.nth(i).text_content()
    labels = [nodes.nth(i).locator("text").nth(1).text_content() or "" for i in range(nodes.count())]
    assert {label.split()[0] for label in labels} >= {"@1.9.0", "@1.10.0", "@1.11.0", "@1.12.0", "@1.13.0", "@1.0.0"}
    card, graph = box(page.locator(".lineage-card")), box(page.locator("svg.lineage"))
    assert graph["width"] <= card["width"], "five generations fit without scrolling"


@needs_chromium
def test_snippets_and_long_names_stay_inside_their_cards(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/m/{NAME}@1.12.0")
    for snippet in ("#snippet-shell", "#snippet-python"):  # wrapped, not scrolled: all of it in view
        assert page.locator(snippet).evaluate("e => e.scrollWidth <= e.clientWidth"), snippet
    page.goto(f"{page.base}/compare?a={NAME}@1.3.0&b={NAME}@1.12.0")
    metrics, wrap = box(page.locator("#metrics")), box(page.locator("#metrics").locator("xpath=.."))
    assert metrics["x"] + metrics["width"] <= wrap["x"] + wrap["width"] + 1
