"""`--csv DIR`: one CSV file per table of the report, for spreadsheets."""

import csv
from collections.abc import Iterable
from pathlib import Path

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def tables(report: dict) -> dict[str, list[dict]]:
    """The report's tables by file name: each a list of rows with the same keys."""
    first = report["first_response"]
    return {
        "summary": [_summary(report)],
        "volume_by_day": report["volume"]["by_day"],
        "volume_by_month": report["volume"]["by_month"],
        "first_response_histogram": first["histogram"],
        "sla_by_week": report["by_week"],
        "messages_by_hour": [{"weekday": day, **{f"{hour:02d}": n for hour, n in enumerate(row)}}
                             for day, row in zip(WEEKDAYS, report["by_hour"], strict=True)],
        "backlog_by_age": report["backlog"]["by_age"],
        "responders": report["responders"],
        "staffing_months": report["staffing"]["months"],
        "top_questions": [{**row, "tickets": " ".join(map(str, row["tickets"]))} for row in report["top_questions"]],
    }


def _summary(report: dict) -> dict:
    first, staffing = report["first_response"], report["staffing"]
    return {
        "since": report["period"]["since"], "until": report["period"]["until"], "mailbox": report["mailbox"] or "",
        "customer_messages": report["volume"]["customer_messages"], "new_threads": report["volume"]["new_threads"],
        **{key: first[key] for key in ("answered", "unanswered", "median_s", "p90_s", "max_s", "within_sla",
                                       "within_sla_pct")},
        "open": report["backlog"]["open"], "overdue": report["backlog"]["overdue"],
        "average_per_month": staffing["average_per_month"],
        "dedicated_people_suggested": staffing["dedicated_people_suggested"],
        "acks_sent": report["acks"]["sent"],
    }


def write_csv(report: dict, directory: Path) -> list[Path]:
    """Write every table into `directory` (created if missing); the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    return [_write(directory / f"{name}.csv", rows) for name, rows in tables(report).items()]


def _write(path: Path, rows: Iterable[dict]) -> Path:
    rows = list(rows)
    with path.open("w", newline="", encoding="utf-8") as out:
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path
