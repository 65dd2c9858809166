"""`mailwatch run`: the long-running asyncio process and its lifecycle.

After uvicorn's Server: `serve` is `startup`, wait for a signal, `shutdown`, each
readable on its own; signal handlers only record intent. The daemon owns the parts
that live as long as the process (database, health, counters, metrics, scheduler,
watchers) and the two that a SIGHUP replaces (settings, service). Watchers report
from their threads here (each mailbox's inbox, and its Sent folder on a connection of
its own); the jobs and the reload live in their own modules. READY goes to systemd
once every mailbox has synced (see `readiness`).

Nothing here reads the wall clock: the daemon is given a `clock` and every decision
by the time takes `now` from it. (READY's bounded wait for a mailbox that is down is
elapsed time, so it is measured on the event loop's monotonic `loop.time()`.)
"""

import asyncio
import gc
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailwatch.clock import Clock
from mailwatch.config import MailboxSettings, Settings
from mailwatch.daemon.health import Health, mailbox_component
from mailwatch.daemon.jobs import Jobs
from mailwatch.daemon.metrics import Metrics, MetricsServer
from mailwatch.daemon.notify import Notifier
from mailwatch.daemon.readiness import Readiness
from mailwatch.daemon.reload import Reloader
from mailwatch.daemon.stats import Stats
from mailwatch.daemon.watchers import WatcherHooks, Watchers
from mailwatch.db.engine import Database
from mailwatch.db.lock import lock_sqlite
from mailwatch.errors import AuthenticationError
from mailwatch.mail.rules import AckOutcome
from mailwatch.pipeline.alerts import Notice, PendingNotices, log_notice
from mailwatch.pipeline.ingest import Logged
from mailwatch.pipeline.sync import FolderReport
from mailwatch.service import Service

log = structlog.get_logger(__name__)

HANDLED_SIGNALS = (
    signal.SIGINT,  # Ctrl-C
    signal.SIGTERM,  # systemctl stop, kill <pid>
)
SHUTDOWN_TIMEOUT_S = 8.0  # below the unit's TimeoutStopSec and the 10 s promise
JOBS_FINISH_S = SHUTDOWN_TIMEOUT_S / 4  # jobs in flight may end by themselves before shutdown
READY_CHECK_S = 0.1  # how often startup looks whether READY may go out


class Daemon:
    """Runs the service until told to stop."""

    watcher_stop_budget_s = SHUTDOWN_TIMEOUT_S / 2  # a reload waits this long for the old watchers

    def __init__(self, config_path: Path, settings: Settings, clock: Clock,
                 notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.health = Health.for_settings(settings)
        self.stats = Stats()
        self.stop_reason = "stopped"
        self.watchers = Watchers()
        self.jobs = Jobs(self)
        self.reloader = Reloader(self)
        self.stopping = asyncio.Event()
        self.outbox_wakeup = asyncio.Event()
        self.threads_stop = threading.Event()  # tells blocking work in worker threads to wind down
        # Alerts the database refused (a full disk), retried by housekeeping; through self.service,
        # which a reload replaces.
        self.notices = PendingNotices(lambda notice: self.service.queue_notice(notice))

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
        loop.add_signal_handler(signal.SIGHUP, self.reloader.request)
        try:
            yield
        finally:
            for sig in (*HANDLED_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: signal.Signals) -> None:
        """Signal handlers only record intent; shutdown does the work."""
        self.stop_reason = f"shutdown on {sig.name}"
        self.stopping.set()

    # -- startup ---------------------------------------------------------------------

    async def startup(self) -> None:
        """Lock, open the database, start watchers, jobs, sender and metrics."""
        self.loop = asyncio.get_running_loop()
        # Started first: a mailbox that is down holds READY back its imap.timeout from here.
        self.readiness = Readiness({m.name: m.imap.timeout.total_seconds() for m in self.settings.mailboxes},
                                   self.loop.time())
        watchdog = asyncio.create_task(self._feed_watchdog(), name="watchdog")  # first: migrations can be slow
        self.lock = lock_sqlite(self.settings.service.database)
        self.db = Database(self.settings.service.database)
        self.service = Service(self.settings, self.db, self.clock, on_commit=self.chunk_logged)
        await asyncio.to_thread(self.service.prepare, self.lock is not None)
        self.metrics = Metrics(self.db, self.clock)
        self.metrics.alerts_waiting.set_function(lambda: len(self.notices.waiting()))
        self.metrics_server = self._start_metrics_server()
        self.web_server = await self._start_web_server()  # after migrations: its pages read the new schema
        self.scheduler = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self.jobs.schedule(self.scheduler, self.clock())
        self.scheduler.start()
        self.watchers.start(self.settings, self._watcher_hooks(), self._sent_watcher_hooks())
        self.outbox_wakeup.set()  # mail queued before a restart goes out now, not at the first tick
        self.background = [
            asyncio.create_task(self.jobs.send_when_woken(), name="outbox-sender"),
            asyncio.create_task(self._signal_ready(), name="ready"),
            watchdog,
        ]
        log.info("daemon_started", mailboxes=[m.name for m in self.settings.mailboxes],
                 metrics=self.settings.metrics.listen if self.settings.metrics else None)

    def _start_metrics_server(self) -> MetricsServer | None:
        if self.settings.metrics is None:
            return None
        listen = self.settings.metrics
        server = MetricsServer(listen.host, listen.port, self.metrics, self.health_problems)
        server.start()
        return server

    async def _start_web_server(self) -> "WebServer | None":
        """The [web] action pages on this event loop; reads settings and service through self (a reload)."""
        if self.settings.web is None:
            return None
        from mailwatch.web.app import WebContext, make_app  # aiohttp is imported only where [web] is set
        from mailwatch.web.server import WebServer

        context = WebContext(web=lambda: self.settings.web, policies=lambda: self.service.policies,
                             session=lambda: self.db.session(), clock=self.clock)
        server = WebServer(self.settings.web.host, self.settings.web.port, make_app(context))
        await server.start()
        return server

    def _watcher_hooks(self) -> WatcherHooks:
        # Through self.service, which a reload replaces: a new sign-in or password is used at once.
        return WatcherHooks(connect=lambda mailbox: self.service.open_imap(mailbox), sync=self._sync_inbox,
                            synced=lambda mailbox, report: self.mailbox_synced(mailbox, report, self.clock()),
                            failed=lambda mailbox, exc, _attempt: self.mailbox_failed(mailbox, exc, self.clock()),
                            clock=self.clock)

    def _sent_watcher_hooks(self) -> WatcherHooks:
        # Their own hooks: a Sent folder's trouble is logged, but it is not the mailbox's
        # incident (no alert, no recovery note), and the inbox watcher owns last_sync.
        return WatcherHooks(connect=lambda mailbox: self.service.open_imap(mailbox), sync=self._sync_sent,
                            synced=self.sent_synced, failed=self.sent_failed, clock=self.clock)

    def use(self, settings: Settings, service: Service) -> None:
        """Run on new settings from now on (a reload)."""
        self.settings, self.service = settings, service
        self.health.apply(settings)

    def restart_work(self) -> None:
        """After `use`: the jobs on the new intervals, watchers on the new mailboxes."""
        self.scheduler.remove_all_jobs()
        self.jobs.schedule(self.scheduler, self.clock())
        self.watchers.start(self.settings, self._watcher_hooks(), self._sent_watcher_hooks())
        self.outbox_wakeup.set()

    # -- what watcher threads report (called from their threads) ---------------------

    def _sync_inbox(self, connection, mailbox: MailboxSettings, stop: threading.Event) -> FolderReport:
        return self.service.sync_inbox(connection, mailbox, stop)

    def mailbox_synced(self, mailbox: MailboxSettings, report: FolderReport, now: datetime) -> Notice | None:
        """A good sync at `now`: counted, and a recovery note if an alert had gone out."""
        self.metrics.observe_folder(report, now)
        self.stats.add("logged", report.logged)
        component = mailbox_component(mailbox.name)
        if self.health.is_failing(component):
            self.metrics.imap_reconnects.labels(mailbox.name).inc()
        notice = self.send_notice(self.health.succeeded(component, now))
        self.readiness.synced(mailbox.name)
        if report.logged or report.answered_by_flag:
            self.loop.call_soon_threadsafe(self.outbox_wakeup.set)
        return notice

    def chunk_logged(self, logged: list[Logged]) -> None:
        """A committed chunk queued acknowledgments: send them now, not when a long sync ends."""
        if any(item.ack_outcome == AckOutcome.SEND for item in logged):
            self.loop.call_soon_threadsafe(self.outbox_wakeup.set)

    def mailbox_failed(self, mailbox: MailboxSettings, exc: Exception, now: datetime) -> Notice | None:
        """A failed connect or sync at `now`: counted, and an alert once it has lasted long enough."""
        self.metrics.imap_errors.labels(mailbox.name).inc()
        if isinstance(exc, AuthenticationError):
            log.error("imap_login_refused", mailbox=mailbox.name, error=str(exc),
                      hint=getattr(exc, "remedy", "check the password source, then `systemctl reload mailwatch`"))
        return self.send_notice(self.health.failed(mailbox_component(mailbox.name), str(exc), now))

    def _sync_sent(self, connection, mailbox: MailboxSettings, stop: threading.Event) -> FolderReport:
        (report,) = self.service.sync_sent(connection, mailbox, stop)
        return report

    def sent_synced(self, mailbox: MailboxSettings, report: FolderReport) -> None:
        """A good sync of a Sent folder: counted; last_sync and health stay the inbox watcher's."""
        self.metrics.observe_folder(report, synced_at=None)

    def sent_failed(self, mailbox: MailboxSettings, exc: Exception, attempt: int) -> None:
        """A Sent folder that failed: counted and logged (the watcher retries), not an incident."""
        self.metrics.imap_errors.labels(mailbox.name).inc()
        log.error("sent_sync_failed", mailbox=mailbox.name, folder=mailbox.sent_folder, attempt=attempt,
                  error=str(exc))

    def send_notice(self, notice: Notice | None) -> Notice | None:
        """Log an alert or recovery note, queue its email and wake the sender; returns the notice.

        If the database refuses the email, it is kept in `notices` and retried by housekeeping.
        """
        if notice is None:
            return None
        log_notice(notice, self.service.policies.alert_recipients)
        if self.notices.submit(notice):
            self.loop.call_soon_threadsafe(self.outbox_wakeup.set)
        return notice

    def retry_notices(self) -> None:
        """Queue the notices the database refused before, oldest first (from housekeeping)."""
        if self.notices.flush():
            self.loop.call_soon_threadsafe(self.outbox_wakeup.set)

    def database_outcome(self, error: str | None, now: datetime) -> Notice | None:
        """A database that refuses writes stops work: it is an incident like a dead mailbox."""
        return self.send_notice(self.health.failed("database", error, now) if error
                                else self.health.succeeded("database", now))

    # -- what the daemon tells others ------------------------------------------------

    def status_line(self) -> str:
        failing = [incident.component for incident in self.health.failing()]
        text = f"logged {self.stats['logged']}, sent {self.stats['sent']}, escalated {self.stats['escalated']}"
        text += f"; FAILING: {', '.join(failing)}" if failing else "; all mailboxes OK"
        if waiting := self.notices.waiting():
            text += f"; {len(waiting)} ALERT EMAIL(S) NOT YET QUEUED"
        return text + "".join(f"; {problem}" for problem in self._sign_in_problems())

    def health_problems(self) -> list[str]:
        """Why /healthz fails right now (empty when healthy)."""
        return (self.health.problems(self.settings.mailboxes, self.clock()) + self.unqueued_alerts()
                + self._sign_in_problems())

    def unqueued_alerts(self) -> list[str]:
        """Alerts the database has not taken yet: /healthz must not look fine while ops are not told."""
        return [f"{notice.kind} about {notice.incident.component} not queued yet: {notice.incident.error}"
                for notice in self.notices.waiting()]

    def _sign_in_problems(self) -> list[str]:
        # An SMTP sign-in that died cannot mail its own alert: say so wherever else we can.
        try:
            return self.service.sign_in_problems()
        except Exception:  # noqa: BLE001 - a status line must never fail
            return []

    async def _signal_ready(self) -> None:
        """READY once every mailbox has synced; one that is down holds it back only its imap.timeout."""
        while not self.readiness.is_ready(self.loop.time(), self._failing_mailboxes()):
            await asyncio.sleep(READY_CHECK_S)
        self.notifier.ready(self.status_line())  # names a mailbox still failing: "FAILING: mailbox sales"
        log.info("daemon_ready", without=self.readiness.waiting_for())

    def _failing_mailboxes(self) -> list[str]:
        return [m.name for m in self.settings.mailboxes if self.health.is_failing(mailbox_component(m.name))]

    async def _feed_watchdog(self) -> None:
        # From the event loop itself: if the loop hangs, systemd stops hearing and restarts us.
        interval = self.notifier.watchdog_interval_s
        while interval and not self.stopping.is_set():
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    # -- shutdown -------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop taking work, let in-flight sends finish (bounded), close in reverse order."""
        self.notifier.stopping()
        log.info("daemon_stopping", reason=self.stop_reason)
        deadline = self.loop.time() + SHUTDOWN_TIMEOUT_S
        self.stopping.set()  # also when shutdown is called without a signal (tests, errors)
        self.threads_stop.set()
        if self.web_server:
            await self.web_server.stop()  # no new actions; one in flight finishes first
        self.watchers.signal_stop()  # no new batches from here on
        await self.jobs.finish(JOBS_FINISH_S)  # running jobs end by themselves, not cancelled mid-write
        self.scheduler.shutdown(wait=False)
        self.outbox_wakeup.set()  # lets the sender see `stopping` after its current round
        await self._finish_sending()
        await self.watchers.stop(max(0.5, deadline - self.loop.time()))
        if self.metrics_server:
            self.metrics_server.stop()
        self.db.dispose()
        if self.lock:
            self.lock.close()
        log.info("daemon_stopped", reason=self.stop_reason, logged=self.stats["logged"], sent=self.stats["sent"],
                 escalated=self.stats["escalated"], failing=[i.component for i in self.health.failing()])

    async def _finish_sending(self) -> None:
        """Let the sender finish its round, within half the shutdown budget."""
        sender, *others = self.background
        for task in others:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(sender), SHUTDOWN_TIMEOUT_S / 2)
        except TimeoutError:
            sender.cancel()
            log.warning("shutdown_abandoned_sends", hint="they stay queued and go out after the restart")


def run(config_path: Path, settings: Settings, clock: Clock) -> None:
    """Run the daemon in a fresh event loop until it is stopped; `clock` is the real time."""
    settle_garbage_collector()
    asyncio.run(Daemon(config_path, settings, clock).serve())


def settle_garbage_collector() -> None:
    """Exempt what is loaded at start-up from every later full collection.

    The imported modules are some 110,000 objects that live as long as the process; each
    full collection traversed them all, a pause of 40-130 ms in front of whichever mail was
    being recorded (bench.fuzz saw them as its worst times). Collected once and frozen,
    they are never traversed again.
    """
    gc.collect()
    gc.freeze()
