"""The documents' Mermaid diagrams parse with Mermaid's own parser (when it is installed).

The parser is an npm package that docs/check_diagrams.sh installs into docs/node_modules;
without it (or without node) this test skips, so the suite never needs npm.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
