"""A small inline SVG bar chart: requested versus eligible shares of one attribute.

Server-rendered, no script, no external asset; the numbers are also in the table beside
it (and in the SVG's <title>s), so it reads without the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

ROW = 22
LABEL = 130
WIDTH = 260


def bars(groups: Sequence[dict[str, Any]], title: str) -> Markup:
    height = ROW * len(groups) + 24
    parts = [
        f'<svg class="bars" role="img" viewBox="0 0 {LABEL + WIDTH + 90} {height}" '
        f'width="{LABEL + WIDTH + 90}" height="{height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for n, g in enumerate(groups):
        y = 4 + n * ROW
        requested, eligible = float(g["requested_share"]), float(g["eligible_share"])
        label = escape(str(g["value"]))[:20]
        parts.append(f'<text x="0" y="{y + 13}" class="label">{label}</text>')
        parts.append(
            f'<rect x="{LABEL}" y="{y}" width="{requested * WIDTH:.1f}" height="8" '
            f'class="requested"><title>{label}: requested {requested:.1%}</title></rect>'
        )
        parts.append(
            f'<rect x="{LABEL}" y="{y + 9}" width="{eligible * WIDTH:.1f}" height="8" '
            f'class="eligible"><title>{label}: eligible {eligible:.1%}</title></rect>'
        )
        parts.append(
            f'<text x="{LABEL + WIDTH + 6}" y="{y + 13}" class="value">'
            f"{requested:.0%}→{eligible:.0%}</text>"
        )
    legend_y = height - 6
    parts.append(
        f'<rect x="{LABEL}" y="{legend_y - 8}" width="10" height="8" class="requested"/>'
        f'<text x="{LABEL + 14}" y="{legend_y}" class="label">requested</text>'
        f'<rect x="{LABEL + 90}" y="{legend_y - 8}" width="10" height="8" class="eligible"/>'
        f'<text x="{LABEL + 104}" y="{legend_y}" class="label">eligible</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every interpolated value is escaped)
