"""`mailwatch run`: the long-running process and everything only it needs.

This package owns the daemon's lifecycle (`server`: startup, wait, shutdown, signals),
the per-mailbox IDLE/poll threads (`watchers`), the periodic jobs (`jobs`), SIGHUP
(`reload`), watching ourselves and alerting (`health`), the running totals (`stats`),
systemd's notify protocol (`notify`) and Prometheus with /healthz (`metrics`). It
drives `mailwatch.service` and is driven only by `mailwatch.cli`, which also hands it
the clock; nothing below it imports it.
"""

from mailwatch.daemon.server import Daemon, run

__all__ = ["Daemon", "run"]
