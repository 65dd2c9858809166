"""Nobody can aim acknowledgments at a victim, and a flood cannot starve real customers.

Real Dovecot in, real aiosmtpd out, real SQLite (and PostgreSQL when configured).
A 300-mail flood goes the whole way through Dovecot and SMTP; the 10,000-mail flood
drives the pure decision (tests/unit/test_rules.py), because 10,000 mails through the
real pipeline took about a minute on the shared test machine.
"""

import asyncio
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from mailwatch.config import load_settings
from mailwatch.db.models import Message, OutboxMail, OutboxStatus
from mailwatch.service import Service
from tests.integration.test_escalations import T0, Clock


def outsider(n: int, sender: str, reply_to: str | None = None, words: str = "See http://evil.example/x") -> bytes:
    message = EmailMessage()
    message["From"] = sender.format(n=n)
    if reply_to:
        message["Reply-To"] = reply_to.format(n=n)
    message["To"] = "support@acme.example"
    message["Subject"] = f"Order {n}"
    message["Message-ID"] = f"<m{n}.{abs(hash(sender)) % 10_000}@sender.example>"
    message.set_content(words)
    return message.as_bytes()


@pytest.fixture
def ack_service(config_file, smtp_sink, db_for):
    """A Service that acknowledges, with an injected clock (default T0) and optional [acknowledgment] lines."""

    def make(ack_extra: str = "", clock: Clock | None = None) -> Service:
        settings = load_settings(config_file(ack=True, smtp=smtp_sink, ack_extra=ack_extra))
        return Service(settings, db_for(settings), clock=clock or Clock(T0))

    return make


def poll(service: Service):
    return asyncio.run(service.run_once())


def acks_by_status(service: Service) -> dict[str, int]:
    with service.db.session() as session:
        return dict(session.execute(select(OutboxMail.status, func.count()).group_by(OutboxMail.status)).all())


def test_reply_to_victim_in_another_domain_gets_no_ack(dovecot, imap_user, ack_service, smtp_sink):
    # 250 mails from one outsider with Reply-To victim+N@example.net: the victim gets nothing, the outsider one ack.
    service = ack_service()
    dovecot.append_many(imap_user, [outsider(n, "mallory@evil.example", "victim+{n}@example.net") for n in range(250)],
                        msg_time=T0)
    poll(service)
    (ack,) = smtp_sink.wait_for(1)
    assert ack.recipients == ("mallory@evil.example",)
    assert not [m for m in smtp_sink.received if any("example.net" in r for r in m.recipients)]


def test_plus_detail_backscatter_gets_one_ack_per_victim_per_interval(dovecot, imap_user, ack_service, smtp_sink):
    # A forged From victim+N@example.net, 250 times: case and +detail make one victim, acked once.
    service = ack_service()
    senders = [outsider(n, "Victim+{n}@Example.NET" if n % 2 else "victim+{n}@example.net") for n in range(250)]
    dovecot.append_many(imap_user, senders, msg_time=T0)
    poll(service)
    assert len(smtp_sink.wait_for(1)) == 1
    with service.db.session() as session:
        outcomes = dict(session.execute(select(Message.ack_outcome, func.count()).group_by(Message.ack_outcome)).all())
    assert outcomes == {"send": 1, "sender-rate-limited": 249}


def test_flood_from_one_domain_through_dovecot_leaves_another_domains_customer_acked(dovecot, imap_user, ack_service,
                                                                                     smtp_sink):
    # 300 distinct senders at one unauthenticated domain get its share (25% of 200); a customer elsewhere is acked.
    service = ack_service()
    flood = [outsider(n, "buyer{n}@flood.example") for n in range(300)]
    dovecot.append_many(imap_user, [*flood, outsider(0, "renee@customer.example", words="My order is broken")],
                        msg_time=T0)
    poll(service)
    smtp_sink.wait_for(51)
    recipients = [r for mail in smtp_sink.received for r in mail.recipients]
    assert "renee@customer.example" in recipients
    assert sum(1 for r in recipients if r.endswith("@flood.example")) == 50
    assert acks_by_status(service) == {OutboxStatus.SENT: 51, OutboxStatus.HELD: 50}


def test_capped_acks_wait_and_go_oldest_first_across_domains_until_max_age(dovecot, imap_user, ack_service,
                                                                           smtp_sink):
    # Over the cap acks are held, not dropped; as budget frees, each domain takes turns; past max_age: "max-age".
    clock = Clock(T0)
    service = ack_service("max_per_hour = 2\nmax_share_per_domain = 1.0\nmax_age = \"90m\"", clock=clock)
    flood = [outsider(n, "buyer{n}@flood.example") for n in range(5)]
    dovecot.append_many(imap_user, [*flood, outsider(0, "renee@customer.example")], msg_time=T0)
    poll(service)
    assert len(smtp_sink.wait_for(2)) == 2
    clock.now = T0 + timedelta(minutes=30)
    poll(service)
    assert len(smtp_sink.received) == 2  # the hour's budget is spent: nobody new
    clock.now = T0 + timedelta(hours=1)
    poll(service)
    third_and_fourth = [m.recipients[0] for m in smtp_sink.wait_for(4)[2:]]
    assert sorted(third_and_fourth) == ["buyer2@flood.example", "renee@customer.example"]
    clock.now = T0 + timedelta(hours=2)
    poll(service)
    assert len(smtp_sink.received) == 4
    with service.db.session() as session:
        outcomes = session.scalars(select(Message.ack_outcome).order_by(Message.uid)).all()
    assert outcomes == ["send", "send", "send", "max-age", "max-age", "send"]
