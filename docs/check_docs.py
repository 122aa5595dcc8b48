"""Check that the documents are true of the code: links resolve, snippets and transcripts rerun.

Usage, from the repository root (torch and the requirements installed):

    python docs/check_docs.py links                    # every relative link and image exists
    python docs/check_docs.py snippets                 # every ```python block runs twice in a fresh directory
    python docs/check_docs.py transcripts              # every ```console session reruns with the same output
    python docs/check_docs.py transcripts --update     # ... and rewrite the blocks with what the rerun printed

With no check named, all three run. Mermaid diagrams are checked by docs/check_diagrams.sh.

Transcripts: the ```console blocks of one Markdown file form one shell session, run in
order in a fresh directory /tmp/mreg-demo/<file> (so printed paths are the same on every
rerun). A line ``$ COMMAND`` (continued by a trailing backslash) is run with bash; the
lines up to the next command are its expected output (stdout and stderr, as a terminal
shows them). The working directory carries over from one command to the next. HTML
comments steer a file's session:

    <!-- transcript-setup: COMMAND -->   run silently before the first block (e.g. python example.py)
    <!-- transcript: skip -->            do not run the next ```console block

Digests, times and durations are compared loosely, since manifests record when they were
made; everything else must match. A ```python block preceded by ``<!-- snippet: skip -->``
is not run.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHECKS = ("links", "snippets", "transcripts")
ROOT = Path(__file__).resolve().parent.parent
DEMO_ROOT = Path("/tmp/mreg-demo")
COMMAND_TIMEOUT = 600  # seconds; example.py downloads or falls back well within this

FENCE = re.compile(r"^(```+)\s*(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(transcript-setup|transcript|snippet):\s*(.*?)\s*-->\s*$")
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|\bsrc=\"([^\"]+)\"")
LOOSE = [
    (re.compile(r"sha256:[0-9a-f]{8,64}"), "sha256:<digest>"),
    (re.compile(r"\b[0-9a-f]{2}/[0-9a-f]{62}\b"), "<object path>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<hex>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|s)\b"), "<duration>"),
]


@dataclass
class Block:
    """A fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    lines: list[str]
    directive: str = ""  # the ``transcript:``/``snippet:`` comment just above it, if any


@dataclass
class Document:
    """A Markdown file split into its fenced blocks, with its session's setup commands."""

    path: Path
    text: list[str]
    blocks: list[Block] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)


def documents() -> list[Document]:
    """The README, SYSTEM_DESIGN and every Markdown file under docs/."""
    paths = [ROOT / "README.md", ROOT / "SYSTEM_DESIGN.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [parse(path) for path in paths if path.exists()]


def parse(path: Path) -> Document:
    """Split a Markdown file into blocks, noting the directives in front of them."""
    text = path.read_text(encoding="utf-8").split("\n")
    document = Document(path, text)
    directive, index = "", 0
    while index < len(text):
        line = text[index]
        found = DIRECTIVE.match(line)
        opened = FENCE.match(line)
        if found and found.group(1) == "transcript-setup":
            document.setup.append(found.group(2))
        elif found:
            directive = found.group(2)
        elif opened:
            end = index + 1
            while end < len(text) and text[end].strip() != opened.group(1):
                end += 1
            document.blocks.append(Block(path, index + 1, opened.group(2), text[index + 1 : end], directive))
            directive, index = "", end
        elif line.strip():
            directive = ""
        index += 1
    return document


def check_links(docs: list[Document]) -> list[str]:
    """Every relative link or image in the documents names a file that exists."""
    problems = []
    for doc in docs:
        for number, line in enumerate(doc.text, 1):
            for match in LINK.finditer(line):
                target = (match.group(1) or match.group(2)).split("#", 1)[0]
                if not target or re.match(r"^[a-z]+:", target):
                    continue
                if not (doc.path.parent / target).exists():
                    problems.append(f"{relative(doc.path)}:{number}: link to missing {target}")
    return problems


def check_snippets(docs: list[Document]) -> list[str]:
    """Every Python block runs, twice, in one fresh directory (the second run meets the first's registry)."""
    problems = []
    for doc in docs:
        for block in doc.blocks:
            if block.language != "python" or block.directive == "skip":
                continue
            with tempfile.TemporaryDirectory(prefix="mreg-snippet-") as directory:
                script = Path(directory) / "snippet.py"
                script.write_text("\n".join(block.lines) + "\n", encoding="utf-8")
                for attempt in ("first", "second"):
                    done = subprocess.run([sys.executable, str(script)], cwd=directory, env=environment(),
                                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
                    print(f"{relative(block.path)}:{block.line}: python snippet, {attempt} run: exit {done.returncode}")
                    if done.returncode:
                        problems.append(f"{relative(block.path)}:{block.line}: {attempt} run failed:\n{done.stderr[-2000:]}")
                        break
    return problems


def check_transcripts(docs: list[Document], update: bool) -> list[str]:
    """Rerun every console session; report (or, with update, rewrite) output that differs."""
    problems = []
    for doc in docs:
        blocks = [b for b in doc.blocks if b.language == "console" and b.directive != "skip"]
        if not blocks:
            continue
        session = Session(DEMO_ROOT / doc.path.stem.lower())
        for command in doc.setup:
            session.run(command)
        replacements = {}
        for block in blocks:
            fresh: list[str] = []
            printed = False
            for command, shown, expected in commands(block.lines):
                output = session.run(command)
                print(f"{relative(block.path)}:{block.line}: $ {shown[0][2:]}")
                if loose(output) != loose("\n".join(expected)):
                    problems.append(f"{relative(block.path)}:{block.line}: `{shown[0][2:]}` printed other output:\n"
                                    + "\n".join(difflib.unified_diff(expected, output.split("\n"), "documented",
                                                                     "rerun", lineterm="")))
                fresh += [*([""] if printed else []), *shown, *([output] if output else [])]
                printed = bool(output)  # a blank line after output, none after a silent command
            replacements[block.line] = fresh
        if update:
            rewrite(doc, replacements)
    return [] if update else problems  # an update makes the documents agree with the rerun


def commands(lines: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """Split a console block into (command to run, its lines as shown, expected output lines)."""
    found: list[tuple[str, list[str], list[str]]] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            index += 1  # text before the first command: not expected from anything
            continue
        shown = [lines[index]]
        while shown[-1].endswith("\\") and index + 1 < len(lines):
            index += 1
            shown.append(lines[index])
        index += 1
        expected = []
        while index < len(lines) and not lines[index].startswith("$ "):
            expected.append(lines[index])
            index += 1
        while expected and not expected[-1].strip():
            expected.pop()
        found.append(("\n".join(shown)[2:], shown, expected))
    return found


class Session:
    """A bash session, one process per command, whose working directory carries over."""

    def __init__(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.cwd = directory
        self.state = directory.parent / f".{directory.name}-cwd"  # where each command leaves its cwd

    def run(self, command: str) -> str:
        """Run one command as a user would type it; return what it printed, trailing blanks removed."""
        script = f"{{ {command}\n}} 2>&1; status=$?; pwd > {shlex.quote(str(self.state))}; exit $status"
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=environment(), stdout=subprocess.PIPE,
                              text=True, timeout=COMMAND_TIMEOUT)
        self.cwd = Path(self.state.read_text().strip())
        return done.stdout.rstrip()


def environment() -> dict[str, str]:
    """The environment of every run: this tree's mreg first, a fixed author, unbuffered output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MREG_")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               MREG_AUTHOR="alice", MREG_REPO=str(ROOT), PYTHONUNBUFFERED="1", COLUMNS="100")
    return env


def loose(text: str) -> str:
    """Text with digests, times and durations replaced by placeholders, trailing blanks removed."""
    for pattern, placeholder in LOOSE:
        text = pattern.sub(placeholder, text)
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def rewrite(doc: Document, replacements: dict[int, list[str]]) -> None:
    """Replace the bodies of the given blocks (keyed by fence line) and write the file back."""
    text = list(doc.text)
    for block in sorted(doc.blocks, key=lambda b: b.line, reverse=True):
        if block.line in replacements:
            text[block.line : block.line + len(block.lines)] = replacements[block.line]
    doc.path.write_text("\n".join(text), encoding="utf-8")


def relative(path: Path) -> str:
    """A path relative to the repository root where it is inside it, for messages."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    """Run the checks named on the command line (all by default); exit 1 if any finds a problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("checks", nargs="*", metavar="{links,snippets,transcripts}")
    parser.add_argument("--update", action="store_true", help="rewrite transcripts with the rerun's output")
    args = parser.parse_args()
    checks = args.checks or list(CHECKS)
    if unknown := set(checks) - set(CHECKS):
        parser.error(f"unknown check(s): {', '.join(sorted(unknown))}")
    docs = documents()
    problems = []
    if "links" in checks:
        problems += check_links(docs)
    if "snippets" in checks:
        problems += check_snippets(docs)
    if "transcripts" in checks:
        problems += check_transcripts(docs, args.update)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
