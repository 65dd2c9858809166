"""[[calendar]]: a team's opening hours, closed dates and public holidays."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import StrictStr, field_validator, model_validator

from mailwatch.businesstime import MINUTES_PER_DAY, Calendar
from mailwatch.config.types import MailboxName, Model, Text, TimeZoneName, problem

# The keys of `hours`, in weekday order (Monday is 0, as in date.weekday()).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# One range of local time, "09:00-17:00"; the end may be 24:00.
_RANGE = re.compile(r"\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*")
# Public holidays are computed for these years when the configuration loads: loading
# stays pure (no clock), and a century costs a few milliseconds per calendar.
PUBLIC_HOLIDAY_YEARS = range(2000, 2101)


def _minute(hours: str, minutes: str) -> int | None:
    value = int(hours) * 60 + int(minutes)
    return value if int(minutes) < 60 and value <= MINUTES_PER_DAY else None


def parse_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """'08:00-12:00,13:00-17:00' as minutes of the day; ValueError saying what is wrong."""
    ranges: list[tuple[int, int]] = []
    for part in filter(str.strip, text.split(",")):
        match = _RANGE.fullmatch(part)
        bounds = (_minute(*match.group(1, 2)), _minute(*match.group(3, 4))) if match else (None, None)
        if bounds[0] is None or bounds[1] is None:
            raise ValueError(f"not a range like '09:00-17:00' (00:00 to 24:00): {part.strip()!r}")
        start, end = bounds
        if end <= start:
            raise ValueError(f"{part.strip()!r} ends before it starts: for hours across midnight write "
                             "'22:00-24:00' on one day and '00:00-06:00' on the next")
        if ranges and start < ranges[-1][1]:
            raise ValueError(f"{part.strip()!r} overlaps or precedes the range before it: list ranges in order")
        ranges.append((start, end))
    return tuple(ranges)


class PublicHolidays(Model):
    """public_holidays: a country's (and region's) holidays from the `holidays` package."""

    country: Text
    subdivision: StrictStr | None = None

    @model_validator(mode="after")
    def _known_country(self) -> PublicHolidays:
        try:
            _country_holidays(self.country, self.subdivision, 2026)
        except NotImplementedError as exc:
            raise problem(f"{exc} (see the `holidays` package's list of countries)") from None
        return self

    def dates(self) -> frozenset[date]:
        """The holidays over PUBLIC_HOLIDAY_YEARS."""
        return frozenset(_country_holidays(self.country, self.subdivision, PUBLIC_HOLIDAY_YEARS))


def _country_holidays(country: str, subdivision: str | None, years: int | Iterable[int]) -> Mapping[date, str]:
    # Imported on first use: the package costs every start 50 ms, and most teams set no public holidays.
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision, years=years)


class CalendarSettings(Model):
    """[[calendar]]: when a team works, in its own time zone."""

    name: MailboxName
    timezone: TimeZoneName
    hours: dict[str, StrictStr]
    holidays: tuple[date, ...] = ()
    public_holidays: PublicHolidays | None = None


    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, hours: dict[str, str]) -> dict[str, str]:
        for day, text in hours.items():
            if day not in DAYS:
                raise problem(f"not a day: use {', '.join(DAYS)}", day)
            try:
                parse_ranges(text)
            except ValueError as exc:
                raise problem(str(exc), day) from None
        if not any(parse_ranges(text) for text in hours.values()):
            raise problem("no opening hours at all: a deadline could never be reached")
        return hours

    @field_validator("holidays", mode="before")
    @classmethod
    def _dates(cls, value: object) -> object:
        # TOML has dates (2026-12-24) and strings ("2026-12-24"); accept both.
        if not isinstance(value, list | tuple):
            return value
        try:
            return tuple(date.fromisoformat(item) if isinstance(item, str) else item for item in value)
        except ValueError as exc:
            raise problem(f"not a date like '2026-12-24': {exc}") from None

    @cached_property
    def calendar(self) -> Calendar:
        """The calendar the arithmetic uses: explicit dates add to the public holidays."""
        week = tuple(parse_ranges(self.hours.get(day, "")) for day in DAYS)
        public = self.public_holidays.dates() if self.public_holidays else frozenset()
        return Calendar(self.name, ZoneInfo(self.timezone), week, frozenset(self.holidays) | public)

    def describe(self) -> str:
        """One line for `check`: 'office (Europe/Berlin, mon 09:00-17:00, …, 2 dates + DE-BE)'."""
        days = ", ".join(f"{day} {self.hours[day]}" for day in DAYS if self.hours.get(day, "").strip())
        extra = f"{len(self.holidays)} closed dates"
        if self.public_holidays:
            region = "-".join(filter(None, [self.public_holidays.country, self.public_holidays.subdivision]))
            extra += f" + {region} public holidays"
        return f"{self.name} ({self.timezone}; {days}; {extra})"
