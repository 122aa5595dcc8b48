"""The document checks: diagrams parse, and transcripts and snippets that would not rerun are caught.

Mermaid's parser is an npm package that docs/check_diagrams.sh installs into
docs/node_modules; without it (or without node) the diagram tests skip, so the suite never
needs npm. docs/check_docs.py is tested here on small documents of its own; running it on
the real documents takes minutes (it runs example.py), so it is run by hand (docs/checks.md).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def markdown_files() -> list[Path]:
    """The documents a reader sees: the README, the design, and docs/."""
    return [ROOT / "README.md", ROOT / "SYSTEM_DESIGN.md", *sorted(DOCS.glob("*.md"))]


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run the diagram check on the given Markdown files."""
    return subprocess.run(["node", str(DOCS / "check_diagrams.mjs"), *map(str, files)], capture_output=True,
                          text=True, timeout=120)


needs_mermaid = pytest.mark.skipif(
    shutil.which("node") is None or not (DOCS / "node_modules" / "mermaid").is_dir(),
    reason="Mermaid's parser is not installed: run docs/check_diagrams.sh once",
)


@needs_mermaid
def test_every_mermaid_diagram_parses() -> None:
    """Each ```mermaid block parses: GitHub would otherwise show an error box in its place."""
    done = check(*(path for path in markdown_files() if path.exists()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout


@needs_mermaid
def test_a_broken_diagram_is_reported_with_its_line(tmp_path: Path) -> None:
    """A `;` inside a sequence message ends the statement: the check names the file and line."""
    page = tmp_path / "page.md"
    page.write_text("# page\n\n```mermaid\nsequenceDiagram\n    A->>B: read; write\n```\n", encoding="utf-8")
    done = check(page)
    assert done.returncode == 1
    assert f"FAIL  {page}:3" in done.stdout


def check_docs() -> ModuleType:
    """docs/check_docs.py as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("check_docs", DOCS / "check_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def test_a_transcript_that_no_longer_matches_is_reported_and_can_be_updated(tmp_path: Path) -> None:
    """Output compares loosely on digests and times only; --update writes what the rerun printed."""
    checker = check_docs()
    page = tmp_path / "page.md"
    page.write_text("```console\n$ mkdir sub && cd sub\n$ echo sha256:$(printf 'a%.0s' $(seq 64)) ok\n"
                    "sha256:0123456789abcdef ok\n$ pwd | xargs basename\nelsewhere\n```\n", encoding="utf-8")
    checker.DEMO_ROOT = tmp_path / "demo"
    problems = checker.check_transcripts([checker.parse(page)], update=False)
    assert len(problems) == 1 and "`pwd | xargs basename` printed other output" in problems[0]
    checker.check_transcripts([checker.parse(page)], update=True)
    assert page.read_text(encoding="utf-8").endswith("$ pwd | xargs basename\nsub\n```\n")
    assert checker.check_transcripts([checker.parse(page)], update=False) == []


def test_a_snippet_that_fails_on_its_second_run_is_reported(tmp_path: Path) -> None:
    """Snippets run twice in one directory: creating what the first run left behind fails."""
    checker = check_docs()
    page = tmp_path / "page.md"
    page.write_text("```python\nopen('made-once', 'x').close()\n```\n", encoding="utf-8")
    problems = checker.check_snippets([checker.parse(page)])
    assert len(problems) == 1 and "second run failed" in problems[0] and "FileExistsError" in problems[0]


def test_a_link_to_a_missing_file_is_reported(tmp_path: Path) -> None:
    """Relative links and images must name files that exist; web links are not followed."""
    checker = check_docs()
    (tmp_path / "there.md").write_text("x", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[a](there.md#part) [b](https://example.org) ![c](images/gone.png)\n", encoding="utf-8")
    assert checker.check_links([checker.parse(page)]) == [f"{page}:1: link to missing images/gone.png"]
