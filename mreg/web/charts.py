"""Server-rendered SVG: a line chart of one metric across a model's versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

from mreg.web.numbers import finite

if TYPE_CHECKING:
    from mreg.web.pages import Point

WIDTH, HEIGHT = 360, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 14, 14, 28
MAX_MARKED_POINTS = 60  # beyond this, dots would merge into the line


def metric_chart(metric: str, points: Sequence[Point], href: Callable[[str], str]) -> Markup:
    """An SVG line chart of ``points`` (lowest version first); each dot links to its version.

    Every coordinate is finite whatever the values: the scale works on halves of the
    values (so ``1e308 - -1e308`` cannot overflow), and a flat or degenerate range is
    drawn as a level line. Points that are not finite numbers are left out.
    """
    points = [p for p in points if finite(p.value) is not None]
    if not points:
        return Markup("")
    values = [p.value for p in points]
    low, high = min(values), max(values)
    span = high / 2 - low / 2  # never overflows; 0 for a flat series (or an underflowing one)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1))

    def y(value: float) -> float:
        return TOP + (plot_h / 2 if span <= 0 else plot_h * ((high / 2 - value / 2) / span))

    ticks = (low, low / 2 + high / 2, high) if span > 0 else (low,)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(metric)} across versions">',
        f"<title>{escape(metric)} across versions</title>",
    ]
    for value in ticks:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    line = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    area = f"{x(0):.1f},{TOP + plot_h} {line} {x(len(points) - 1):.1f},{TOP + plot_h}"
    parts.append(f'<polygon class="area" points="{area}"/>')
    parts.append(f'<polyline class="line" points="{line}"/>')
    if len(points) <= MAX_MARKED_POINTS:
        for i, p in enumerate(points):
            parts.append(
                f'<a href="{escape(href(p.version))}"><circle class="dot" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="4">'
                f"<title>{escape(p.version)}: {p.value:g}</title></circle></a>"
            )
    for i, anchor in ((0, "start"), (len(points) - 1, "end")) if len(points) > 1 else ((0, "middle"),):
        parts.append(
            f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">{escape(points[i].version)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
