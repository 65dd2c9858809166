"""What the thread page shows, in the mailbox's time zone, and reading the snooze time a person picked."""

from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from mailwatch.durations import rounded
from mailwatch.pipeline.threadview import named
from mailwatch.sla import human_time

INPUT_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends
SNOOZE_LIMIT = timedelta(days=90)
DONE_TEXT = {"answered": "Marked answered.", "take": "You have taken this conversation.",
             "snooze": "Snoozed.", "close": "Closed."}


def zone(tz: tzinfo | str) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def page_context(view, claim, link_token: str, form_token: str, now: datetime, done: str | None) -> dict:
    """The template's variables: the view, its times written for people, and the form fields."""
    tz = zone(view.tz)
    tomorrow_nine = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), time(9, 0))
    return {
        "view": view,
        "recipient": claim.recipient,
        "when": lambda value: human_time(value, tz) if value else "",
        "customer": named(*view.customer),
        "time_left": _time_left(view.time_left),
        "late": view.time_left is not None and view.time_left < timedelta(0),
        "link_token": link_token,
        "form_token": form_token,
        "snooze_default": tomorrow_nine.strftime(INPUT_FORMAT),
        "snooze_min": now.astimezone(tz).strftime(INPUT_FORMAT),
        "zone_name": str(getattr(tz, "key", tz)),
        "done": DONE_TEXT.get(done or ""),
    }


def _time_left(left: timedelta | None) -> str:
    if left is None:
        return ""
    return f"{rounded(left)} left" if left >= timedelta(0) else f"{rounded(left)} overdue"


def parse_until(text: str, tz: tzinfo | str, now: datetime) -> datetime | str:
    """The snooze time from the form, read in the mailbox's zone, as UTC; or what is wrong with it."""
    try:
        local = datetime.fromisoformat(text.strip())  # "2026-06-09T09:00", with or without seconds
    except ValueError:
        return "Choose a date and time to snooze until."
    if local.tzinfo is not None or "T" not in text:  # a bare date or an offset is not what the form sends
        return "Choose a date and time to snooze until."
    until = local.replace(tzinfo=zone(tz)).astimezone(now.tzinfo)
    if until <= now:
        return "The snooze time must be in the future."
    if until - now > SNOOZE_LIMIT:
        return "Snooze for at most 90 days; close the conversation instead if it needs no answer."
    return until
