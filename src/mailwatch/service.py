"""The cycle: ingest each mailbox's folders, then (later stages) acks and escalations.

`Service` composes the adapters; it knows nothing of signals or schedules, so
`mailwatch poll`, the daemon and the tests all drive the same code.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mailwatch.config import MailboxSettings, Settings
from mailwatch.db.engine import Database
from mailwatch.db.models import FolderState, Thread
from mailwatch.errors import PermanentError, TransientError
from mailwatch.imap import FetchedMessage, FolderStatus, ImapConnection, ImapEndpoint
from mailwatch.acks import Acknowledger, sample_context
from mailwatch.ingest import FolderContext, Logged, record_message, record_unparsable
from mailwatch.mail.rules import Identity
from mailwatch.outbox import DrainReport, Outbox, RetryPolicy
from mailwatch.sla import ClockPolicy
from mailwatch.smtp import SmtpEndpoint, SmtpSender
from mailwatch.templates import Templates
from mailwatch.threads import close_thread, mark_answered, reopen_thread, ticket_pattern

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FolderReport:
    mailbox: str
    folder: str
    logged: int = 0
    duplicates: int = 0
    resynced: bool = False


@dataclass
class CycleReport:
    folders: list[FolderReport] = field(default_factory=list)
    failed_mailboxes: dict[str, str] = field(default_factory=dict)
    outbox: DrainReport = field(default_factory=DrainReport)

    @property
    def logged(self) -> int:
        return sum(report.logged for report in self.folders)


def retry_policy(settings: Settings) -> RetryPolicy:
    smtp = settings.smtp
    return RetryPolicy(initial=smtp.retry_initial, maximum=smtp.retry_max, give_up_after=smtp.give_up_after)


def imap_endpoint(mailbox: MailboxSettings) -> ImapEndpoint:
    imap = mailbox.imap
    return ImapEndpoint(
        host=imap.host, port=imap.port, security=imap.security, username=imap.username,
        timeout_s=imap.timeout.total_seconds(), ca_file=imap.ca_file,
    )


def open_imap(mailbox: MailboxSettings) -> ImapConnection:
    """A logged-in connection to a mailbox's IMAP server."""
    connection = ImapConnection(imap_endpoint(mailbox), mailbox.imap.password.reveal())
    connection.open()
    return connection


class Service:
    """Everything mailwatch does, one pass at a time."""

    def __init__(self, settings: Settings, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.identity = Identity(
            own_addresses=settings.own_addresses,
            staff=tuple(settings.service.staff),
            own_message_id_domains=frozenset(self._own_domains()),
        )
        self.policy = ClockPolicy(settings.sla.first_response, settings.sla.next_response)
        self.ticket_tag = ticket_pattern(settings.service.ticket_prefix)
        self.templates = Templates(settings.service.templates)
        self.acknowledger = Acknowledger(settings, self.templates, self.ticket_tag) if settings.smtp else None
        self.outbox = Outbox(db, self.smtp_sender, clock, retry_policy(settings)) if settings.smtp else None

    def smtp_sender(self) -> SmtpSender:
        """A new, unconnected SMTP session for the configured server."""
        smtp = self.settings.smtp
        endpoint = SmtpEndpoint(host=smtp.host, port=smtp.port, security=smtp.security, username=smtp.username,
                                timeout_s=smtp.timeout.total_seconds(), ca_file=smtp.ca_file)
        return SmtpSender(endpoint, smtp.password.reveal() if smtp.password else None)

    def _own_domains(self) -> set[str]:
        domains = {address.rsplit("@", 1)[-1] for address in self.settings.own_addresses}
        if self.settings.smtp is not None:
            domains.add(self.settings.smtp.from_domain)
        return domains

    async def run_once(self) -> CycleReport:
        """One full pass over every mailbox; a failing mailbox never stops the others."""
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
        report.outbox = await self.drain_outbox()
        return report

    async def drain_outbox(self) -> DrainReport:
        """Send whatever the outbox holds that is due."""
        return await self.outbox.drain() if self.outbox else DrainReport()

    def sync_mailbox(self, mailbox: MailboxSettings) -> list[FolderReport]:
        """Log everything new in a mailbox's watched folder (blocking: runs in a thread)."""
        connection = open_imap(mailbox)
        try:
            return [self.sync_folder(connection, mailbox, mailbox.folder)]
        finally:
            connection.close()

    def sync_folder(self, connection: ImapConnection, mailbox: MailboxSettings, folder: str) -> FolderReport:
        """Fetch and log the messages above the folder's last logged UID."""
        status = connection.select(folder)
        report = FolderReport(mailbox.name, folder)
        after_uid = self._start_uid(mailbox.name, folder, status, report)
        ctx = FolderContext(mailbox.name, folder, status.uidvalidity, self.identity, self.ticket_tag,
                            self.policy, self.acknowledger if self.settings.acknowledgment.enabled else None)
        for batch in connection.fetch_new(after_uid):
            for logged in self.store_batch(ctx, batch):
                report.duplicates += logged.duplicate
                report.logged += not logged.duplicate
        self._mark_synced(mailbox.name, folder)
        log.info("folder_synced", mailbox=mailbox.name, folder=folder, logged=report.logged,
                 duplicates=report.duplicates)
        return report

    def _start_uid(self, mailbox: str, folder: str, status: FolderStatus, report: FolderReport) -> int:
        """The UID to fetch after; 0 (a full, deduplicated resync) when UIDVALIDITY changed."""
        with self.db.session() as session:
            state = _folder_state(session, mailbox, folder)
            if state.uidvalidity == status.uidvalidity:
                return state.last_uid
            if state.uidvalidity is not None:
                report.resynced = True
                log.warning("uidvalidity_changed", mailbox=mailbox, folder=folder,
                            old=state.uidvalidity, new=status.uidvalidity)
            state.uidvalidity, state.last_uid = status.uidvalidity, 0
            return 0

    def store_batch(self, ctx: FolderContext, batch: list[FetchedMessage]) -> list[Logged]:
        """Record a batch in one transaction; on failure, one message at a time."""
        if not batch:
            return []
        try:
            with self.db.session() as session:
                now = self.clock()
                logged = [record_message(session, ctx, fetched, now) for fetched in batch]
                self._advance(session, ctx, batch[-1].uid)
            return logged
        except (IntegrityError, SQLAlchemyError, ValueError) as exc:
            log.warning("batch_retried_singly", mailbox=ctx.mailbox, folder=ctx.folder,
                        first_uid=batch[0].uid, error=exc.__class__.__name__)
            return [self.store_one(ctx, fetched) for fetched in batch]

    def store_one(self, ctx: FolderContext, fetched: FetchedMessage) -> Logged:
        """Record one message; a poison message is quarantined and never blocks the rest."""
        try:
            with self.db.session() as session:
                logged = record_message(session, ctx, fetched, self.clock())
                self._advance(session, ctx, fetched.uid)
            return logged
        except Exception as exc:  # noqa: BLE001 - anything a message can trigger
            log.exception("message_record_failed", mailbox=ctx.mailbox, uid=fetched.uid)
            with self.db.session() as session:
                logged = record_unparsable(session, ctx, fetched, self.clock(), repr(exc))
                self._advance(session, ctx, fetched.uid)
            return logged

    @staticmethod
    def _advance(session, ctx: FolderContext, uid: int) -> None:
        state = _folder_state(session, ctx.mailbox, ctx.folder)
        if state.uidvalidity == ctx.uidvalidity:
            state.last_uid = max(state.last_uid, uid)

    def check_templates(self) -> list[str]:
        """Render every template against a sample; the problems found (file: line: reason)."""
        if self.acknowledger is None:
            return []
        return self.templates.check({"ack": sample_context(self.acknowledger, self.clock())})

    async def check_smtp(self) -> None:
        """Connect and log in to the SMTP server, or raise saying why not."""
        async with self.smtp_sender():
            pass

    def set_thread_status(self, ticket: int, action: str) -> str:
        """`mailwatch thread answered|close|reopen`: returns the thread's new status."""
        with self.db.session() as session:
            thread = session.get(Thread, ticket)
            if thread is None:
                raise PermanentError(f"no thread with ticket {ticket}")
            now = self.clock()
            if action == "answered":
                mark_answered(thread, now, via="command", by=None)
            elif action == "close":
                close_thread(thread)
            else:
                reopen_thread(thread, now, self.policy)
            log.info("thread_changed", thread=ticket, action=action, status=thread.status)
            return thread.status

    def _mark_synced(self, mailbox: str, folder: str) -> None:
        with self.db.session() as session:
            _folder_state(session, mailbox, folder).last_sync_at = self.clock()


def _folder_state(session, mailbox: str, folder: str) -> FolderState:
    state = session.scalar(select(FolderState).where(FolderState.mailbox == mailbox, FolderState.folder == folder))
    if state is None:
        state = FolderState(mailbox=mailbox, folder=folder, last_uid=0)
        session.add(state)
        session.flush()
    return state
