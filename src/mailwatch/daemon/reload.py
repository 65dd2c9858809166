"""SIGHUP: new config and templates, or the old ones if the new ones are broken.

A reload is checked completely before anything changes (the file, every template,
and that the database is the same one); only then are the watchers restarted on the
new settings and the jobs rescheduled. Two quick SIGHUPs reload one after the other;
a SIGHUP during shutdown is ignored.
"""

import asyncio
from typing import TYPE_CHECKING

import structlog

from mailwatch.config import Settings, load_settings
from mailwatch.errors import ConfigError
from mailwatch.logs import configure_logging
from mailwatch.service import Service

if TYPE_CHECKING:
    from mailwatch.daemon.server import Daemon

log = structlog.get_logger(__name__)


class Reloader:
    """Turns SIGHUPs into reloads of the daemon's settings and service, one at a time."""

    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()

    def request(self) -> None:
        """The SIGHUP handler: start a reload task unless the daemon is stopping."""
        if self.daemon.stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self.tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self.tasks.discard)

    async def reload(self) -> None:
        """Reload now (after any reload already running), unless the daemon is stopping."""
        async with self.lock:
            if not self.daemon.stopping.is_set():
                await self._reload()

    async def _reload(self) -> None:
        daemon = self.daemon
        daemon.notifier.reloading()
        try:
            settings, service = self.load()
        except ConfigError as exc:
            log.error("reload_rejected", problems=exc.problems, hint="the previous configuration keeps running")
            daemon.notifier.ready(daemon.status_line())
            return
        await asyncio.to_thread(service.realign)
        await daemon.watchers.stop(daemon.watcher_stop_budget_s)
        daemon.use(settings, service)
        configure_logging(settings.logging.format, settings.logging.level)
        daemon.restart_work()
        daemon.notifier.ready(daemon.status_line())
        log.info("reloaded", config=str(daemon.config_path))

    def load(self) -> tuple[Settings, Service]:
        """The new settings and a service built on them, or ConfigError listing what is wrong."""
        daemon = self.daemon
        settings = load_settings(daemon.config_path)
        service = Service(settings, daemon.db, daemon.clock, on_commit=daemon.chunk_logged)
        problems = service.check_templates()
        if problems:
            raise ConfigError(problems)
        if settings.service.database != daemon.settings.service.database:
            raise ConfigError([f"{daemon.config_path}: service.database: changing it needs a restart"])
        return settings, service
