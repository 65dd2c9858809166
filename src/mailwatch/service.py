"""The cycle: sync each mailbox's folders, sweep for escalations, send the outbox.

`Service` composes the adapters; it knows nothing of signals or schedules, so
`mailwatch poll`, the daemon and the tests all drive the same code.
"""

import asyncio
import dataclasses
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, time

import structlog
from sqlalchemy.exc import IntegrityError

from mailwatch.clock import Clock
from mailwatch.config import MailboxSettings, Settings
from mailwatch.db.engine import Database
from mailwatch.db.models import Thread
from mailwatch.errors import TransientError
from mailwatch.imap import ImapConnection, ImapEndpoint
from mailwatch.mail.rules import Identity
from mailwatch.oauth2.signins import all_sign_ins, describe, imap_sign_in, smtp_sign_in
from mailwatch.oauth2.store import TokenStore
from mailwatch.oauth2.tokens import Bearer, SignIn
from mailwatch.pipeline.actions import CLI_ACTOR, Action, apply_action
from mailwatch.pipeline.acks import Acknowledger, sample_context
from mailwatch.pipeline.alerts import Notice, notice_context, queue_notice, sample_notice
from mailwatch.pipeline.escalations import (
    Escalator,
    SweepReport,
    announce_sweep,
    realign_schedule,
    sample_escalation_context,
)
from mailwatch.pipeline.ingest import FolderContext, Logged
from mailwatch.pipeline.outbox import DrainReport, Outbox, RetryPolicy
from mailwatch.pipeline.sync import FolderReport, FolderSync
from mailwatch.pipeline.threads import ticket_pattern
from mailwatch.pipeline.weekly import Schedule, WeeklyReport, queue_weekly_report
from mailwatch.policies import build_policies
from mailwatch.reports import scope_for
from mailwatch.smtp import SmtpEndpoint, SmtpSender
from mailwatch.templates import Templates
from mailwatch.tls import tls_context

log = structlog.get_logger(__name__)


@dataclass
class CycleReport:
    folders: list[FolderReport] = field(default_factory=list)
    failed_mailboxes: dict[str, str] = field(default_factory=dict)
    sweep: SweepReport = field(default_factory=SweepReport)
    outbox: DrainReport = field(default_factory=DrainReport)

    @property
    def logged(self) -> int:
        return sum(report.logged for report in self.folders)


@dataclass(frozen=True)
class ThreadChange:
    """What `mailwatch thread …` found or did; the answer's facts say who stopped the clock."""

    ticket: int
    status: str
    changed: bool
    answered_at: datetime | None
    answered_via: str | None
    answered_by: str | None


def retry_policy(settings: Settings) -> RetryPolicy:
    smtp = settings.smtp
    return RetryPolicy(initial=smtp.retry_initial, maximum=smtp.retry_max, give_up_after=smtp.give_up_after)


def imap_endpoint(mailbox: MailboxSettings, bearer: Bearer | None = None) -> ImapEndpoint:
    imap = mailbox.imap
    return ImapEndpoint(
        host=imap.host, port=imap.port, security=imap.security, username=imap.username,
        timeout_s=imap.timeout.total_seconds(), ca_file=imap.ca_file,
        auth_hint=bearer.sign_in.remedy if bearer else "",
    )


def open_imap(mailbox: MailboxSettings, bearer: Bearer | None = None) -> ImapConnection:
    """A logged-in connection to a mailbox's IMAP server (XOAUTH2 when given its sign-in's bearer)."""
    if bearer is not None:
        connection = ImapConnection(imap_endpoint(mailbox, bearer), bearer=bearer, clock=bearer.clock)
    else:
        connection = ImapConnection(imap_endpoint(mailbox), mailbox.imap.password.reveal())
    connection.open()
    return connection


@contextmanager
def imap_session(mailbox: MailboxSettings, bearer: Bearer | None = None) -> Iterator[ImapConnection]:
    """A logged-in connection, logged out afterwards whatever happens."""
    connection = open_imap(mailbox, bearer)
    try:
        yield connection
    finally:
        connection.close()


def _async_bearer(bearer: Bearer):
    # The token store and the token endpoint block: keep them off the event loop.
    async def token(refused: bool) -> str:
        value, _expires_at = await asyncio.to_thread(bearer, refused)
        return value

    return token


class Service:
    """Everything mailwatch does, one pass at a time."""

    def __init__(self, settings: Settings, db: Database, clock: Clock,
                 on_commit: Callable[[list[Logged]], None] | None = None) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.policies = policies = build_policies(settings)
        self.identity = Identity(
            own_addresses=settings.own_addresses,
            staff=tuple(settings.service.staff),
            own_message_id_domains=frozenset(self._own_domains()),
            authserv_ids=settings.service.authserv_ids,
            trust_unauthenticated_staff=settings.service.trust_unauthenticated_staff,
        )
        self.policy = policies.clock
        self.ticket_tag = ticket_pattern(settings.service.ticket_prefix)
        self.templates = Templates(settings.service.templates)
        self.folders = FolderSync(db, clock, on_commit=on_commit)
        sends = settings.smtp is not None
        self.acknowledgers = {mailbox.name: self._acknowledger(mailbox.name) for mailbox in settings.mailboxes} if sends else {}
        self.acknowledger = self.acknowledgers.get(settings.mailboxes[0].name)  # the first, for `check`
        self.escalator = Escalator(policies.escalation, policies.branding, self.templates,
                                   settings.web) if sends else None
        self.outbox = Outbox(db, self.smtp_sender, clock, retry_policy(settings)) if settings.smtp else None
        self._smtp_tls: ssl.SSLContext | None = None
        self.tokens = TokenStore(db)

    def _acknowledger(self, mailbox: str) -> Acknowledger:
        # Each mailbox acks with its own promise, branding and (optionally) templates.
        own = self.policies.for_mailbox(mailbox)
        templates = Templates(own.ack.templates) if own.ack.templates else self.templates
        return Acknowledger(own.ack, own.branding, templates, self.ticket_tag)

    def _own_domains(self) -> set[str]:
        domains = {address.rsplit("@", 1)[-1] for address in self.settings.own_addresses}
        if self.settings.smtp is not None:
            domains.add(self.settings.smtp.from_domain)
        return domains

    def smtp_sender(self) -> SmtpSender:
        """A new, unconnected SMTP session for the configured server."""
        smtp = self.settings.smtp
        endpoint = SmtpEndpoint(host=smtp.host, port=smtp.port, security=smtp.security, username=smtp.username,
                                timeout_s=smtp.timeout.total_seconds(), ca_file=smtp.ca_file)
        if self._smtp_tls is None and smtp.security != "none":
            self._smtp_tls = tls_context(smtp.ca_file)  # one CA store load, not one per connection
        sign_in = smtp_sign_in(self.settings, self.tokens)
        if sign_in is not None:
            endpoint = dataclasses.replace(endpoint, auth_hint=sign_in.remedy)
            return SmtpSender(endpoint, tls_context=self._smtp_tls, bearer=_async_bearer(Bearer(sign_in, self.clock)))
        return SmtpSender(endpoint, smtp.password.reveal() if smtp.password else None, self._smtp_tls)

    def sign_in_problems(self) -> list[str]:
        """OAuth2 sign-ins that need a person, each with what to run (for /healthz and systemctl status)."""
        problems = []
        for sign_in in all_sign_ins(self.settings, self.tokens):
            ok, text = describe(sign_in, self.clock(), lambda value: value.isoformat(timespec="seconds"))
            if not ok:
                problems.append(f"{sign_in.label}: {text}")
        return problems

    def imap_sign_in(self, mailbox: MailboxSettings) -> SignIn | None:
        """The OAuth2 sign-in a mailbox logs in with, if any."""
        return imap_sign_in(mailbox, self.tokens)

    def open_imap(self, mailbox: MailboxSettings) -> ImapConnection:
        """A logged-in connection to the mailbox, by password or by its OAuth2 sign-in."""
        return open_imap(mailbox, self._imap_bearer(mailbox))

    def imap_session(self, mailbox: MailboxSettings) -> AbstractContextManager[ImapConnection]:
        """`imap_session` with the mailbox's OAuth2 sign-in, if it has one."""
        return imap_session(mailbox, self._imap_bearer(mailbox))

    def _imap_bearer(self, mailbox: MailboxSettings) -> Bearer | None:
        sign_in = self.imap_sign_in(mailbox)
        return Bearer(sign_in, self.clock) if sign_in is not None else None

    def prepare(self, exclusive: bool = False) -> None:
        """Create or check the schema and align stored escalation times with the config.

        `exclusive`: no other process can be sending (we hold the SQLite lock), so leases
        left by a killed process are released and its claimed mail goes out at once.
        """
        self.db.ensure_schema()
        self.realign()
        if exclusive and self.outbox is not None:
            self.outbox.release_claims()

    def realign(self) -> None:
        """Recompute open threads' deadlines and next escalation times if a step, calendar or policy changed."""
        with self.db.session() as session:
            realign_schedule(session, self.policies.escalation)

    async def run_once(self) -> CycleReport:
        """One full pass: every mailbox (a failing one never stops the others), sweep, send."""
        report = CycleReport()
        results = await asyncio.gather(
            *(asyncio.to_thread(self.sync_mailbox, mailbox) for mailbox in self.settings.mailboxes),
            return_exceptions=True,
        )
        for mailbox, result in zip(self.settings.mailboxes, results, strict=True):
            if isinstance(result, BaseException):
                report.failed_mailboxes[mailbox.name] = str(result)
                log.error("mailbox_sync_failed", mailbox=mailbox.name, error=str(result),
                          exc_info=not isinstance(result, TransientError))
            else:
                report.folders.extend(result)
        report.sweep = await asyncio.to_thread(self.sweep)
        report.outbox = await self.drain_outbox()
        return report

    def folder_context(self, mailbox: MailboxSettings, folder: str, sent: bool = False) -> FolderContext:
        """How messages of one folder are recorded (uidvalidity is filled in on SELECT)."""
        acks = self.acknowledgers.get(mailbox.name) if self.settings.acknowledgment.enabled and not sent else None
        clock = self.policies.for_mailbox(mailbox.name).clock
        return FolderContext(mailbox.name, folder, 0, self.identity, self.ticket_tag, clock,
                             acknowledger=acks, sent_folder=sent,
                             backlog_age=self.settings.acknowledgment.max_age)

    def sync_mailbox(self, mailbox: MailboxSettings) -> list[FolderReport]:
        """Sync a mailbox's watched folder and Sent folder (blocking: runs in a thread)."""
        with self.imap_session(mailbox) as connection:
            return [self.sync_inbox(connection, mailbox), *self.sync_sent(connection, mailbox)]

    def sync_inbox(self, connection: ImapConnection, mailbox: MailboxSettings,
                   stop: threading.Event | None = None) -> FolderReport:
        """New messages and changed flags of the watched folder, on an open connection."""
        return self.folders.run(connection, self.folder_context(mailbox, mailbox.folder), True, stop)

    def sync_sent(self, connection: ImapConnection, mailbox: MailboxSettings,
                  stop: threading.Event | None = None) -> list[FolderReport]:
        """Staff replies filed in the Sent folder, if the mailbox names one."""
        if not mailbox.sent_folder:
            return []
        sent = self.folder_context(mailbox, mailbox.sent_folder, sent=True)
        return [self.folders.run(connection, sent, False, stop)]

    def release_acks(self, now: datetime | None = None) -> int:
        """Let held acknowledgments go out as the hourly budget allows."""
        if self.acknowledger is None:
            return 0
        try:
            with self.db.session() as session:
                return self.acknowledger.release_held(session, now or self.clock())
        except IntegrityError:
            # Another instance noted the hour's cap event at the same moment; the next sweep releases.
            log.info("ack_release_conflict_skipped")
            return 0

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """Queue escalations for every thread whose next step is due at `now` (and release held acks)."""
        now = now or self.clock()
        self.release_acks(now)
        if self.escalator is None or not self.policies.escalation.escalates:
            return SweepReport()
        try:
            with self.db.session() as session:
                report = self.escalator.sweep(session, now)
        except IntegrityError:
            # Another instance escalated the same step first; its mail is the one that goes.
            log.info("sweep_conflict_skipped")
            return SweepReport()
        announce_sweep(report)
        return report

    async def drain_outbox(self, stop: asyncio.Event | None = None, queued: asyncio.Event | None = None) -> DrainReport:
        """Send whatever the outbox holds that is due (a round at a time until `stop`; see `Outbox.drain`)."""
        return await self.outbox.drain(stop, queued) if self.outbox else DrainReport()

    def kept_smtp_connections(self) -> AbstractAsyncContextManager[None]:
        """Keep the outbox's SMTP connections open from drain to drain; closed when the block ends."""
        return self.outbox.kept_connections() if self.outbox else nullcontext()

    def check_templates(self) -> list[str]:
        """Render every template against a sample; the problems found (file: line: reason)."""
        if self.acknowledger is None or self.escalator is None:
            return []
        now = self.clock()
        problems = self.templates.check({
            "ack": sample_context(self.acknowledger, now),
            "escalation": sample_escalation_context(self.escalator, self.settings.mailboxes[0].name, now),
            "alert": notice_context(self.policies.branding, sample_notice(now)),
        })
        for acknowledger in self.acknowledgers.values():  # a mailbox's own templates folder, if it has one
            if acknowledger.templates is not self.templates:
                problems += acknowledger.templates.check({"ack": sample_context(acknowledger, now)})
        return problems

    def queue_notice(self, notice: Notice) -> int:
        """Queue an alert or recovery email about mailwatch itself."""
        with self.db.session() as session:
            policies = self.policies
            return queue_notice(session, policies.branding, policies.alert_recipients, self.templates, notice,
                                self.clock())

    def queue_weekly_report(self, now: datetime | None = None) -> int:
        """Queue the weekly report email for each week due at `now` and not queued yet; how many weeks."""
        report = self.settings.report
        if not report.to or self.settings.smtp is None:
            return 0
        hour, minute = report.at_hour_minute
        weekly = WeeklyReport(Schedule(report.weekday, time(hour, minute), self.settings.service.tz), report.to,
                              self.policies.branding, lambda period: scope_for(self.settings, period))
        try:
            with self.db.session() as session:
                return len(queue_weekly_report(session, weekly, now or self.clock()))
        except IntegrityError:
            log.info("weekly_report_conflict_skipped")  # another instance queued the same week first
            return 0

    async def check_smtp(self) -> None:
        """Connect and log in to the SMTP server, or raise saying why not."""
        async with self.smtp_sender():
            pass

    def set_thread_status(self, ticket: int, action: str, actor: str = CLI_ACTOR) -> ThreadChange:
        """`mailwatch thread answered|close|reopen`: the thread's status now, and whether it changed."""
        with self.db.session() as session:
            result = apply_action(session, self.policies, ticket, Action(action), actor, self.clock())
            thread = session.get(Thread, ticket)
            change = ThreadChange(ticket, thread.status, result.changed, thread.answered_at, thread.answered_via,
                                  thread.answered_by)
        if result.changed:
            log.info("thread_changed", thread=ticket, action=action, status=change.status)  # committed
        return change
