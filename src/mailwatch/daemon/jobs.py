"""The daemon's periodic work: the escalation sweep, outbox retries, housekeeping, the
SQLite checkpoint, the weekly report, and the sender task that drains the outbox whenever
something wakes it. (Sent folders are not polled here: each has a `SentWatcher` in IDLE,
see `watchers`.)

Every job that decides something by the time takes `now` (arq's `run_cron(n)`): the
scheduler passes the daemon's clock, tests pass any instant they like. APScheduler
runs each job with coalescing and one instance at a time; each running job's task is
tracked, so shutdown can let it end instead of cancelling it halfway through a write.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailwatch.pipeline.alerts import Notice
from mailwatch.pipeline.escalations import SweepReport
from mailwatch.pipeline.outbox import DrainReport

if TYPE_CHECKING:
    from mailwatch.daemon.server import Daemon

log = structlog.get_logger(__name__)

OUTBOX_RETRY_TICK = timedelta(seconds=5)  # how often deferred mail is looked at between wake-ups
HOUSEKEEPING = timedelta(seconds=5)  # STATUS line, alerts for silent incidents, alerts the database refused
CHECKPOINT = timedelta(seconds=60)  # SQLite: fold the WAL back into the database and give its space back
# Is a weekly report due? One cheap query; the report is built only when it is.
WEEKLY_REPORT_CHECK = timedelta(seconds=60)


class Jobs:
    """The daemon's scheduled jobs; they use whichever service the daemon runs right now."""

    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.tasks: set[asyncio.Task] = set()  # scheduled jobs running now

    def schedule(self, scheduler: AsyncIOScheduler, now: datetime) -> None:
        """(Re)schedule every job: the sweep at once, the rest an interval after `now`."""
        settings = self.daemon.settings
        tracked = self._tracked
        self._every(scheduler, "sweep", tracked(self._at_now(self.sweep)), settings.sla.sweep_interval, now)
        self._every(scheduler, "outbox-retries", self._tick_outbox, OUTBOX_RETRY_TICK, now + OUTBOX_RETRY_TICK)
        self._every(scheduler, "housekeeping", tracked(self._at_now(self.housekeeping)), HOUSEKEEPING,
                    now + HOUSEKEEPING)
        self._every(scheduler, "checkpoint", tracked(self.checkpoint), CHECKPOINT, now + CHECKPOINT)
        if settings.report.to:
            self._every(scheduler, "weekly-report", tracked(self._at_now(self.weekly_report)), WEEKLY_REPORT_CHECK,
                        now)

    @staticmethod
    def _every(scheduler: AsyncIOScheduler, job_id: str, job: Callable, interval: timedelta, first: datetime) -> None:
        scheduler.add_job(job, "interval", id=job_id, name=job_id, next_run_time=first,
                          seconds=interval.total_seconds())

    def _at_now(self, job: Callable[[datetime], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        """A job the scheduler can call: it runs `job` at the daemon's clock's now."""
        async def run() -> object:
            return await job(self.daemon.clock())
        return run

    def _tracked(self, job: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
        """A job whose task shutdown waits for: cancelled, it would log a traceback and stop nothing."""
        @functools.wraps(job)
        async def run(*args) -> object:
            task = asyncio.current_task()
            self.tasks.add(task)
            try:
                return await job(*args)
            finally:
                self.tasks.discard(task)
        return run

    async def finish(self, timeout_s: float) -> None:
        """Start no more jobs and give the running ones `timeout_s` to end (they see threads_stop)."""
        self.daemon.scheduler.pause()
        if running := list(self.tasks):
            _done, pending = await asyncio.wait(running, timeout=timeout_s)
            for task in pending:
                log.warning("job_cancelled_at_shutdown", job=task.get_name())

    async def sweep(self, now: datetime) -> SweepReport:
        """Queue every escalation step due at `now`; the sender is woken if mail was queued."""
        try:
            report = await asyncio.to_thread(self.daemon.service.sweep, now)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.error("sweep_failed", error=str(exc))
            return SweepReport()
        self.daemon.metrics.observe_escalations([item.step for item in report.escalated])
        self.daemon.stats.add("escalated", len(report.escalated))
        if report.emails:
            self.wake_outbox()
        return report

    async def weekly_report(self, now: datetime) -> int:
        """Queue the weekly report when a week is due at `now` (the decision is in pipeline/weekly.py)."""
        try:
            weeks = await asyncio.to_thread(self.daemon.service.queue_weekly_report, now)
        except Exception as exc:  # noqa: BLE001 - the next check tries again
            log.error("weekly_report_failed", error=str(exc))
            return 0
        if weeks:
            self.wake_outbox()
        return weeks

    def wake_outbox(self) -> None:
        """The retry tick: deferred mail whose time has come goes out on the next drain."""
        self.daemon.outbox_wakeup.set()

    async def _tick_outbox(self) -> None:
        # A coroutine, so the Event is set on the loop's thread (a plain function job runs in a pool thread).
        self.wake_outbox()

    async def housekeeping(self, now: datetime) -> list[Notice]:
        """Alerts the database refused before, alerts for incidents that went quiet, and a STATUS line."""
        await asyncio.to_thread(self.daemon.retry_notices)
        notices = self.daemon.health.due_alerts(now)
        for notice in notices:
            await asyncio.to_thread(self.daemon.send_notice, notice)
        self.daemon.notifier.status(await asyncio.to_thread(self.daemon.status_line))
        return notices

    async def checkpoint(self) -> None:
        """SQLite: keep the WAL small, and free its space again after a full disk."""
        await asyncio.to_thread(self.daemon.db.checkpoint)

    async def send_when_woken(self) -> None:
        """The sender task: drain the outbox each time something is queued or the tick fires.

        The task owns the SMTP connections it keeps between drains: they close when it ends.
        """
        daemon = self.daemon
        async with daemon.service.kept_smtp_connections():
            while not daemon.stopping.is_set():
                await daemon.outbox_wakeup.wait()
                daemon.outbox_wakeup.clear()
                try:
                    # Mail queued during the drain wakes this loop and also ends the round in progress.
                    report = await daemon.service.drain_outbox(daemon.stopping, queued=daemon.outbox_wakeup)
                except Exception as exc:  # noqa: BLE001 - what was not sent is still queued
                    log.error("outbox_drain_failed", error=str(exc))
                    continue
                self.drained(report, daemon.clock())

    def drained(self, report: DrainReport, now: datetime) -> None:
        """Count a drain; only a round that sent nothing but deferred something is a failure."""
        self.daemon.metrics.observe_drain(report)
        self.daemon.stats.add("sent", report.sent)
        self.daemon.database_outcome(report.database_error, now)
        if report.deferred and not report.sent:
            self.daemon.send_notice(self.daemon.health.failed("outbox", report.last_error or "deferred", now))
        elif report.sent:
            self.daemon.send_notice(self.daemon.health.succeeded("outbox", now))
