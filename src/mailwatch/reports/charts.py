"""Hand-written inline SVG charts: bars with reference lines, and a weekday × hour heatmap.

No chart library: the page must work from a mail client or a file, with nothing to
fetch, and the daemon stays small. Each chart scales with its viewBox.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 480, 250  # the viewBox: scaled to a phone's width its text stays readable
LEFT, BOTTOM, TOP = 40, 34, 18  # room for the axis labels
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Line:
    """A reference line across a bar chart: at a value (horizontal) or after a bar (vertical)."""

    label: str
    value: float | None = None
    after_bar: int | None = None


def _svg(body: list[str], title: str, height: int = HEIGHT) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
            f'>{"".join(body)}</svg>')


def _text(x: float, y: float, text: str, anchor: str = "middle", css: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}">{escape(text)}</text>'


def bar_chart(title: str, bars: Sequence[tuple[str, float]], lines: Sequence[Line] = (),
              top: float | None = None, value_label=str) -> str:
    """Vertical bars with their values on top, labels below and optional reference lines."""
    ceiling = max([top or 0, *(v for _, v in bars), *(line.value or 0 for line in lines), 1])
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(bars), 1)
    body = [f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" class="axis"/>']
    for index, (label, value) in enumerate(bars):
        height = plot_h * value / ceiling
        x = LEFT + index * step + step * 0.15
        body.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{step * 0.7:.1f}" '
                    f'height="{height:.1f}" class="bar"><title>{escape(label)}: {escape(value_label(value))}</title>'
                    f'</rect>')
        body.append(_text(x + step * 0.35, TOP + plot_h - height - 3, value_label(value), css="value"))
        if len(bars) <= 8 or index % -(-len(bars) // 7) == 0:  # at most ~7 labels fit
            body.append(_text(x + step * 0.35, HEIGHT - BOTTOM + 16, label, css="label"))
    body += [_reference(line, ceiling, step, plot_h) for line in lines]
    return _svg(body, title)


def _reference(line: Line, ceiling: float, step: float, plot_h: float) -> str:
    if line.after_bar is not None:
        x = LEFT + (line.after_bar + 1) * step
        return (f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" class="ref"/>'
                + _text(x + 4, TOP + 10, line.label, anchor="start", css="ref-label"))
    y = TOP + plot_h - plot_h * (line.value or 0) / ceiling
    return (f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" class="ref"/>'
            + _text(WIDTH - 10, y - 4, line.label, anchor="end", css="ref-label"))


def heatmap(title: str, grid: Sequence[Sequence[int]]) -> str:
    """Seven rows (Monday first) of 24 hourly cells, darker for more messages."""
    cell_w, cell_h, height = (WIDTH - LEFT - 8) / 24, 24, 7 * 24 + 40
    peak = max([max(row) for row in grid] + [1])
    body = []
    for day, row in enumerate(grid):
        body.append(_text(LEFT - 6, 16 + day * cell_h + 12, WEEKDAYS[day], anchor="end", css="label"))
        for hour, count in enumerate(row):
            shade = 0.08 + 0.92 * count / peak if count else 0.03
            body.append(f'<rect x="{LEFT + hour * cell_w:.1f}" y="{8 + day * cell_h}" width="{cell_w - 1:.1f}" '
                        f'height="{cell_h - 2}" class="cell" fill-opacity="{shade:.2f}">'
                        f'<title>{WEEKDAYS[day]} {hour:02d}:00 — {count}</title></rect>')
    for hour in range(0, 24, 3):
        body.append(_text(LEFT + hour * cell_w + cell_w / 2, 8 + 7 * cell_h + 18, f"{hour:02d}", css="label"))
    return _svg(body, title, height)
