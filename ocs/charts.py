"""Small server-side SVG charts for the dashboard. Pure: data in, SVG markup out.

No JavaScript, no CDN: the browser draws the SVG inline. Bars scale to the container width
(viewBox + width 100%), each bar has a <title> (tooltip, and read by screen readers).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 600
HEIGHT = 160
PAD_TOP = 12
PAD_BOTTOM = 22


def bar_chart(
    labels: Sequence[str],
    values: Sequence[int | float],
    *,
    title: str,
    tooltips: Sequence[str] | None = None,
    every: int = 1,
) -> str:
    """A vertical bar chart; `every` shows one label in `every` under the axis."""
    if len(labels) != len(values):
        raise ValueError("labels and values differ in length")
    n = max(1, len(values))
    top = max([float(v) for v in values] + [0.0])
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = WIDTH / n
    bar_w = max(1.0, slot * 0.7)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img"'
        f' aria-label="{escape(title)}" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
        f'<line x1="0" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - PAD_BOTTOM}"'
        ' class="axis"/>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = 0.0 if top <= 0 else plot_h * float(value) / top
        x = i * slot + (slot - bar_w) / 2
        y = HEIGHT - PAD_BOTTOM - h
        tip = tooltips[i] if tooltips else f"{label}: {value}"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" class="bar">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if i % max(1, every) == 0:
            parts.append(
                f'<text x="{i * slot + slot / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle"'
                f' class="tick">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
