"""A small bar chart of lessons sent per day, drawn here as inline SVG (no script, no assets)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from web.admin.queries import DayCount

# The plot's own units; the page stretches it to its width, and the labels are HTML text
# beside it, so they keep their size on a phone and on a wide screen alike.
WIDTH, HEIGHT = 300, 100
_BAR = "#2d5b5f"


def nice_top(peak: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above `peak`: a scale top that reads easily."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= peak:
                return step * magnitude
        magnitude *= 10


def sent_chart(days: Sequence[DayCount]) -> Markup:
    """A bar per day (its date and count as a tooltip), the scale's top, the first and last day."""
    peak = max((d.sent for d in days), default=0)
    top = nice_top(max(peak, 1))
    slot = WIDTH / max(len(days), 1)
    summary = (
        f"Lessons sent per day, last {len(days)} days: {sum(d.sent for d in days):,} in all, "
        f"at most {peak:,} in one day"
    )
    bars = []
    for i, day in enumerate(days):
        height = HEIGHT * day.sent / top
        label = escape(f"{day.day.strftime('%d %b')}: {day.sent:,} sent")
        bars.append(
            f'<rect x="{i * slot + slot * 0.15:.2f}" y="{HEIGHT - height:.2f}" '
            f'width="{slot * 0.7:.2f}" height="{height:.2f}" fill="{_BAR}">'
            f"<title>{label}</title></rect>"
        )
    first = days[0].day.strftime("%d %b") if days else ""
    last = days[-1].day.strftime("%d %b") if days else ""
    html = (
        '<figure class="chart">'
        f'<div class="chart-plot"><span class="chart-top">{top:,} a day</span>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(bars)}</svg></div>"
        f"<figcaption><span>{first}</span><span>UTC days</span><span>{last}</span></figcaption>"
        "</figure>"
    )
    # Built from numbers, dates and escape()d labels only: nothing here is markup from outside.
    return Markup(html)  # noqa: S704
