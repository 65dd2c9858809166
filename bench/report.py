"""Results: one row per figure, its target and verdict, as a table and as JSON.

A side that timed out has no figure: the table says TIMEOUT, shows no ratio and
counts the target as missed, and `python -m bench` exits non-zero. A timeout is
never printed as though it had been measured.
"""

from dataclasses import dataclass, field

COLUMNS = ("scenario", "metric", "mailwatch", "floor", "ratio", "target", "met?")
TIMEOUT = "TIMEOUT"


@dataclass(frozen=True)
class Target:
    """A goal: the mailwatch figure (or its ratio to the floor) must stay under `limit`."""

    limit: float
    on_ratio: bool = False
    inclusive: bool = True  # "≤" rather than "<"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        measured = ratio if self.on_ratio else value
        if measured is None:
            return None
        return measured <= self.limit if self.inclusive else measured < self.limit

    @classmethod
    def above_floor(cls, floor: float | None, margin: float) -> "Target":
        """Under the floor's figure plus `margin` (a floor that timed out counts as 0)."""
        return cls(round((floor or 0) + margin, 2), inclusive=False)

    def describe(self, unit: str) -> str:
        sign = "≤" if self.inclusive else "<"
        return f"{sign} {self.limit:g}× floor" if self.on_ratio else f"{sign} {self.limit:g} {unit}"


@dataclass
class Result:
    """One row of the table: a figure for mailwatch, the floor's, and the goal."""

    scenario: str
    metric: str
    unit: str
    mailwatch: float | None
    floor: float | None = None
    target: Target | None = None
    details: dict = field(default_factory=dict)
    timed_out: bool = False  # mailwatch's side never finished: `mailwatch` is not a measurement
    floor_timed_out: bool = False  # likewise for the floor

    @property
    def failed(self) -> bool:
        """A side that timed out fails the run, whatever the figures say."""
        return self.timed_out or self.floor_timed_out

    @property
    def ratio(self) -> float | None:
        if self.failed or self.mailwatch is None or not self.floor:
            return None
        return self.mailwatch / self.floor

    @property
    def met(self) -> bool | None:
        if self.failed:
            return False
        return self.target.met(self.mailwatch, self.ratio) if self.target else None

    def as_json(self) -> dict:
        """The row with its ratio, target and verdict spelled out."""
        return {
            "scenario": self.scenario, "metric": self.metric, "unit": self.unit,
            "mailwatch": None if self.timed_out else self.mailwatch,
            "floor": None if self.floor_timed_out else self.floor, "ratio": self.ratio,
            "target": self.target.describe(self.unit) if self.target else None, "met": self.met,
            "timed_out": self.timed_out, "floor_timed_out": self.floor_timed_out, "details": self.details,
        }


def _figure(value: float | None, unit: str, timed_out: bool = False) -> str:
    """A figure with its unit and about three significant digits."""
    if timed_out:
        return TIMEOUT
    if value is None:
        return "—"
    if unit == "s" and value < 1:
        value, unit = value * 1000, "ms"
    if value >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def table(results: list[Result]) -> str:
    """The results as an aligned plain-text table."""
    rows = [COLUMNS]
    for result in results:
        met = {True: "yes", False: "NO", None: "—"}[result.met]
        rows.append((
            result.scenario, result.metric, _figure(result.mailwatch, result.unit, result.timed_out),
            _figure(result.floor, result.unit, result.floor_timed_out),
            f"{result.ratio:.2f}×" if result.ratio is not None else "—",
            result.target.describe(result.unit) if result.target else "—", met,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
