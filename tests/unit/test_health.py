"""health.py: one alert per incident once it lasts alert_after, one recovery note only after an alert."""

from datetime import UTC, datetime, timedelta

from mailwatch.daemon.health import Health

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
AFTER = timedelta(minutes=15)
MINUTE = timedelta(minutes=1)


def test_one_alert_per_incident_however_many_failures():
    # A component failing every minute for an hour yields exactly one alert.
    health = Health(AFTER)
    notices = [health.failed("outbox", f"error {n}", T0 + n * MINUTE) for n in range(60)]
    alerts = [n for n in notices if n is not None]
    assert [(a.kind, a.at, a.incident.since) for a in alerts] == [("alert", T0 + AFTER, T0)]


def test_a_failure_alerts_exactly_when_alert_after_has_passed():
    # Boundary: failing for alert_after is enough; one second less is not.
    health = Health(AFTER)
    assert health.failed("mailbox support", "refused", T0) is None
    assert health.failed("mailbox support", "refused", T0 + AFTER - timedelta(seconds=1)) is None
    notice = health.failed("mailbox support", "refused", T0 + AFTER)
    assert notice is not None and notice.kind == "alert"


def test_the_incident_keeps_its_start_and_the_latest_error():
    # The alert says since when, and what is failing now.
    health = Health(AFTER)
    health.failed("outbox", "connection refused", T0)
    notice = health.failed("outbox", "535 authentication failed", T0 + AFTER)
    assert (notice.incident.component, notice.incident.since, notice.incident.error) == (
        "outbox", T0, "535 authentication failed")


def test_a_success_before_the_alert_ends_the_incident_silently():
    # A blip shorter than alert_after is nobody's business: no alert, no recovery note.
    health = Health(AFTER)
    health.failed("outbox", "timeout", T0)
    assert health.succeeded("outbox", T0 + 5 * MINUTE) is None
    assert health.failing() == []
    # The next failure starts a new incident, so its clock starts again.
    assert health.failed("outbox", "timeout", T0 + 16 * MINUTE) is None


def test_one_recovery_note_after_an_alert():
    # The first success after an alert yields one recovery note; later successes none.
    health = Health(AFTER)
    health.failed("outbox", "timeout", T0)
    health.failed("outbox", "timeout", T0 + AFTER)
    recovery = health.succeeded("outbox", T0 + 20 * MINUTE)
    assert (recovery.kind, recovery.at, recovery.incident.since) == ("recovery", T0 + 20 * MINUTE, T0)
    assert health.succeeded("outbox", T0 + 21 * MINUTE) is None


def test_a_new_incident_after_recovery_alerts_again():
    # "Once" is per incident: a later outage is news again.
    health = Health(AFTER)
    health.failed("outbox", "timeout", T0)
    assert health.failed("outbox", "timeout", T0 + AFTER) is not None
    health.succeeded("outbox", T0 + 20 * MINUTE)
    later = T0 + timedelta(hours=2)
    assert health.failed("outbox", "timeout", later) is None
    notice = health.failed("outbox", "timeout", later + AFTER)
    assert notice is not None and notice.incident.since == later


def test_due_alerts_finds_a_silent_incident_once():
    # A component in a long backoff does not report again; the periodic check alerts for it, once.
    health = Health(AFTER)
    health.failed("mailbox support", "login refused", T0)
    assert health.due_alerts(T0 + AFTER - MINUTE) == []
    (notice,) = health.due_alerts(T0 + AFTER)
    assert (notice.kind, notice.incident.component, notice.at) == ("alert", "mailbox support", T0 + AFTER)
    assert health.due_alerts(T0 + AFTER + MINUTE) == []
    assert health.failed("mailbox support", "login refused", T0 + AFTER + 2 * MINUTE) is None


def test_components_have_incidents_of_their_own():
    # One mailbox failing neither alerts nor recovers another.
    health = Health(AFTER)
    health.failed("mailbox support", "refused", T0)
    health.failed("outbox", "timeout", T0 + 10 * MINUTE)
    assert [n.incident.component for n in health.due_alerts(T0 + AFTER)] == ["mailbox support"]
    assert health.succeeded("outbox", T0 + 16 * MINUTE) is None
    assert [i.component for i in health.failing()] == ["mailbox support"]


def test_last_ok_is_the_latest_success_per_component():
    # /healthz and `status` show when each part last worked.
    health = Health(AFTER)
    assert health.last_ok("outbox") is None
    health.succeeded("outbox", T0)
    health.failed("outbox", "timeout", T0 + MINUTE)
    health.succeeded("outbox", T0 + 2 * MINUTE)
    assert health.last_ok("outbox") == T0 + 2 * MINUTE and health.last_ok("mailbox support") is None
