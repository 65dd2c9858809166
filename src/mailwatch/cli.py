"""The `mailwatch` command line. The only place that turns errors into exit codes."""

import argparse
import asyncio
import json
import os
import sys
import time as time_module
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from mailwatch import __version__, daemon
from mailwatch.businesstime import time_left
from mailwatch.clock import system_clock
from mailwatch.config import Settings, default_config_path, load_settings
from mailwatch.db.engine import Database
from mailwatch.db.lock import lock_sqlite
from mailwatch.db.models import Thread
from mailwatch.db.queries import list_threads
from mailwatch.durations import rounded
from mailwatch.errors import ConfigError, MailwatchError
from mailwatch.logs import configure_logging
from mailwatch.oauth2.client import DeviceCode
from mailwatch.oauth2.device import DeviceFlowEnded, device_login
from mailwatch.oauth2.signins import all_sign_ins, describe, imap_sign_in, smtp_sign_in
from mailwatch.oauth2.store import TokenStore
from mailwatch.oauth2.tokens import SignIn
from mailwatch.policies import Policies, build_policies, ticket_label
from mailwatch.reports import build_period, build_report, render_text, scope_for
from mailwatch.reports.csv import write_csv
from mailwatch.reports.html import render_html
from mailwatch.reports.period import parse_when
from mailwatch.service import Service
from mailwatch.sla import human_time

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
ALLOW_ROOT_ENV = "MAILWATCH_ALLOW_ROOT"  # "1" does what --allow-root does (containers that only run as root)
EXIT_DECLINED, EXIT_EXPIRED = 3, 4  # `mailwatch login`: the person said no, or nobody signed in in time


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailwatch", description="Make sure no support email goes unanswered.")
    parser.add_argument("--config", type=Path, help="TOML file (default: $MAILWATCH_CONFIG or /etc/mailwatch/mailwatch.toml)")
    parser.add_argument("--version", action="version", version=f"mailwatch {__version__}")
    parser.add_argument("--allow-root", action="store_true", help="run even as root (not recommended)")
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
    report.add_argument("--since", type=_when, help="YYYY-MM-DD (in service.timezone) or 7d, 30d back (default: 7d)")
    report.add_argument("--until", type=_when, help="YYYY-MM-DD, that day included, or 7d back (default: now)")
    report.add_argument("--mailbox", metavar="NAME", help="only this [[mailbox]]")
    output = report.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--csv", type=Path, metavar="DIR", help="write one CSV file per table into DIR")
    output.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained HTML page")
    thread = commands.add_parser("thread", help="change one thread by hand")
    thread.add_argument("action", choices=["answered", "close", "reopen"])
    thread.add_argument("ticket", type=_ticket)
    login = commands.add_parser(
        "login", help="sign a mailbox (or SMTP) in with OAuth2, once: the device flow",
        epilog="Exit codes: 0 signed in, 1 failed, 2 nothing to sign in, 3 declined, 4 code expired.")
    login.add_argument("mailbox", nargs="?", help="the [[mailbox]] name whose [mailbox.imap.oauth2] to sign in")
    login.add_argument("--smtp", action="store_true", help="sign in [smtp.oauth2] instead")
    login.add_argument("--status", action="store_true", help="list every OAuth2 sign-in and its state")
    return parser


def _ticket(text: str) -> int:
    digits = text.lstrip("#[").rstrip("]")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a ticket number: {text!r}")
    return int(digits)


def _when(text: str) -> str:
    try:
        parse_when(text, UTC, datetime.now(UTC))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or days back (7d): {text!r}") from None
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if refused_as_root(args.allow_root, os.geteuid(), os.environ):
        print("mailwatch: refusing to run as root: it parses mail anyone can send and needs no privileges; "
              "run it as its own user (deploy/mailwatch.service does) or pass --allow-root", file=sys.stderr)
        return EXIT_CONFIG
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


def refused_as_root(allow_root: bool, euid: int, environ: Mapping[str, str]) -> bool:
    """Whether to refuse: root, and neither --allow-root nor MAILWATCH_ALLOW_ROOT=1 said otherwise."""
    return euid == 0 and not allow_root and environ.get(ALLOW_ROOT_ENV) != "1"


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
    for mailbox in settings.mailboxes:
        print(service.policies.describe(mailbox.name))
    if args.offline:
        print(f"{settings.source}: OK")
        return EXIT_OK
    db.ping()
    print(f"database: reachable (schema {db.schema_revision() or 'empty'})")
    if not check_sign_ins(settings, service.tokens, db.schema_revision() == db.head_revision()):
        return EXIT_FAILURE
    if settings.smtp is not None:
        asyncio.run(service.check_smtp())
        print(f"smtp: {settings.smtp.host}:{settings.smtp.port} accepted the login")
    for mailbox in settings.mailboxes:
        with service.imap_session(mailbox) as connection:
            for folder in filter(None, [mailbox.folder, mailbox.sent_folder]):
                status = connection.select(folder)
                print(f"mailbox {mailbox.name}: {folder} has {status.exists} messages")
    print(f"{settings.source}: OK")
    return EXIT_OK


def check_sign_ins(settings: Settings, store: TokenStore, schema_current: bool = True) -> bool:
    """Print each OAuth2 sign-in's state; False if one needs a person."""
    usable = True
    for sign_in in all_sign_ins(settings, store):
        if schema_current:
            ok, text = describe(sign_in, system_clock(), lambda value: human_time(value, settings.service.tz))
        else:  # no token table yet, so nobody has signed in
            ok, text = sign_in.app_only, "not signed in" + ("" if sign_in.app_only else f"; {sign_in.remedy}")
        print(f"{sign_in.label}: {text}", file=sys.stdout if ok else sys.stderr)
        usable = usable and ok
    return usable


def cmd_login(settings: Settings, args: argparse.Namespace) -> int:
    store = TokenStore(schema_ready(settings))
    if args.status:
        if not all_sign_ins(settings, store):
            print("no OAuth2 sign-ins configured (auth = \"oauth2\")")
        return EXIT_OK if check_sign_ins(settings, store) else EXIT_FAILURE
    sign_in, problem = chosen_sign_in(settings, store, args.mailbox, args.smtp)
    if sign_in is None:
        print(f"mailwatch login: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if sign_in.app_only:
        token = sign_in.access_token(system_clock())
        print(f"{sign_in.label}: app-only sign-in needs no login; a token was fetched, valid until "
              f"{human_time(token.expires_at, settings.service.tz)}")
        return EXIT_OK
    try:
        grant = device_login(sign_in, lambda device: show_device_code(sign_in, device, settings),
                             system_clock, time_module.sleep)
    except DeviceFlowEnded as exc:
        print(f"mailwatch login: {exc}", file=sys.stderr)
        return EXIT_DECLINED if exc.outcome == "denied" else EXIT_EXPIRED
    refresh = "a refresh token is stored" if grant.refresh_token else "no refresh token came (offline_access?)"
    print(f"{sign_in.label}: signed in as {grant.account or settings_username(settings, sign_in)}; access token "
          f"valid until {human_time(grant.expires_at, settings.service.tz)}, {refresh}. "
          "A running daemon picks this up by itself.")
    return EXIT_OK


def chosen_sign_in(settings: Settings, store: TokenStore, name: str | None,
                   smtp: bool) -> tuple[SignIn | None, str]:
    """The sign-in `login MAILBOX [--smtp]` means, or None and why not."""
    if smtp:
        sign_in = smtp_sign_in(settings, store)
        return sign_in, "" if sign_in else "[smtp] does not use auth = \"oauth2\""
    if name is None:
        return None, "name a mailbox (mailwatch login MAILBOX), or give --smtp or --status"
    try:
        mailbox = settings.mailbox(name)
    except KeyError:
        names = ", ".join(m.name for m in settings.mailboxes)
        return None, f"no [[mailbox]] named {name!r} (there are: {names})"
    sign_in = imap_sign_in(mailbox, store)
    return sign_in, "" if sign_in else f"mailbox {name} logs in with a password (auth = \"password\")"


def settings_username(settings: Settings, sign_in: SignIn) -> str:
    """The configured account of a sign-in, for when the provider does not say who signed in."""
    if sign_in.key == "smtp" and settings.smtp is not None:
        return settings.smtp.username or "?"
    return settings.mailbox(sign_in.key.removeprefix("mailbox:")).imap.username


def show_device_code(sign_in: SignIn, device: DeviceCode, settings: Settings) -> None:
    """What the person signing in needs: where to go and which code to type."""
    print(f"To sign in {sign_in.label} with {sign_in.provider_name}, open {device.verification_uri}")
    print(f"and enter the code {device.user_code}")
    if device.verification_uri_complete:
        print(f"(or open {device.verification_uri_complete}, which has the code in it)")
    print(f"The code works until {human_time(device.expires_at, settings.service.tz)}. Waiting for you…", flush=True)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.service.database)
    db.upgrade()
    print(f"database schema at {db.schema_revision()}")
    return EXIT_OK


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    daemon.run(args.config, settings, clock=system_clock)
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
    policies = build_policies(settings)
    if args.json:
        print(json.dumps([thread_json(thread, policies) for thread in threads], indent=2))
    else:
        print(threads_table(threads, settings, system_clock(), policies))
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
    tz = settings.service.tz
    try:
        period = build_period(args.since, args.until, tz, now)
    except ValueError as exc:
        raise MailwatchError(str(exc)) from None
    with db.session() as session:
        report = build_report(session, scope_for(settings, period, args.mailbox), now)
    if args.csv:
        print("\n".join(str(path) for path in write_csv(report, args.csv)))
    elif args.html:
        args.html.write_text(render_html(report, tz), encoding="utf-8")
        print(args.html)
    else:
        print(json.dumps(report, indent=2) if args.json else render_text(report, tz))
    return EXIT_OK


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def thread_json(thread: Thread, policies: Policies | None = None) -> dict:
    """The `threads --json` object; times in ISO 8601 UTC, `clock` the deadline's clock."""
    clock = policies.for_mailbox(thread.mailbox).clock.label if policies else "elapsed"
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
        "clock": clock,
        "answered_at": _iso(thread.answered_at),
        "answered_via": thread.answered_via,
        "answered_auth": thread.answered_auth,  # "dmarc", "dkim", "microsoft365", "imap-login", …
        "answered_by": thread.answered_by,
        "escalation_level": thread.escalation_level,
        "messages": thread.message_count,
    }


def threads_table(threads: Sequence[Thread], settings: Settings, now: datetime,
                  policies: Policies | None = None) -> str:
    """A table for people: local times, time left (business time on a calendar), subject cut to fit."""
    if not threads:
        return "no threads"
    policies = policies or build_policies(settings)
    rows = [("TICKET", "STATUS", "RECEIVED", "DEADLINE", "LEFT", "MSGS", "CUSTOMER", "SUBJECT")]
    for thread in threads:
        own = policies.for_mailbox(thread.mailbox)
        tz, calendar = own.branding.tz, own.clock.calendar  # the mailbox's local time and clock
        left = format_left(time_left(now, thread.deadline_at, calendar)) if thread.deadline_at else "-"
        rows.append((
            ticket_label(settings.service.ticket_prefix, thread.id), thread.status,
            thread.first_received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            thread.deadline_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if thread.deadline_at else "-",
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
    "login": cmd_login,
}

if __name__ == "__main__":
    sys.exit(main())
