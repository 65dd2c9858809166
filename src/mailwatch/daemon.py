"""`mailwatch run`: the long-running asyncio process.

Lifecycle after uvicorn's Server: `startup`, wait for a signal, `shutdown`, each
readable on its own. Each mailbox has a watcher thread (IDLE or polling), and its
Sent folder, if it names one, another on a connection of its own; APScheduler runs
the periodic jobs (escalation sweep, outbox retries, housekeeping) with coalescing
and one instance at a time; the outbox is drained as soon as something is queued.
READY goes to systemd once every mailbox has synced (see `readiness`). SIGHUP reloads config and templates, keeping the old
ones if the new ones are broken.
"""

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailwatch.clock import system_clock as utcnow
from mailwatch.config import MailboxSettings, Settings, load_settings
from mailwatch.db.engine import Database
from mailwatch.db.lock import lock_sqlite
from mailwatch.errors import AuthenticationError, ConfigError
from mailwatch.health import Health, Notice
from mailwatch.logs import configure_logging
from mailwatch.metrics import Metrics, MetricsServer
from mailwatch.notify import Notifier
from mailwatch.pipeline.sync import FolderReport
from mailwatch.service import Service, open_imap
from mailwatch.readiness import Readiness
from mailwatch.watcher import MailboxWatcher, SentWatcher, WatcherHooks

log = structlog.get_logger(__name__)

HANDLED_SIGNALS = (
    signal.SIGINT,  # Ctrl-C
    signal.SIGTERM,  # systemctl stop, kill <pid>
)
SHUTDOWN_TIMEOUT_S = 8.0  # below the unit's TimeoutStopSec and the 10 s promise
OUTBOX_RETRY_TICK_S = 5.0  # how often deferred mail is looked at between wake-ups
HOUSEKEEPING_S = 5.0  # STATUS line, alerts for silent incidents
UNHEALTHY_AFTER_POLLS = 3  # /healthz fails when a mailbox has not synced for this many intervals
READY_CHECK_S = 0.1  # how often startup looks whether READY may go out


class Daemon:
    """Runs the service until told to stop."""

    def __init__(self, config_path: Path, settings: Settings, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.health = Health(settings.service.alert_after)
        self.stats: Counter[str] = Counter()
        self.stop_reason = "stopped"
        self.watchers: dict[str, MailboxWatcher] = {}
        self.readiness = Readiness({m.name: m.imap.timeout.total_seconds() for m in settings.mailboxes},
                                   time.monotonic())
        self.threads_stop = threading.Event()  # tells blocking work in worker threads to wind down

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT, shut down."""
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.outbox_wakeup = asyncio.Event()
        self.reloading = asyncio.Lock()
        self.reload_tasks: set[asyncio.Task] = set()
        with self.capture_signals():
            await self.startup()
            await self.stopping.wait()
            await self.shutdown()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in HANDLED_SIGNALS:
            self.loop.add_signal_handler(sig, self.handle_exit, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self.handle_reload)
        try:
            yield
        finally:
            for sig in (*HANDLED_SIGNALS, signal.SIGHUP):
                self.loop.remove_signal_handler(sig)

    def handle_exit(self, sig: signal.Signals) -> None:
        """Signal handlers only record intent; shutdown does the work."""
        self.stop_reason = f"shutdown on {sig.name}"
        self.stopping.set()

    def handle_reload(self) -> None:
        if self.stopping.is_set():
            return
        task = self.loop.create_task(self.reload(), name="reload")
        self.reload_tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self.reload_tasks.discard)

    # -- startup ---------------------------------------------------------------------

    async def startup(self) -> None:
        """Lock, open the database, start watchers, jobs, sender and metrics."""
        watchdog = asyncio.create_task(self._feed_watchdog(), name="watchdog")  # first: migrations can be slow
        self.lock = lock_sqlite(self.settings.service.database)
        self.db = Database(self.settings.service.database)
        self.service = Service(self.settings, self.db, utcnow)
        await asyncio.to_thread(self.service.prepare, self.lock is not None)
        self.metrics = Metrics(self.db, utcnow)
        self.metrics_server = self._start_metrics_server()
        self.scheduler = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._schedule_jobs()
        self.scheduler.start()
        self._start_watchers()
        self.background = [
            asyncio.create_task(self._send_when_woken(), name="outbox-sender"),
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

    def _schedule_jobs(self) -> None:
        now = datetime.now(UTC)
        self.scheduler.add_job(self.sweep, "interval", id="sweep", next_run_time=now,
                               seconds=self.settings.sla.sweep_interval.total_seconds())
        self.scheduler.add_job(self.outbox_wakeup.set, "interval", id="outbox-retries", seconds=OUTBOX_RETRY_TICK_S)
        self.scheduler.add_job(self.housekeeping, "interval", id="housekeeping", seconds=HOUSEKEEPING_S)

    def _start_watchers(self) -> None:
        hooks = WatcherHooks(connect=open_imap, sync=self._sync_inbox, synced=self._synced, failed=self._failed)
        for mailbox in self.settings.mailboxes:
            watcher = MailboxWatcher(mailbox, hooks)
            self.watchers[mailbox.name] = watcher
            watcher.start()
        self._start_sent_watchers()

    def _start_sent_watchers(self) -> None:
        # Their own hooks: a Sent folder's trouble is logged, but it is not the mailbox's
        # incident (no alert, no recovery note), and the inbox watcher owns last_sync.
        hooks = WatcherHooks(connect=open_imap, sync=self._sync_sent, synced=self._sent_synced,
                             failed=self._sent_failed)
        for mailbox in self.settings.mailboxes:
            if mailbox.sent_folder:
                watcher = SentWatcher(mailbox, hooks)
                self.watchers[f"{mailbox.name}:sent"] = watcher
                watcher.start()

    # -- what watcher threads report (called from their threads) ---------------------

    def _sync_inbox(self, connection, mailbox: MailboxSettings, stop: threading.Event) -> FolderReport:
        return self.service.sync_inbox(connection, mailbox, stop)

    def _synced(self, mailbox: MailboxSettings, report: FolderReport) -> None:
        now = utcnow()
        self.metrics.observe_folder(report, now)
        self.stats["logged"] += report.logged
        component = f"mailbox {mailbox.name}"
        if component in {incident.component for incident in self.health.failing()}:
            self.metrics.imap_reconnects.labels(mailbox.name).inc()
        self._send_notice(self.health.succeeded(component, now))
        self.readiness.synced(mailbox.name)
        if report.logged or report.answered_by_flag:
            self.loop.call_soon_threadsafe(self.outbox_wakeup.set)

    def _failed(self, mailbox: MailboxSettings, exc: Exception, attempt: int) -> None:
        self.metrics.imap_errors.labels(mailbox.name).inc()
        if isinstance(exc, AuthenticationError):
            log.error("imap_login_refused", mailbox=mailbox.name, error=str(exc),
                      hint="check the password source, then `systemctl reload mailwatch`")
        self._send_notice(self.health.failed(f"mailbox {mailbox.name}", str(exc), utcnow()))

    def _sync_sent(self, connection, mailbox: MailboxSettings, stop: threading.Event) -> FolderReport:
        (report,) = self.service.sync_sent(connection, mailbox, stop)
        return report

    def _sent_synced(self, mailbox: MailboxSettings, report: FolderReport) -> None:
        self.metrics.observe_folder(report, synced_at=None)  # the inbox watcher owns last_sync

    def _sent_failed(self, mailbox: MailboxSettings, exc: Exception, attempt: int) -> None:
        self.metrics.imap_errors.labels(mailbox.name).inc()
        log.error("sent_sync_failed", mailbox=mailbox.name, folder=mailbox.sent_folder, error=str(exc))

    def _send_notice(self, notice: Notice | None) -> None:
        if notice is None:
            return
        try:
            if self.service.queue_notice(notice):
                self.loop.call_soon_threadsafe(self.outbox_wakeup.set)
        except Exception:  # noqa: BLE001 - the alert is also in the log; never crash for it
            log.exception("alert_queue_failed", component=notice.incident.component)

    # -- periodic jobs ----------------------------------------------------------------

    async def sweep(self) -> None:
        try:
            report = await asyncio.to_thread(self.service.sweep)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.error("sweep_failed", error=str(exc))
            return
        self.metrics.observe_escalations([item.step for item in report.escalated])
        self.stats["escalated"] += len(report.escalated)
        if report.emails:
            self.outbox_wakeup.set()

    async def housekeeping(self) -> None:
        """Alerts for incidents that went quiet, and a STATUS line for systemctl status."""
        for notice in self.health.due_alerts(utcnow()):
            await asyncio.to_thread(self._send_notice, notice)
        self.notifier.status(await asyncio.to_thread(self.status_line))

    def status_line(self) -> str:
        failing = [incident.component for incident in self.health.failing()]
        text = f"logged {self.stats['logged']}, sent {self.stats['sent']}, escalated {self.stats['escalated']}"
        return text + (f"; FAILING: {', '.join(failing)}" if failing else "; all mailboxes OK")

    # -- background tasks ---------------------------------------------------------------

    async def _send_when_woken(self) -> None:
        while not self.stopping.is_set():
            await self.outbox_wakeup.wait()
            self.outbox_wakeup.clear()
            try:
                report = await self.service.drain_outbox(self.stopping)
            except Exception as exc:  # noqa: BLE001 - what was not sent is still queued
                log.error("outbox_drain_failed", error=str(exc))
                continue
            self.metrics.observe_drain(report)
            self.stats["sent"] += report.sent
            if report.deferred and not report.sent:
                self._send_notice(self.health.failed("outbox", report.last_error or "deferred", utcnow()))
            elif report.sent:
                self._send_notice(self.health.succeeded("outbox", utcnow()))

    async def _signal_ready(self) -> None:
        """READY once every mailbox has synced; one that is down holds it back only its imap.timeout."""
        while not self.readiness.is_ready(time.monotonic(), self._failing_mailboxes()):
            await asyncio.sleep(READY_CHECK_S)
        self.notifier.ready(self.status_line())  # names a mailbox still failing: "FAILING: mailbox sales"
        log.info("daemon_ready", without=self.readiness.waiting_for())

    def _failing_mailboxes(self) -> list[str]:
        prefix = "mailbox "
        return [i.component[len(prefix):] for i in self.health.failing() if i.component.startswith(prefix)]

    async def _feed_watchdog(self) -> None:
        # From the event loop itself: if the loop hangs, systemd stops hearing and restarts us.
        interval = self.notifier.watchdog_interval_s
        while interval and not self.stopping.is_set():
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def health_problems(self) -> list[str]:
        """Why /healthz fails: mailboxes not synced for 3 poll intervals (empty when healthy)."""
        now, problems = utcnow(), []
        for mailbox in self.settings.mailboxes:
            last = self.health.last_ok(f"mailbox {mailbox.name}")
            if last is None or now - last > UNHEALTHY_AFTER_POLLS * mailbox.poll_interval:
                problems.append(f"mailbox {mailbox.name} not synced since {last.isoformat() if last else 'start'}")
        return problems

    # -- reload ---------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: new config and templates, or the old ones if the new ones are broken."""
        async with self.reloading:  # two quick SIGHUPs reload one after the other
            if not self.stopping.is_set():
                await self._reload()

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            settings = load_settings(self.config_path)
            service = Service(settings, self.db, utcnow)
            problems = service.check_templates()
            if problems:
                raise ConfigError(problems)
            if settings.service.database != self.settings.service.database:
                raise ConfigError([f"{self.config_path}: service.database: changing it needs a restart"])
        except ConfigError as exc:
            log.error("reload_rejected", problems=exc.problems, hint="the previous configuration keeps running")
            self.notifier.ready(self.status_line())
            return
        await asyncio.to_thread(service.realign)
        await self._stop_watchers()
        self.settings, self.service = settings, service
        self.health.alert_after = settings.service.alert_after
        configure_logging(settings.logging.format, settings.logging.level)
        self.scheduler.remove_all_jobs()
        self._schedule_jobs()
        self._start_watchers()
        self.outbox_wakeup.set()
        self.notifier.ready(self.status_line())
        log.info("reloaded", config=str(self.config_path))

    async def _stop_watchers(self, budget_s: float = SHUTDOWN_TIMEOUT_S / 2) -> None:
        """Stop every watcher at once, then wait for all of them within one shared budget."""
        watchers, self.watchers = list(self.watchers.values()), {}
        for watcher in watchers:
            watcher.stop()
        deadline = self.loop.time() + budget_s
        for watcher in watchers:
            if not await asyncio.to_thread(watcher.join, max(0.0, deadline - self.loop.time())):
                log.warning("watcher_still_busy", mailbox=watcher.mailbox.name,
                            hint="it stops after its current command; its batch is committed or redone")

    # -- shutdown -------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop taking work, let in-flight sends finish (bounded), close in reverse order."""
        self.notifier.stopping()
        log.info("daemon_stopping", reason=self.stop_reason)
        deadline = self.loop.time() + SHUTDOWN_TIMEOUT_S
        self.scheduler.shutdown(wait=False)
        self.threads_stop.set()
        for watcher in self.watchers.values():
            watcher.stop()  # no new batches from here on
        self.outbox_wakeup.set()  # lets the sender see `stopping` after its current round
        sender, *others = self.background
        for task in others:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(sender), SHUTDOWN_TIMEOUT_S / 2)
        except TimeoutError:
            sender.cancel()
            log.warning("shutdown_abandoned_sends", hint="they stay queued and go out after the restart")
        await self._stop_watchers(max(0.5, deadline - self.loop.time()))
        if self.metrics_server:
            self.metrics_server.stop()
        self.db.dispose()
        if self.lock:
            self.lock.close()
        log.info("daemon_stopped", reason=self.stop_reason, logged=self.stats["logged"], sent=self.stats["sent"],
                 escalated=self.stats["escalated"], failing=[i.component for i in self.health.failing()])


def run(config_path: Path, settings: Settings) -> None:
    """Run the daemon in a fresh event loop until it is stopped."""
    asyncio.run(Daemon(config_path, settings).serve())
