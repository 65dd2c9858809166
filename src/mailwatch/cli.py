"""The `mailwatch` command line. The only place that turns errors into exit codes."""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import structlog

from mailwatch import __version__, daemon
from mailwatch.clock import system_clock
from mailwatch.config import Settings, default_config_path, load_settings
from mailwatch.db.engine import Database
from mailwatch.db.lock import lock_sqlite
from mailwatch.db.models import Thread
from mailwatch.db.queries import list_threads
from mailwatch.durations import format_duration, rounded
from mailwatch.errors import ConfigError, MailwatchError
from mailwatch.logs import configure_logging
from mailwatch.policies import ticket_label
from mailwatch.report import Report, build_report
from mailwatch.service import Service, imap_session
from mailwatch.sla import human_time

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailwatch", description="Make sure no support email goes unanswered.")
    parser.add_argument("--config", type=Path, help="TOML file (default: $MAILWATCH_CONFIG or /etc/mailwatch/mailwatch.toml)")
    parser.add_argument("--version", action="version", version=f"mailwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="validate the config; without --offline also reach the servers")
    check.add_argument("--offline", action="store_true", help="validate without connecting anywhere")
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    commands.add_parser("run", help="the daemon: watch, acknowledge and escalate until stopped")
    commands.add_parser("poll", help="one full cycle, then exit")
    threads = commands.add_parser("threads", help="list conversations")
    threads.add_argument("--open", action="store_true", help="only open threads, most urgent first")
    threads.add_argument("--json", action="store_true", help="machine-readable output")
    report = commands.add_parser("report", help="volumes, response times and the SLA over a period")
    report.add_argument("--since", type=_date, help="start date, YYYY-MM-DD in service.timezone (default: 7 days ago)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    thread = commands.add_parser("thread", help="change one thread by hand")
    thread.add_argument("action", choices=["answered", "close", "reopen"])
    thread.add_argument("ticket", type=_ticket)
    return parser


def _ticket(text: str) -> int:
    digits = text.lstrip("#[").rstrip("]")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a ticket number: {text!r}")
    return int(digits)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    args.config = args.config or default_config_path(os.environ)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.logging.format, settings.logging.level)
    try:
        return COMMANDS[args.command](settings, args)
    except MailwatchError as exc:
        log.error("command_failed", command=args.command, error=str(exc))
        print(f"mailwatch: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def schema_ready(settings: Settings) -> Database:
    """The configured database, created if empty, refused if its schema does not match."""
    db = Database(settings.service.database)
    db.ensure_schema()
    return db


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    db = Database(settings.service.database)
    service = Service(settings, db, system_clock)
    problems = service.check_templates()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    print("templates: OK")
    if args.offline:
        print(f"{settings.source}: OK")
        return EXIT_OK
    db.ping()
    print(f"database: reachable (schema {db.schema_revision() or 'empty'})")
    if settings.smtp is not None:
        asyncio.run(service.check_smtp())
        print(f"smtp: {settings.smtp.host}:{settings.smtp.port} accepted the login")
    for mailbox in settings.mailboxes:
        with imap_session(mailbox) as connection:
            for folder in filter(None, [mailbox.folder, mailbox.sent_folder]):
                status = connection.select(folder)
                print(f"mailbox {mailbox.name}: {folder} has {status.exists} messages")
    print(f"{settings.source}: OK")
    return EXIT_OK


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.service.database)
    db.upgrade()
    print(f"database schema at {db.schema_revision()}")
    return EXIT_OK


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    daemon.run(args.config, settings)
    return EXIT_OK


def cmd_poll(settings: Settings, args: argparse.Namespace) -> int:
    lock = lock_sqlite(settings.service.database)
    service = Service(settings, Database(settings.service.database), system_clock)
    service.prepare(exclusive=lock is not None)
    report = asyncio.run(service.run_once())
    print(f"logged {report.logged} new messages, escalated {len(report.sweep.escalated)} steps, "
          f"sent {report.outbox.sent} emails ({report.outbox.deferred} deferred, {report.outbox.failed} failed)")
    for name, error in report.failed_mailboxes.items():
        print(f"mailbox {name} failed: {error}", file=sys.stderr)
    return EXIT_FAILURE if report.failed_mailboxes else EXIT_OK


def cmd_threads(settings: Settings, args: argparse.Namespace) -> int:
    db = schema_ready(settings)
    with db.session() as session:
        threads = list_threads(session, open_only=args.open)
    if args.json:
        print(json.dumps([thread_json(thread) for thread in threads], indent=2))
    else:
        print(threads_table(threads, settings, system_clock()))
    return EXIT_OK


def cmd_thread(settings: Settings, args: argparse.Namespace) -> int:
    db = schema_ready(settings)
    service = Service(settings, db, system_clock)
    status = service.set_thread_status(args.ticket, args.action)
    print(f"{ticket_label(settings.service.ticket_prefix, args.ticket)}: {status}")
    return EXIT_OK


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    db = schema_ready(settings)
    now = system_clock()
    since = (datetime.combine(args.since, time(), settings.service.tz) if args.since
             else now - timedelta(days=7))
    with db.session() as session:
        report = build_report(session, since.astimezone(UTC), now, settings.sla.first_response)
    print(json.dumps(report.as_json(), indent=2) if args.json else report_text(report, settings))
    return EXIT_OK


def report_text(report: Report, settings: Settings) -> str:
    """The report for people."""
    def seconds(value: float | None) -> str:
        return rounded(timedelta(seconds=value)) if value is not None else "-"

    share = f"{100 * report.answered_within_sla / report.answered:.0f}%" if report.answered else "-"
    lines = [
        f"Since {human_time(report.since, settings.service.tz)}",
        f"Messages logged:       {sum(report.messages.values())}  " + _counts(report.messages),
        f"Conversations opened:  {report.threads_opened}, answered {report.answered}",
        f"First response:        median {seconds(report.first_response_median_s)}, "
        f"90% within {seconds(report.first_response_p90_s)}",
        f"Within the promise:    {report.answered_within_sla} of {report.answered} ({share}) "
        f"within {format_duration(settings.sla.first_response)}",
        f"Open now:              {report.open_now}, overdue {report.overdue_now}",
        f"Acknowledgments sent:  {report.acks_sent}; not sent: " + (_counts(report.acks_suppressed) or "none"),
        "Escalations:           " + (_counts(report.escalations) or "none"),
    ]
    return "\n".join(lines)


def _counts(counts: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def thread_json(thread: Thread) -> dict:
    """The `threads --json` object; times in ISO 8601 UTC."""
    return {
        "ticket": thread.id,
        "mailbox": thread.mailbox,
        "subject": thread.subject,
        "customer": thread.customer_address,
        "customer_name": thread.customer_name,
        "status": thread.status,
        "first_received_at": _iso(thread.first_received_at),
        "last_customer_at": _iso(thread.last_customer_at),
        "deadline_at": _iso(thread.deadline_at),
        "answered_at": _iso(thread.answered_at),
        "answered_via": thread.answered_via,
        "escalation_level": thread.escalation_level,
        "messages": thread.message_count,
    }


def threads_table(threads: Sequence[Thread], settings: Settings, now: datetime) -> str:
    """A table for people: local times, time left, subject cut to fit."""
    if not threads:
        return "no threads"
    tz = settings.service.tz
    rows = [("TICKET", "STATUS", "RECEIVED", "DEADLINE", "LEFT", "MSGS", "CUSTOMER", "SUBJECT")]
    for thread in threads:
        left = format_left(thread.deadline_at - now) if thread.deadline_at else "-"
        rows.append((
            ticket_label(settings.service.ticket_prefix, thread.id), thread.status,
            thread.first_received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            thread.deadline_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if thread.deadline_at else "-",
            left, str(thread.message_count), thread.customer_address, thread.subject[:60],
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows)


def format_left(left: timedelta) -> str:
    """Time left to the minute: '23h 59m', 'overdue 2h 5m'."""
    return f"overdue {rounded(left)}" if left < timedelta(0) else rounded(left)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "check": cmd_check,
    "db": cmd_db,
    "run": cmd_run,
    "poll": cmd_poll,
    "threads": cmd_threads,
    "thread": cmd_thread,
    "report": cmd_report,
}

if __name__ == "__main__":
    sys.exit(main())
