"""A version's lineage as a graph: its ancestors and descendants, drawn as server-rendered SVG.

Generations are columns, left to right (grandparents, parents, the version, its
children...); each node links to its version page. Parents come from manifests,
children from an index of every registered version's parents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from markupsafe import Markup, escape

from mreg.web.pages import label_of, manifest_or_none

if TYPE_CHECKING:
    from mreg.web.reader import ReadOnlyRegistry

GENERATIONS_UP, GENERATIONS_DOWN = 3, 2
MAX_PER_COLUMN = 8
NODE_W, NODE_H, COLUMN_GAP, ROW_GAP, PAD = 176, 48, 36, 14, 8
NAME_CHARS, VERSION_CHARS = 20, 12  # what fits in a node at the font sizes of style.css


class Node(NamedTuple):
    """A version in the graph; ``ref`` is None when its manifest is gone."""

    digest: str
    label: str
    ref: str | None
    generation: int  # 0: the version shown; negative: ancestors; positive: descendants


class Graph(NamedTuple):
    """Nodes and (parent, child) edges between them."""

    nodes: list[Node]
    edges: list[tuple[str, str]]
    hidden: int  # nodes left out to keep columns short


def lineage_graph(registry: ReadOnlyRegistry, digest: str, children: dict[str, list[str]]) -> Graph:
    """The ancestors (up to 3 generations) and descendants (up to 2) of a version."""
    generation = {digest: 0}
    edges: set[tuple[str, str]] = set()
    _walk(digest, -1, GENERATIONS_UP, generation, edges, lambda d: _parents(registry, d))
    _walk(digest, 1, GENERATIONS_DOWN, generation, edges, lambda d: children.get(d, []))
    nodes, hidden = [], 0
    for level in sorted(set(generation.values())):
        column = sorted((_node(registry, d, level) for d, g in generation.items() if g == level), key=lambda n: n.label)
        hidden += max(0, len(column) - MAX_PER_COLUMN)
        nodes += column[:MAX_PER_COLUMN]
    kept = {n.digest for n in nodes}
    return Graph(nodes, sorted(e for e in edges if e[0] in kept and e[1] in kept), hidden)


def _walk(
    start: str, step: int, depth: int, generation: dict[str, int], edges: set[tuple[str, str]], next_of: Callable[[str], list[str]]
) -> None:
    """Breadth first from ``start``: each digest keeps the generation it is first reached at."""
    frontier = [start]
    for level in range(1, depth + 1):
        reached = []
        for digest in frontier:
            for other in next_of(digest):
                edges.add((other, digest) if step < 0 else (digest, other))
                if other not in generation:
                    generation[other] = step * level
                    reached.append(other)
        frontier = reached


def _parents(registry: ReadOnlyRegistry, digest: str) -> list[str]:
    manifest = manifest_or_none(registry, digest)
    return list(manifest.lineage.parents) if manifest is not None else []


def _node(registry: ReadOnlyRegistry, digest: str, generation: int) -> Node:
    label, ref = label_of(registry, digest)
    return Node(digest, label, ref, generation)


def render(graph: Graph, href: Callable[[str], str]) -> Markup:
    """The graph as an SVG document fragment (empty when the version has no relatives)."""
    if len(graph.nodes) < 2:
        return Markup("")
    levels = sorted({n.generation for n in graph.nodes})
    columns = {level: [n for n in graph.nodes if n.generation == level] for level in levels}
    rows = max(len(c) for c in columns.values())
    width = PAD * 2 + len(levels) * NODE_W + (len(levels) - 1) * COLUMN_GAP
    height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP
    where = {}
    for index, level in enumerate(levels):
        column = columns[level]
        top = PAD + (height - 2 * PAD - (len(column) * NODE_H + (len(column) - 1) * ROW_GAP)) / 2
        for row, node in enumerate(column):
            where[node.digest] = (PAD + index * (NODE_W + COLUMN_GAP), top + row * (NODE_H + ROW_GAP))
    parts = [
        f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        'aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path class="arrowhead" d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>',
    ]
    for parent, child in graph.edges:
        (x1, y1), (x2, y2) = where[parent], where[child]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        middle = (x1 + x2) / 2
        parts.append(
            f'<path class="edge" marker-end="url(#arrow)" '
            f'd="M {x1:.1f} {y1:.1f} C {middle:.1f} {y1:.1f}, {middle:.1f} {y2:.1f}, {x2 - 2:.1f} {y2:.1f}"/>'
        )
    for node in graph.nodes:
        parts.append(_draw_node(node, *where[node.digest], href))
    parts.append("</svg>")
    return Markup("".join(parts))


def _draw_node(node: Node, x: float, y: float, href: Callable[[str], str]) -> str:
    """A node: the model's name (shortened in the middle, so that both ends stay), then
    ``@version`` and the short digest; the full label is the node's tooltip."""
    kind = "current" if node.generation == 0 else "missing" if node.ref is None else "relative"
    name, _, version = node.label.rpartition("@") if node.ref is not None else ("(removed)", "", "")
    second = f"@{shorten_end(version, VERSION_CHARS)} " if version else ""
    box = (
        f'<g class="node {kind}"><title>{escape(node.label)} {escape(node.digest)}</title>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
        f'<text class="name" x="{x + 12:.1f}" y="{y + 20:.1f}">{escape(shorten_middle(name, NAME_CHARS))}</text>'
        f'<text x="{x + 12:.1f}" y="{y + 37:.1f}"><tspan class="version">{escape(second)}</tspan>'
        f'<tspan class="digest">{escape(node.digest[7:15] if second else node.digest[:19])}</tspan></text></g>'
    )
    if node.ref is None or node.generation == 0:
        return box
    return f'<a href="{escape(href(node.label))}">{box}</a>'


def shorten_middle(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, an ellipsis replacing its middle
    (``chest-xray/pneu…finetuned``: models of one family differ at either end)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def shorten_end(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, an ellipsis replacing its end."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
