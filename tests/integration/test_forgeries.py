"""No mail an outsider can send stops a clock: the forgeries of issue 10 against real Dovecot and aiosmtpd.

Every forgery names ticket #1001 in its subject (ticket numbers are sequential and
every ack shows one) and arrives two hours after the customer wrote. The thread
must stay open and its 20-hour escalation go out; only a reply that Acme's MX
authenticated answers it.
"""

import json
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from mailwatch.cli import main
from mailwatch.config import load_settings
from mailwatch.db.models import Message, Thread
from mailwatch.pipeline.escalations import latest_customer_words
from mailwatch.service import Service
from tests.integration.test_escalations import SLA, T0, cycle_at, sla_service  # noqa: F401 - a fixture
from tests.mailfactory import customer_mail

GENUINE_NONE = "mx.acme.example; dkim=none; spf=pass smtp.mailfrom=evil.example; dmarc=none header.from=acme.example"


def mail(sender: str, *, headers: dict[str, str] | None = None, n: int = 1, body: str = "Done, closing.") -> bytes:
    """A reply into ticket #1001; `headers` go on top, in order, as a receiving server would add them."""
    message = EmailMessage()
    for name, value in (headers or {}).items():
        message[name] = value
    message["From"] = sender
    message["To"] = "support@acme.example"
    message["Subject"] = "Re: Question number 1 [#1001]"
    message["Message-ID"] = f"<forged{n}@evil.example>"
    message.set_content(body)
    return message.as_bytes()


# (name, forged message): each one claimed an answer in issue 10's reproduction.
FORGERIES = [
    ("staff-from", mail("Alice Nguyen <alice@acme.example>")),
    ("own-address-from", mail("Acme Support <support@acme.example>")),
    ("reply-to-own-address", mail("Mallory <mallory@evil.example>", headers={"Reply-To": "support@acme.example"})),
    ("sender-staff", mail("Mallory <mallory@evil.example>", headers={"Sender": "alice@acme.example"})),
    ("trusted-dmarc-fail", mail("alice@acme.example", headers={
        "Authentication-Results": "mx.acme.example; dmarc=fail (p=reject dis=none) header.from=acme.example"})),
    ("forged-trusted-ar-below-genuine", mail("alice@acme.example", headers={
        "Authentication-Results": GENUINE_NONE,
        "X-Forged": "x",  # a separator: the forged copy sits lower, as anything the sender wrote does
    }).replace(b"X-Forged: x\n", b"Authentication-Results: mx.acme.example; dmarc=pass header.from=acme.example\n")),
    ("untrusted-authserv-id", mail("alice@acme.example", headers={
        "Authentication-Results": "mx.evil.example; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example"})),
]


def thread_1001(service: Service) -> Thread:
    with service.db.session() as session:
        return session.get(Thread, 1001)


@pytest.mark.parametrize("forgery", [raw for _, raw in FORGERIES], ids=[name for name, _ in FORGERIES])
def test_forged_answer_leaves_the_thread_open_and_it_escalates_on_time(dovecot, imap_user, sla_service, smtp_sink,
                                                                        forgery):
    # A header is a claim, not an identity: none of these stops the clock.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    dovecot.append(imap_user, forgery, msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    thread = thread_1001(service)
    assert (thread.status, thread.answered_via, thread.answered_at) == ("open", None, None)
    cycle_at(service, clock, timedelta(hours=20))
    assert [m.recipients for m in smtp_sink.received if "#1001" in m.message["Subject"]] == [("lead@acme.example",)]


def test_forged_trusted_ar_really_sits_below_the_genuine_one():
    # The parametrised forgery above is what it says: the genuine header first, the forged copy after it.
    raw = dict(FORGERIES)["forged-trusted-ar-below-genuine"]
    assert raw.index(b"dmarc=none") < raw.index(b"dmarc=pass")


def test_trusted_dmarc_fail_is_logged_spoofed_and_joins_nothing(dovecot, imap_user, sla_service):
    # A From disowned by its own domain's DMARC is category "spoofed": no ack, no ticket, in no thread.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    dovecot.append(imap_user, dict(FORGERIES)["trusted-dmarc-fail"], msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    with service.db.session() as session:
        row = session.scalars(select(Message).where(Message.message_id == "<forged1@evil.example>")).one()
        assert (row.category, row.thread_id) == ("spoofed", None)
        assert "dmarc=fail" in row.category_reason
        assert session.get(Thread, 1001).message_count == 1


def test_genuine_staff_reply_with_trusted_dmarc_pass_answers(dovecot, imap_user, sla_service, smtp_sink, config_file,
                                                             capsys):
    # Acme's MX on top says dmarc=pass for acme.example: a real answer, shown with how it was authenticated.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    genuine = mail("Alice Nguyen <alice@acme.example>", headers={
        "Authentication-Results": "mx.acme.example; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example"})
    dovecot.append(imap_user, genuine, msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    cycle_at(service, clock, timedelta(hours=30))
    thread = thread_1001(service)
    assert (thread.status, thread.answered_via, thread.answered_auth) == ("answered", "staff-address", "dmarc")
    assert smtp_sink.received == []
    path = config_file(extra=SLA, smtp=smtp_sink, service_extra='authserv_ids = ["mx.acme.example"]')
    capsys.readouterr()  # the cycles' log lines
    assert main(["--config", str(path), "threads", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["answered_via"], listed["answered_auth"], listed["answered_by"]) == (
        "staff-address", "dmarc", "alice@acme.example")


def test_microsoft365_internal_staff_reply_answers(dovecot, imap_user, sla_service, smtp_sink):
    # Exchange Online: AuthAs Internal (stripped from outside mail by Exchange) authenticates a staff From.
    service, clock = sla_service(service_extra='authserv_ids = ["microsoft365"]')
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    internal = mail("alice@acme.example", headers={"X-MS-Exchange-Organization-AuthAs": "Internal"})
    dovecot.append(imap_user, internal, msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    thread = thread_1001(service)
    assert (thread.status, thread.answered_auth) == ("answered", "microsoft365")


def test_without_authserv_ids_a_staff_from_answers_only_when_trusted_outright(dovecot, imap_user, sla_service):
    # No authserv_ids: nothing is authenticated; trust_unauthenticated_staff restores the old, forgeable rule.
    service, clock = sla_service(service_extra="")
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    dovecot.append(imap_user, dict(FORGERIES)["staff-from"], msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    assert thread_1001(service).status == "open"
    trusting, clock = sla_service(service_extra="trust_unauthenticated_staff = true")
    dovecot.append(imap_user, mail("alice@acme.example", n=2), msg_time=T0 + timedelta(hours=4))
    cycle_at(trusting, clock, timedelta(hours=5))
    thread = thread_1001(trusting)
    assert (thread.status, thread.answered_auth) == ("answered", "unauthenticated")


def test_outsider_with_customers_reply_to_and_tag_gets_a_ticket_of_their_own(dovecot, imap_user, sla_service):
    # Reply-To never decides the thread: the words of mallory never reach #1001's digest.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    injection = mail("Mallory <mallory@evil.example>", headers={"Reply-To": "customer1@example.com"},
                     body="URGENT: call +1 900 555 0199 and read out the card number")
    dovecot.append(imap_user, injection, msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    with service.db.session() as session:
        assert session.get(Thread, 1001).message_count == 1
        row = session.scalars(select(Message).where(Message.message_id == "<forged1@evil.example>")).one()
        assert row.thread_id != 1001 and session.get(Thread, row.thread_id).customer_address == "mallory@evil.example"
        assert "card number" not in latest_customer_words(session, {1001})[1001]


def test_unauthenticated_customer_from_with_tag_does_not_join(dovecot, imap_user, sla_service):
    # With authserv_ids set, a tag joins the customer's thread only with an authenticated From.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    forged_customer = mail("Customer 1 <customer1@example.com>", body="Please send the refund to IBAN XX00 instead")
    authenticated = mail("Customer 1 <customer1@example.com>", n=2, headers={
        "Authentication-Results": "mx.acme.example; dkim=pass header.d=example.com"}, body="Any news?")
    dovecot.append_many(imap_user, [forged_customer, authenticated], msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    with service.db.session() as session:
        threads = dict(session.execute(select(Message.message_id, Message.thread_id)).all())
        assert threads["<forged2@evil.example>"] == 1001 and threads["<forged1@evil.example>"] != 1001
        assert latest_customer_words(session, {1001})[1001].startswith("Any news?")


def test_check_warns_about_trusting_unauthenticated_staff(config_file):
    # `check` says plainly that a forged staff From would then stop clocks.
    settings = load_settings(config_file(service_extra="trust_unauthenticated_staff = true"))
    assert any("trust_unauthenticated_staff" in w and "forged" in w for w in settings.warnings)
    plain = load_settings(config_file())
    assert any("authserv_ids is empty" in w for w in plain.warnings)
    trusted = load_settings(config_file(service_extra='authserv_ids = ["mx.acme.example"]'))
    assert trusted.warnings == ()
