"""The `mailwatch` command line. The only place that turns errors into exit codes."""

import argparse
import asyncio
import getpass
import json
import os
import select
import shutil
import sys
import time as time_module
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import structlog

from mailwatch import __version__, daemon
from mailwatch.businesstime import time_left
from mailwatch.clock import iso_utc, system_clock
from mailwatch.config import Settings, default_config_path, load_settings
from mailwatch.db.engine import Database
from mailwatch.db.lock import lock_sqlite
from mailwatch.db.models import Thread, ThreadAction
from mailwatch.db.queries import actions_by_thread, escalations_sent, list_threads
from mailwatch.durations import rounded
from mailwatch.errors import ConfigError, MailwatchError, NoSuchThread, TemplateProblem
from mailwatch.imap import FolderStatus, ImapConnection
from mailwatch.links import action_link
from mailwatch.logs import configure_logging
from mailwatch.oauth2.client import DeviceCode
from mailwatch.oauth2.device import DeviceFlowEnded, device_login
from mailwatch.oauth2.signins import all_sign_ins, describe, imap_sign_in, smtp_sign_in
from mailwatch.oauth2.store import TokenStore
from mailwatch.oauth2.tokens import SignIn
from mailwatch.pipeline.actions import CLI_ACTOR
from mailwatch.policies import Policies, build_policies, ticket_label
from mailwatch.reports import build_period, build_report, render_text, scope_for
from mailwatch.reports.csv import write_csv
from mailwatch.reports.html import render_html
from mailwatch.reports.period import parse_when
from mailwatch.service import Service, ThreadChange
from mailwatch.sla import ThreadStatus, human_time
from mailwatch.templates import one_line
from mailwatch.wording import counted

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
EXIT_USAGE = 64  # sysexits' EX_USAGE: the command line itself is wrong (apart from 2, the configuration)
EXIT_CODES_HELP = """\
exit codes:
  0   success
  1   a server or the database failed (IMAP, SMTP, SQL); trying again may help
  2   the configuration or a template is wrong, or started as root without --allow-root
  3   `login`: the person signing in declined
  4   `login`: the code expired before anyone signed in
  64  the command line is wrong: an unknown option, a bad argument, no such ticket
"""
CONFIG_HELP = "TOML file (default: $MAILWATCH_CONFIG or /etc/mailwatch/mailwatch.toml)"
ALLOW_ROOT_ENV = "MAILWATCH_ALLOW_ROOT"  # "1" does what --allow-root does (containers that only run as root)
EXIT_DECLINED, EXIT_EXPIRED = 3, 4  # `mailwatch login`: the person said no, or nobody signed in in time


class _Parser(argparse.ArgumentParser):
    """argparse with mailwatch's usage exit code, so 2 keeps meaning "the configuration"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailwatch", description="Make sure no support email goes unanswered.",
                     epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--version", action="version", version=f"mailwatch {__version__}")
    parser.add_argument("--allow-root", action="store_true",
                        help=f"run even as root (not recommended; or {ALLOW_ROOT_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    check = _command(commands, "check", "validate the configuration and templates; without --offline "
                                        "also log in to IMAP and SMTP and reach the database")
    check.add_argument("--offline", action="store_true", help="validate without connecting anywhere")
    db = _command(commands, "db", "manage the database schema")
    _command(db.add_subparsers(dest="action", required=True, metavar="ACTION", title="actions"),
             "upgrade", "apply the Alembic migrations up to this version's schema")
    _command(commands, "run", "the daemon: watch, log, acknowledge and escalate until SIGTERM or SIGINT")
    _command(commands, "poll", "one full cycle (sync every mailbox, sweep, send), then exit")
    threads = _command(commands, "threads", "list conversations with their status, deadline and time left")
    threads.add_argument("--open", action="store_true", help="only open threads, most urgent first")
    threads.add_argument("--json", action="store_true", help="machine-readable output, times in UTC")
    report = _command(commands, "report", "volumes, response times, the SLA and top questions over a period")
    report.add_argument("--since", type=_when, help="YYYY-MM-DD (in service.timezone) or 7d, 30d back (default: 7d)")
    report.add_argument("--until", type=_when, help="YYYY-MM-DD, that day included, or 7d back (default: now)")
    report.add_argument("--mailbox", metavar="NAME", help="only this [[mailbox]]")
    output = report.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output, times in UTC")
    output.add_argument("--csv", type=Path, metavar="DIR", help="write one CSV file per table into DIR")
    output.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained HTML page")
    thread = _command(commands, "thread", "change one conversation by hand")
    link = _command(commands, "link", "print a fresh signed link to a conversation's page (needs [web])")
    link.add_argument("ticket", type=_ticket, metavar="TICKET", help="the ticket number, e.g. 1042 or #1042")
    link.add_argument("--to", type=_address, required=True, metavar="ADDRESS",
                      help="whose link it is: their address is recorded with what they do through it")
    _thread_actions(thread.add_subparsers(dest="action", required=True, metavar="ACTION", title="actions"))
    login = _command(commands, "login", "sign a mailbox (or SMTP) in with OAuth2, once: the device flow",
                     epilog="Exit codes: 0 signed in, 1 failed, 2 nothing to sign in, 3 declined, 4 code expired.")
    login.add_argument("mailbox", nargs="?", help="the [[mailbox]] name whose [mailbox.imap.oauth2] to sign in")
    login.add_argument("--smtp", action="store_true", help="sign in [smtp.oauth2] instead")
    login.add_argument("--status", action="store_true", help="list every OAuth2 sign-in and its state")
    return parser


def _command(commands: argparse._SubParsersAction, name: str, summary: str, epilog: str | None = None
             ) -> argparse.ArgumentParser:
    """A (sub)command with its one-line summary, accepting --config after its name too."""
    command = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                  epilog=epilog)
    # SUPPRESS: when given only before the command, the subcommand must not reset it to None.
    command.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return command


def _thread_actions(actions: argparse._SubParsersAction) -> None:
    for name, summary in THREAD_ACTIONS.items():
        action = _command(actions, name, summary)
        action.add_argument("ticket", type=_ticket, metavar="TICKET", help="the ticket number, e.g. 1042 or #1042")


# What each `mailwatch thread ACTION` does, as its help says.
THREAD_ACTIONS = {
    "answered": "stop the clock: staff answered another way (phone, another channel); no more escalations",
    "close": "end the conversation: nothing more is expected of staff, even if the customer writes again",
    "reopen": "start a new clock from now, as if the customer had just written again",
}


def _address(text: str) -> str:
    _name, address = parseaddr(text)
    if "@" not in address or any(char.isspace() for char in address):
        raise argparse.ArgumentTypeError(f"not an email address: {text!r}")
    return address.lower()


def _ticket(text: str) -> int:
    digits = text.lstrip("#[").rstrip("]")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a ticket number: {text!r}")
    return int(digits)


def _when(text: str) -> str:
    try:
        parse_when(text, UTC, system_clock())  # only the syntax is checked here
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or days back (7d): {text!r}") from None
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader that left shows up here or in a print
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        return _quiet_after_reader_left()
    return code


def _main(argv: Sequence[str] | None) -> int:
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
        # Printed once, here: the command's own log line would say the same again.
        print(exc if isinstance(exc, ConfigError) else f"mailwatch: {exc}", file=sys.stderr)
        return exit_code_for(exc)


def exit_code_for(exc: MailwatchError) -> int:
    """README's exit codes: 2 the configuration or a template, 64 the command line, 1 a server or database."""
    if isinstance(exc, ConfigError | TemplateProblem):
        return EXIT_CONFIG
    if isinstance(exc, NoSuchThread):
        return EXIT_USAGE
    return EXIT_FAILURE


def _stdout_reader_gone() -> bool:
    # Only a closed stdout is "the reader has what it wanted"; any other broken pipe is a bug.
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):
        return False
    return any(events & select.POLLERR for _fd, events in poller.poll(0))


def _quiet_after_reader_left() -> int:
    # `mailwatch threads | head -1`: not a failure. Point stdout at /dev/null so the
    # interpreter's last flush of what is still buffered cannot raise again at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


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
        where = f"{settings.smtp.host}:{settings.smtp.port}"
        # Without a username nobody logs in: saying "accepted the login" would claim a check never made.
        print(f"smtp: {where} accepted the login" if settings.smtp.username else
              f"smtp: {where} connected (no username configured, so no login tried)")
    for index, mailbox in enumerate(settings.mailboxes):
        check_mailbox(settings, service, index, mailbox)
    print(f"{settings.source}: OK")
    return EXIT_OK


def check_mailbox(settings: Settings, service: Service, index: int, mailbox) -> None:
    """Log in (by password or OAuth2) and open the watched and the Sent folder, printing how full each is."""
    with service.imap_session(mailbox) as connection:
        for key, folder in (("folder", mailbox.folder), ("sent_folder", mailbox.sent_folder)):
            if folder:
                status = select_folder(connection, f"{settings.source}: mailbox[{index}].{key}", folder,
                                       mailbox.imap.host)
                print(f"mailbox {mailbox.name}: {folder} has {counted(status.exists, 'message')}")


def select_folder(connection: ImapConnection, key: str, folder: str, host: str) -> FolderStatus:
    """SELECT `folder`; a folder the server does not have is a configuration error naming the key."""
    try:
        return connection.select(folder)
    except MailwatchError:
        folders = connection.list_folders()
        if folder in {name for name, _flags in folders}:
            raise  # it exists: the failure is the server's, not the configuration's
        raise ConfigError([f'{key}: no folder "{folder}" on {host}; the server has: {folder_list(folders)}']) from None


def folder_list(folders: list[tuple[str, tuple[str, ...]]]) -> str:
    """'INBOX, Sent (\\Sent), Drafts': the special-use flag marks the folder meant for sent mail."""
    marked = [name + (r" (\Sent)" if "\\Sent" in flags else "") for name, flags in folders]
    return ", ".join(marked) or "no folders at all"


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
    print(poll_summary(report))
    return EXIT_FAILURE if report.failed_mailboxes else EXIT_OK


def poll_summary(report) -> str:
    """'logged 1 new message, escalated 1 step, sent 1 email (0 deferred, 0 failed)'."""
    outbox = report.outbox
    text = (f"logged {counted(report.logged, 'new message')}, escalated {counted(len(report.sweep.escalated), 'step')}, "
            f"sent {counted(outbox.sent, 'email')} ({outbox.deferred} deferred, {outbox.failed} failed)")
    # Each failure's error is already in the log (mailbox_sync_failed); name the mailboxes only.
    failed = report.failed_mailboxes
    return text + (f"; {counted(len(failed), 'mailbox', 'mailboxes')} failed: {', '.join(failed)}" if failed else "")


def cmd_threads(settings: Settings, args: argparse.Namespace) -> int:
    db = schema_ready(settings)
    with db.session() as session:
        threads = list_threads(session, open_only=args.open)
        sent = escalations_sent(session) if args.json else {}
        actions = actions_by_thread(session) if args.json else {}
    policies = build_policies(settings)
    if args.json:
        print(json.dumps([thread_json(thread, policies, sent.get(thread.id, 0), actions.get(thread.id, ()))
                          for thread in threads], indent=2))
    else:
        print(threads_table(threads, settings, system_clock(), terminal_width(), policies))
    return EXIT_OK


def cmd_thread(settings: Settings, args: argparse.Namespace) -> int:
    db = schema_ready(settings)
    service = Service(settings, db, system_clock)
    change = service.set_thread_status(args.ticket, args.action, local_actor())
    print(f"{ticket_label(settings.service.ticket_prefix, args.ticket)}: {thread_change_text(change, settings)}")
    return EXIT_OK


def local_actor() -> str:
    """Who acts from this shell, for the thread's action log: "cli:<login>"."""
    try:
        return f"{CLI_ACTOR}{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"{CLI_ACTOR}uid{os.getuid()}"


def cmd_link(settings: Settings, args: argparse.Namespace) -> int:
    if settings.web is None:
        raise ConfigError([f"{settings.source}: web: not configured: `link` needs a [web] table with base_url "
                           "and a signing key"])
    db = schema_ready(settings)
    with db.session() as session:
        thread = session.get(Thread, args.ticket)
        if thread is None:
            raise NoSuchThread(f"no thread with ticket {args.ticket}")
        clock = thread.clock
    print(action_link(settings.web, args.ticket, clock, args.to, system_clock()))
    return EXIT_OK


def thread_change_text(change: ThreadChange, settings: Settings) -> str:
    """'answered', or why nothing changed: 'already answered at … via sent-folder by alice@…'."""
    if change.changed:
        return change.status
    if change.status == ThreadStatus.ANSWERED:
        at = human_time(change.answered_at, settings.service.tz)
        return f"already answered at {at} {answered_how(change.answered_via, change.answered_by)}"
    return f"already {change.status}"


def answered_how(via: str | None, by: str | None) -> str:
    """'via sent-folder by alice@acme.example', 'via command'."""
    return f"via {via}" + (f" by {by}" if by else "")


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


def thread_json(thread: Thread, policies: Policies | None = None, escalations: int = 0,
                actions: Sequence[ThreadAction] = ()) -> dict:
    """The `threads --json` object; times in ISO 8601 UTC ('Z'), `clock` the deadline's clock."""
    clock = policies.for_mailbox(thread.mailbox).clock.label if policies else "elapsed"
    taken = thread.taken_now()  # a take belongs to its clock: a new customer message ends it
    return {
        "ticket": thread.id,
        "mailbox": thread.mailbox,
        "subject": thread.subject,
        "customer": thread.customer_address,
        "customer_name": thread.customer_name,
        "status": thread.status,
        "first_received_at": iso_utc(thread.first_received_at),
        "last_customer_at": iso_utc(thread.last_customer_at),
        "deadline_at": iso_utc(thread.deadline_at),
        "clock": clock,
        "answered_at": iso_utc(thread.answered_at),
        "answered_via": thread.answered_via,
        "answered_auth": thread.answered_auth,  # "dmarc", "dkim", "microsoft365", "imap-login", …
        "answered_by": thread.answered_by,
        "escalation_level": thread.escalation_level,  # steps passed, skipped ones included
        "escalations_sent": escalations,  # steps that went out by email, this clock
        "messages": thread.message_count,
        "taken_by": taken[0] if taken else None,
        "taken_at": iso_utc(taken[1]) if taken else None,
        "snoozed_until": iso_utc(thread.snoozed_now()),
        "actions": [{"action": action.action, "actor": action.actor, "at": iso_utc(action.at), "note": action.note,
                     "until": iso_utc(action.until)} for action in actions],
    }


# Columns that give way, in this order and down to these widths, when the table is wider
# than the terminal; tickets, statuses and times are never cut.
SHRINKABLE_COLUMNS = {"SUBJECT": 12, "CUSTOMER": 16, "ANSWERED": 12}
# Left out, in this order, when even the cut columns do not fit (80 columns keep the rest).
DROPPABLE_COLUMNS = ("MSGS", "RECEIVED", "ANSWERED")
THREAD_COLUMNS = ("TICKET", "STATUS", "RECEIVED", "DEADLINE", "LEFT", "MSGS", "CUSTOMER", "ANSWERED", "SUBJECT")
COLUMN_GAP = "  "


def terminal_width() -> int | None:
    """The terminal's columns ($COLUMNS wins); None when stdout is no terminal (a pipe, a file)."""
    columns = shutil.get_terminal_size((0, 0)).columns
    return columns or None


def threads_table(threads: Sequence[Thread], settings: Settings, now: datetime, width: int | None = None,
                  policies: Policies | None = None) -> str:
    """A table for people: local times in a named zone, time left (business time on a calendar),
    who answered, fitted to `width`."""
    if not threads:
        return "no threads"
    policies = policies or build_policies(settings)
    zones = {str(policies.for_mailbox(thread.mailbox).branding.tz) for thread in threads}
    # One zone (the usual case) is named once above the table; mailboxes in different
    # zones (a calendar of their own) put the zone's abbreviation beside each time.
    stamp = "%Y-%m-%d %H:%M" if len(zones) == 1 else "%Y-%m-%d %H:%M %Z"
    rows = [dict(zip(THREAD_COLUMNS, _thread_row(thread, settings, now, policies, stamp), strict=True))
            for thread in threads]
    natural = {name: max(len(name), *(len(row[name]) for row in rows)) for name in THREAD_COLUMNS}
    widths = fit_widths(natural, width)
    lines = [COLUMN_GAP.join(cut(row[name], w).ljust(w) for name, w in widths.items()).rstrip()
             for row in [{name: name for name in THREAD_COLUMNS}, *rows]]
    if len(zones) == 1:
        tz = policies.for_mailbox(threads[0].mailbox).branding.tz
        zone = f"Times in {zones.pop()}; now {now.astimezone(tz):%Y-%m-%d %H:%M %Z}"
    else:
        tz = settings.service.tz
        zone = f"Times in each mailbox's zone; now {now.astimezone(tz):%Y-%m-%d %H:%M %Z} ({settings.service.timezone})"
    return "\n".join([cut(zone, width or len(zone)), *lines])


def _thread_row(thread: Thread, settings: Settings, now: datetime, policies: Policies, stamp: str) -> tuple[str, ...]:
    own = policies.for_mailbox(thread.mailbox)
    tz, calendar = own.branding.tz, own.clock.calendar  # the mailbox's local time and clock
    # A reopened thread's old answer is not an answer to what the customer now waits for.
    answered = thread.answered_via and thread.status != ThreadStatus.OPEN
    return (
        ticket_label(settings.service.ticket_prefix, thread.id), thread.status,
        thread.first_received_at.astimezone(tz).strftime(stamp),
        thread.deadline_at.astimezone(tz).strftime(stamp) if thread.deadline_at else "-",
        format_left(time_left(now, thread.deadline_at, calendar)) if thread.deadline_at else "-",
        str(thread.message_count), thread.customer_address,
        answered_how(thread.answered_via, thread.answered_by) if answered else "-", one_line(thread.subject),
    )


def fit_widths(natural: dict[str, int], limit: int | None) -> dict[str, int]:
    """The columns to show and their widths: cut the shrinkable ones, then leave out droppable ones."""
    widths = dict(natural)
    for dropped in (None, *DROPPABLE_COLUMNS):
        widths.pop(dropped, None)
        fitted = _narrowed(widths, limit)
        if limit is None or _table_width(fitted) <= limit:
            return fitted
    return fitted


def _narrowed(widths: dict[str, int], limit: int | None) -> dict[str, int]:
    fitted = dict(widths)
    excess = _table_width(fitted) - limit if limit else 0
    for name, minimum in SHRINKABLE_COLUMNS.items():
        if name in fitted and excess > 0:
            cut_by = max(0, min(excess, fitted[name] - minimum))
            fitted[name] -= cut_by
            excess -= cut_by
    return fitted


def _table_width(widths: dict[str, int]) -> int:
    return sum(widths.values()) + len(COLUMN_GAP) * (len(widths) - 1)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


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
    "link": cmd_link,
    "report": cmd_report,
    "login": cmd_login,
}

if __name__ == "__main__":
    sys.exit(main())
