"""The daemon's periodic work: the escalation sweep, outbox retries, housekeeping, the
weekly report, and the sender task that drains the outbox whenever something wakes it.
(Sent folders are not polled here: each has a `SentWatcher` in IDLE, see `watchers`.)

Every job that decides something by the time takes `now` (arq's `run_cron(n)`): the
scheduler passes the daemon's clock, tests pass any instant they like. APScheduler
runs each job with coalescing and one instance at a time.
"""

import asyncio
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
HOUSEKEEPING = timedelta(seconds=5)  # STATUS line, alerts for silent incidents
# Is a weekly report due? One cheap query; the report is built only when it is.
WEEKLY_REPORT_CHECK = timedelta(seconds=60)


class Jobs:
    """The daemon's scheduled jobs; they use whichever service the daemon runs right now."""

    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon

    def schedule(self, scheduler: AsyncIOScheduler, now: datetime) -> None:
        """(Re)schedule every job: the sweep at once, the rest an interval after `now`."""
        settings = self.daemon.settings
        self._every(scheduler, "sweep", self._at_now(self.sweep), settings.sla.sweep_interval, now)
        self._every(scheduler, "outbox-retries", self.wake_outbox, OUTBOX_RETRY_TICK, now + OUTBOX_RETRY_TICK)
        self._every(scheduler, "housekeeping", self._at_now(self.housekeeping), HOUSEKEEPING, now + HOUSEKEEPING)
        if settings.report.to:
            self._every(scheduler, "weekly-report", self._at_now(self.weekly_report), WEEKLY_REPORT_CHECK, now)

    @staticmethod
    def _every(scheduler: AsyncIOScheduler, job_id: str, job: Callable, interval: timedelta, first: datetime) -> None:
        scheduler.add_job(job, "interval", id=job_id, name=job_id, next_run_time=first,
                          seconds=interval.total_seconds())

    def _at_now(self, job: Callable[[datetime], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        """A job the scheduler can call: it runs `job` at the daemon's clock's now."""
        async def run() -> object:
            return await job(self.daemon.clock())
        return run

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

    async def housekeeping(self, now: datetime) -> list[Notice]:
        """Alerts for incidents that went quiet, and a STATUS line for systemctl status."""
        notices = self.daemon.health.due_alerts(now)
        for notice in notices:
            await asyncio.to_thread(self.daemon.send_notice, notice)
        self.daemon.notifier.status(await asyncio.to_thread(self.daemon.status_line))
        return notices

    async def send_when_woken(self) -> None:
        """The sender task: drain the outbox each time something is queued or the tick fires."""
        daemon = self.daemon
        while not daemon.stopping.is_set():
            await daemon.outbox_wakeup.wait()
            daemon.outbox_wakeup.clear()
            try:
                report = await daemon.service.drain_outbox(daemon.stopping)
            except Exception as exc:  # noqa: BLE001 - what was not sent is still queued
                log.error("outbox_drain_failed", error=str(exc))
                continue
            self.drained(report, daemon.clock())

    def drained(self, report: DrainReport, now: datetime) -> None:
        """Count a drain; only a round that sent nothing but deferred something is a failure."""
        self.daemon.metrics.observe_drain(report)
        self.daemon.stats.add("sent", report.sent)
        if report.deferred and not report.sent:
            self.daemon.send_notice(self.daemon.health.failed("outbox", report.last_error or "deferred", now))
        elif report.sent:
            self.daemon.send_notice(self.daemon.health.succeeded("outbox", now))
