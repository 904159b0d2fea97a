"""Line charts as inline SVG, drawn on the server (no script, nothing fetched).

Each chart carries a title and a description for assistive technology; the pages put the
same numbers in a table next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

#: Colour-blind-safe (Okabe-Ito), each at least 3:1 against white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#7a6500", "#56307a", "#333333")
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 240, 48, 160, 16, 32


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[datetime, float]]


def line_chart(key: str, title: str, series: Sequence[Series], unit: str) -> Markup:
    """A time-series line chart (``key`` makes its element ids unique on the page); an empty
    one says there is nothing to draw yet."""
    times = [t for s in series for t, _ in s.points]
    values = [v for s in series for _, v in s.points]
    desc = f"{title}: " + "; ".join(
        f"{s.name} latest {s.points[-1][1]:g} {unit}" for s in series if s.points) if values else \
        f"{title}: no samples yet"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {W} {H}" '
             f'class="chart" aria-labelledby="t-{key} d-{key}">',
             f'<title id="t-{key}">{escape(title)}</title>',
             f'<desc id="d-{key}">{escape(desc)}</desc>',
             f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>']
    if not values:
        parts.append(f'<text x="{W // 2}" y="{H // 2}" text-anchor="middle" fill="#333333">'
                     'no samples yet</text></svg>')
        return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)
    top = max(max(values), 1.0)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def xy(t: datetime, v: float) -> str:
        return f"{LEFT + plot_w * (t - t0).total_seconds() / span:.1f},{TOP + plot_h * (1 - v / top):.1f}"

    for frac in (0.0, 0.5, 1.0):  # axis and gridlines with labels
        y = TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#bbbbbb"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#333333">{top * frac:g}</text>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        x = LEFT if anchor == "start" else LEFT + plot_w
        parts.append(f'<text x="{x}" y="{H - 10}" text-anchor="{anchor}" font-size="11" '
                     f'fill="#333333">{t.strftime("%H:%M:%S")}</text>')
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        if s.points:
            pts = " ".join(xy(t, v) for t, v in s.points)
            dash = ' stroke-dasharray="6 4"' if i % 2 else ""  # overlapping series stay apart
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{pts}"/>')
        y = TOP + 14 * i + 6
        parts.append(f'<rect x="{W - RIGHT + 12}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{W - RIGHT + 28}" y="{y + 1}" font-size="11" fill="#333333">'
                     f'{escape(s.name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
