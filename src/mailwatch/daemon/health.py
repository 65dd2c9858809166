"""Watching ourselves: which part is failing since when, and when to tell someone.

A silent watchdog is worse than none. A component (a mailbox, the outbox) that keeps
failing for `service.alert_after` yields one alert; its first success afterwards
yields one recovery note. Pure bookkeeping with `now` passed in; thread-safe because
mailbox watchers report from their own threads.
"""

import threading
from datetime import datetime, timedelta

from mailwatch.alerts import Incident, Notice


class Health:
    """Per-component failure tracking and the alert/recovery decisions."""

    def __init__(self, alert_after: timedelta) -> None:
        self.alert_after = alert_after
        self._incidents: dict[str, Incident] = {}
        self._last_ok: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def succeeded(self, component: str, now: datetime) -> Notice | None:
        """Record a success; a recovery note if an alert had gone out for this incident."""
        with self._lock:
            self._last_ok[component] = now
            incident = self._incidents.pop(component, None)
        if incident is not None and incident.alerted:
            return Notice("recovery", incident, now)
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
        return Notice("alert", incident, now)

    def last_ok(self, component: str) -> datetime | None:
        with self._lock:
            return self._last_ok.get(component)

    def failing(self) -> list[Incident]:
        with self._lock:
            return list(self._incidents.values())
