"""A small bar chart of lessons sent per day, drawn here as inline SVG (no script, no assets)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from web.admin.queries import DayCount

WIDTH, HEIGHT = 600, 160
_TOP, _BOTTOM, _LEFT = 12, 24, 40  # room for the scale on the left and dates below
_BAR = "#2d5b5f"
_INK = "#5b5750"


def _nice_top(peak: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above `peak`: a scale top that reads easily."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= peak:
                return step * magnitude
        magnitude *= 10


def sent_chart(days: Sequence[DayCount]) -> Markup:
    """An SVG bar per day, its count in a tooltip; the scale's top and the first and last day."""
    peak = max((d.sent for d in days), default=0)
    top = _nice_top(max(peak, 1))
    plot_w, plot_h = WIDTH - _LEFT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(days), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">Lessons sent per day, last {len(days)} days: '
        f"{sum(d.sent for d in days):,} in all, at most {peak:,} in one day</title>",
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH}" y2="{_TOP + plot_h}" '
        f'stroke="{_INK}" stroke-width="1"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{WIDTH}" y2="{_TOP}" stroke="#ddd6ca" '
        'stroke-width="1"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" font-size="12" '
        f'fill="{_INK}">{top:,}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="12" '
        f'fill="{_INK}">0</text>',
    ]
    for i, day in enumerate(days):
        height = plot_h * day.sent / top
        x = _LEFT + i * slot + slot * 0.15
        y = _TOP + plot_h - height
        label = escape(f"{day.day.isoformat()}: {day.sent:,} sent")
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}" '
            f'fill="{_BAR}"><title>{label}</title></rect>'
        )
    if days:
        below = _TOP + plot_h + 17
        parts.append(
            f'<text x="{_LEFT}" y="{below}" font-size="12" fill="{_INK}">'
            f"{days[0].day.strftime('%d %b')}</text>"
        )
        parts.append(
            f'<text x="{WIDTH}" y="{below}" text-anchor="end" font-size="12" fill="{_INK}">'
            f"{days[-1].day.strftime('%d %b')}</text>"
        )
    parts.append("</svg>")
    # Built from numbers, dates and escape()d labels only: nothing here is markup from outside.
    return Markup("".join(parts))  # noqa: S704
