"""`mailwatch run`: the long-running asyncio process.

Lifecycle after uvicorn's Server: `startup`, wait for a signal, `shutdown`, each
readable on its own. APScheduler runs the periodic jobs (mailbox syncs, the
escalation sweep, outbox retries) with coalescing and one instance at a time; the
outbox is drained as soon as something is queued, not on the next tick.
"""

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailwatch.config import MailboxSettings, Settings
from mailwatch.db.engine import Database
from mailwatch.service import Service

log = structlog.get_logger(__name__)

HANDLED_SIGNALS = (
    signal.SIGINT,  # Ctrl-C
    signal.SIGTERM,  # systemctl stop, kill <pid>
)
SHUTDOWN_TIMEOUT_S = 8.0  # below systemd's TimeoutStopSec and the 10 s promise
OUTBOX_RETRY_TICK_S = 5.0  # how often deferred mail is looked at between wake-ups


class Daemon:
    """Runs the service until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self.outbox_wakeup = asyncio.Event()
        self.db: Database | None = None
        self.service: Service | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.sender: asyncio.Task | None = None
        self.stop_reason = "stopped"

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT, shut down."""
        with self.capture_signals():
            await self.startup()
            await self.stopping.wait()
            await self.shutdown()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        try:
            yield
        finally:
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: signal.Signals) -> None:
        """Signal handlers only record intent; shutdown does the work."""
        self.stop_reason = f"shutdown on {sig.name}"
        self.stopping.set()

    async def startup(self) -> None:
        """Open the database, schedule the jobs, start the sender."""
        self.db = Database(self.settings.service.database)
        self.service = Service(self.settings, self.db)
        await asyncio.to_thread(self.service.prepare)
        self.scheduler = self._schedule()
        self.scheduler.start()
        self.sender = asyncio.create_task(self._send_when_woken(), name="outbox-sender")
        log.info("daemon_started", mailboxes=[m.name for m in self.settings.mailboxes])

    def _schedule(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        now = datetime.now(UTC)
        for mailbox in self.settings.mailboxes:
            scheduler.add_job(self.sync_mailbox, "interval", args=[mailbox], id=f"sync:{mailbox.name}",
                              seconds=mailbox.poll_interval.total_seconds(), next_run_time=now)
        scheduler.add_job(self.sweep, "interval", id="sweep",
                          seconds=self.settings.sla.sweep_interval.total_seconds(), next_run_time=now)
        scheduler.add_job(self.outbox_wakeup.set, "interval", id="outbox-retries", seconds=OUTBOX_RETRY_TICK_S)
        return scheduler

    async def sync_mailbox(self, mailbox: MailboxSettings) -> None:
        """One sync of one mailbox; a failure is logged and retried on the next run."""
        try:
            await asyncio.to_thread(self.service.sync_mailbox, mailbox)
        except Exception as exc:  # noqa: BLE001 - one mailbox never stops the daemon
            log.error("mailbox_sync_failed", mailbox=mailbox.name, error=str(exc))
        self.outbox_wakeup.set()

    async def sweep(self) -> None:
        try:
            report = await asyncio.to_thread(self.service.sweep)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.error("sweep_failed", error=str(exc))
            return
        if report.emails:
            self.outbox_wakeup.set()

    async def _send_when_woken(self) -> None:
        while not self.stopping.is_set():
            await self.outbox_wakeup.wait()
            self.outbox_wakeup.clear()
            try:
                await self.service.drain_outbox()
            except Exception as exc:  # noqa: BLE001 - what was not sent is still queued
                log.error("outbox_drain_failed", error=str(exc))

    async def shutdown(self) -> None:
        """Stop taking work, let in-flight sends finish (bounded), close in reverse order."""
        log.info("daemon_stopping", reason=self.stop_reason)
        self.scheduler.shutdown(wait=False)
        self.sender.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(self.sender, return_exceptions=True), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            log.warning("shutdown_abandoned_sends", hint="they stay queued and go out after the restart")
        self.db.dispose()
        log.info("daemon_stopped", reason=self.stop_reason)


def run(settings: Settings) -> None:
    """Run the daemon in a fresh event loop until it is stopped."""
    asyncio.run(Daemon(settings).serve())


