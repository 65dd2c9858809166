"""Watching ourselves: which part is failing since when, and when to tell someone.

A silent watchdog is worse than none. A component (a mailbox, the outbox) that keeps
failing for `service.alert_after` yields one alert; its first success afterwards
yields one recovery note; /healthz fails for a mailbox that has not synced for
`UNHEALTHY_AFTER_POLLS` poll intervals. Every rule about "how long is too long" lives
here, as pure bookkeeping with `now` passed in; the daemon only reports what happened
and sends what comes back. Thread-safe because mailbox watchers report from their own
threads.
"""

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from mailwatch.config import MailboxSettings, Settings
from mailwatch.pipeline.alerts import Incident, Notice, NoticeKind

UNHEALTHY_AFTER_POLLS = 3  # /healthz fails when a mailbox has not synced for this many intervals


def mailbox_component(name: str) -> str:
    """How a mailbox is named in incidents, alerts and /healthz."""
    return f"mailbox {name}"


class Health:
    """Per-component failure tracking and the alert/recovery decisions."""

    def __init__(self, alert_after: timedelta) -> None:
        self.alert_after = alert_after
        self._incidents: dict[str, Incident] = {}
        self._last_ok: dict[str, datetime] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> "Health":
        return cls(settings.service.alert_after)

    def apply(self, settings: Settings) -> None:
        """A reloaded configuration: open incidents keep their start, the threshold is new."""
        self.alert_after = settings.service.alert_after

    def succeeded(self, component: str, now: datetime) -> Notice | None:
        """Record a success; a recovery note if an alert had gone out for this incident."""
        with self._lock:
            self._last_ok[component] = now
            incident = self._incidents.pop(component, None)
        if incident is not None and incident.alerted:
            return Notice(NoticeKind.RECOVERY, incident, now)
        return None

    def failed(self, component: str, error: str, now: datetime) -> Notice | None:
        """Record a failure; an alert once it has lasted `alert_after`, only once."""
        with self._lock:
            incident = self._incidents.setdefault(component, Incident(component, now, error))
            incident.error = error
        return self._due(incident, now)

    def due_alerts(self, now: datetime) -> list[Notice]:
        """Alerts due now for incidents that have not reported again (e.g. in a long backoff)."""
        with self._lock:
            incidents = list(self._incidents.values())
        return [notice for incident in incidents if (notice := self._due(incident, now))]

    def _due(self, incident: Incident, now: datetime) -> Notice | None:
        with self._lock:
            if incident.alerted or now - incident.since < self.alert_after:
                return None
            incident.alerted = True
        return Notice(NoticeKind.ALERT, incident, now)

    def last_ok(self, component: str) -> datetime | None:
        with self._lock:
            return self._last_ok.get(component)

    def failing(self) -> list[Incident]:
        with self._lock:
            return list(self._incidents.values())

    def is_failing(self, component: str) -> bool:
        with self._lock:
            return component in self._incidents

    def problems(self, mailboxes: Iterable[MailboxSettings], now: datetime) -> list[str]:
        """Why /healthz fails: mailboxes not synced for 3 poll intervals (empty when healthy)."""
        problems = []
        for mailbox in mailboxes:
            last = self.last_ok(mailbox_component(mailbox.name))
            if last is None or now - last > UNHEALTHY_AFTER_POLLS * mailbox.poll_interval:
                problems.append(f"{mailbox_component(mailbox.name)} not synced since "
                                f"{last.isoformat() if last else 'start'}")
        return problems
