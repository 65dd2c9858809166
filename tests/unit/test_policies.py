"""The narrow policies built from the settings, and the escalation digest's outbox key."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailwatch.config import load_settings
from mailwatch.db.models import Thread
from mailwatch.pipeline.escalations import DueItem, Escalator, digest_key, sample_escalation_context
from mailwatch.policies import build_policies, ticket_label
from mailwatch.templates import Templates

EXAMPLE = Path(__file__).parents[2] / "deploy" / "mailwatch.toml"
NOW = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)


def example_policies(tmp_path):
    for name in ("imap", "smtp"):
        (tmp_path / name).write_text("secret\n")
    return build_policies(load_settings(EXAMPLE, {"CREDENTIALS_DIRECTORY": str(tmp_path)}))


def thread(number: int, clock: int = 1) -> Thread:
    return Thread(id=number, clock=clock, mailbox="support", customer_name="Zoë", customer_address="zoe@example.net",
                  subject="Broken", clock_started_at=NOW - timedelta(hours=20), deadline_at=NOW + timedelta(hours=4),
                  message_count=1)


def test_policies_carry_what_the_example_configuration_says(tmp_path):
    # Each component gets exactly the settings it acts on, built once.
    policies = example_policies(tmp_path)
    assert policies.branding.sender == "Acme Support <support@acme.example>"
    assert policies.branding.sender_address == "support@acme.example"
    assert policies.clock.steps == (timedelta(hours=20), timedelta(hours=24))
    assert policies.escalation.recipients_of(1) == ("leads@acme.example",)
    assert policies.escalation.recipients_of(2) == ("manager@acme.example",)
    assert policies.ack.first_response == policies.clock.first_response == timedelta(hours=24)
    assert policies.ack.mailbox_addresses == {"support": "support@acme.example"}


def test_branding_labels_tickets_and_gives_every_template_the_service(tmp_path):
    # One ticket label and one base context, wherever a ticket or the phone is shown.
    branding = example_policies(tmp_path).branding
    assert ticket_label("ACME-", 1042) == "ACME-1042"
    assert branding.ticket(1042) == "#1042"
    assert branding.context() == {"service": {"name": "Support", "phone": ""}}
    assert branding.local_time(NOW) == "Friday 4 December 2026, 15:30 UTC"


def test_digest_key_is_the_same_for_the_same_steps_to_the_same_person():
    # A digest of already-recorded steps is one outbox row, however often it is queued.
    items = [DueItem(thread(1001), 1), DueItem(thread(1002), 2)]
    assert digest_key("lead@acme.example", items) == digest_key("lead@acme.example", list(reversed(items)))


def test_digest_key_differs_by_recipient_step_thread_and_clock():
    # Different mail must never be taken for a duplicate.
    base = digest_key("lead@acme.example", [DueItem(thread(1001), 1)])
    assert base != digest_key("manager@acme.example", [DueItem(thread(1001), 1)])
    assert base != digest_key("lead@acme.example", [DueItem(thread(1001), 2)])
    assert base != digest_key("lead@acme.example", [DueItem(thread(1002), 1)])
    assert base != digest_key("lead@acme.example", [DueItem(thread(1001, clock=2), 1)])
    assert len(digest_key("x" * 300 + "@acme.example", [DueItem(thread(1001), 1)])) <= 200  # the column's size


def test_check_sample_is_rendered_by_the_real_item_context(tmp_path):
    # `check` test-renders exactly the keys real escalations carry, so a template that
    # passes check cannot fail on a real digest for a missing key.
    policies = example_policies(tmp_path)
    escalator = Escalator(policies.escalation, policies.branding, Templates())
    sample = sample_escalation_context(escalator, "support", NOW)
    real = escalator.item_context(DueItem(thread(1001), 1), "my order", NOW)
    assert set(sample["items"][0]) == set(real)
    assert sample["service"] == {"name": policies.branding.name, "phone": policies.branding.phone}
