"""Acting on a thread from the link in its escalation email: real Dovecot, SMTP sink, SQLite and PostgreSQL.

The link is read out of the email the sink received, checked with mailwatch.links, and the
action goes through apply_action as the page will; the next sweeps must honour it. The
service's clock is injected: a 24-hour SLA runs in milliseconds.
"""

import json
import re
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from urllib.parse import parse_qs, urlsplit

import pytest

from mailwatch.cli import main
from mailwatch.config import load_settings
from mailwatch.links import read_token
from mailwatch.pipeline.actions import Action, StaleLink, apply_action
from mailwatch.pipeline.threadview import thread_view
from mailwatch.service import Service
from tests.integration.test_escalations import SLA, T0, TRUSTED_MX, Clock, cycle_at
from tests.mailfactory import customer_mail

KEY = "an-action-link-signing-key-32-bytes-or-more"
WEB = """
[web]
base_url = "https://support.acme.example/mailwatch/"
secret_file = "web-secret"
"""
LEAD, MANAGER = "lead@acme.example", "manager@acme.example"
# Steps at 20h (lead) and 24h (manager and lead) against a 24h deadline: one before, one at it.


@pytest.fixture
def web_service(config_file, smtp_sink, db_for, tmp_path):
    (tmp_path / "web-secret").write_text(KEY + "\n")
    path = config_file(extra=SLA + WEB, smtp=smtp_sink, service_extra=TRUSTED_MX)
    settings = load_settings(path)
    clock = Clock(T0)
    service = Service(settings, db_for(settings), clock=clock)
    service.prepare()
    return service, clock, path


def link_in(mail) -> str:
    """The one action link in an escalation email, the same in its text and HTML parts."""
    text = mail.message.get_body(("plain",)).get_content()
    html = mail.message.get_body(("html",)).get_content()
    (link,) = re.findall(r"https://support\.acme\.example/mailwatch/t/\d+\?k=[\w.-]+", text)
    assert f'href="{link}"' in html
    return link


def claim_of(service: Service, link: str, now):
    parts = urlsplit(link)
    ticket = int(parts.path.rsplit("/", 1)[1])
    return read_token(service.settings.web.secret_key, ticket, parse_qs(parts.query)["k"][0], now)


def act(service: Service, clock: Clock, link: str, action: Action, **extra):
    claim = claim_of(service, link, clock.now)
    with service.db.session() as session:
        return apply_action(session, service.policies, claim.ticket, action, claim.recipient, clock.now,
                            clock=claim.clock, **extra)


def follow_up() -> bytes:
    """The customer of ticket 1001 writing again, in reply to their own first message."""
    message = message_from_bytes(customer_mail(1), policy=default)
    message.replace_header("Message-ID", "<q1-again.customer@example.com>")
    message["In-Reply-To"] = "<q1.customer@example.com>"
    return message.as_bytes()


def threads_json(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["--config", str(path), "--allow-root", "threads", "--json"]) == 0
    (thread,) = json.loads(capsys.readouterr().out)
    return thread


def first_step(service, clock, dovecot, imap_user, smtp_sink) -> str:
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    cycle_at(service, clock, timedelta(hours=20))
    (mail,) = smtp_sink.to(LEAD)
    return link_in(mail)


def test_the_link_is_the_recipients_own_for_this_thread_and_clock(dovecot, imap_user, web_service, smtp_sink):
    service, clock, _ = web_service
    link = first_step(service, clock, dovecot, imap_user, smtp_sink)
    claim = claim_of(service, link, clock.now)
    assert (claim.ticket, claim.clock, claim.recipient) == (1001, 1, LEAD)
    assert claim.expires_at == (clock.now + timedelta(days=7)).replace(microsecond=0)


def test_answered_from_the_link_stops_every_further_step(dovecot, imap_user, web_service, smtp_sink, capsys):
    service, clock, path = web_service
    link = first_step(service, clock, dovecot, imap_user, smtp_sink)
    result = act(service, clock, link, Action.ANSWERED, note="called back")
    assert (result.changed, result.status) == (True, "answered")
    cycle_at(service, clock, timedelta(hours=30))
    assert len(smtp_sink.received) == 1  # the 24h step never went out
    thread = threads_json(path, capsys)
    assert (thread["status"], thread["answered_by"], thread["answered_auth"]) == ("answered", LEAD, "action-link")
    assert thread["actions"] == [{"action": "answered", "actor": LEAD, "at": "2026-11-21T05:00:00Z",
                                  "note": "called back", "until": None}]


def test_taken_holds_steps_until_the_deadline_and_shows_who(dovecot, imap_user, web_service, smtp_sink, capsys):
    # Lead takes it at 20h; the manager is not paged before the 24h deadline, but is at it.
    service, clock, path = web_service
    link = first_step(service, clock, dovecot, imap_user, smtp_sink)
    act(service, clock, link, Action.TAKE)
    thread = threads_json(path, capsys)
    assert (thread["taken_by"], thread["taken_at"]) == (LEAD, "2026-11-21T05:00:00Z")
    cycle_at(service, clock, timedelta(hours=23, minutes=59))
    assert len(smtp_sink.received) == 1
    cycle_at(service, clock, timedelta(hours=24))
    to_manager = smtp_sink.to(MANAGER)
    assert len(to_manager) == 1
    assert f"Taken by:  {LEAD}" in to_manager[0].message.get_body(("plain",)).get_content()


def test_snoozed_moves_the_deadline_and_the_steps(dovecot, imap_user, web_service, smtp_sink, capsys):
    # Snoozed at 20h until 30h: the 24h step moves by the same 10h, to 34h; nothing before.
    service, clock, path = web_service
    link = first_step(service, clock, dovecot, imap_user, smtp_sink)
    until = T0 + timedelta(hours=30)
    act(service, clock, link, Action.SNOOZE, until=until)
    thread = threads_json(path, capsys)
    assert thread["snoozed_until"] == "2026-11-21T15:00:00Z"
    assert thread["deadline_at"] == "2026-11-21T19:00:00Z"  # 24h + 10h after T0 (09:00Z)
    cycle_at(service, clock, timedelta(hours=33, minutes=59))
    assert len(smtp_sink.received) == 1
    cycle_at(service, clock, timedelta(hours=34))
    assert len(smtp_sink.to(MANAGER)) == 1
    with service.db.session() as session:
        view = thread_view(session, service.policies, 1001, clock.now)
    assert view.snoozed_until == until and view.actions[0].action == "snooze"


def test_a_link_from_before_the_customer_wrote_again_is_stale(dovecot, imap_user, web_service, smtp_sink):
    service, clock, _ = web_service
    link = first_step(service, clock, dovecot, imap_user, smtp_sink)
    act(service, clock, link, Action.ANSWERED)
    dovecot.append(imap_user, follow_up(), msg_time=T0 + timedelta(hours=21))
    cycle_at(service, clock, timedelta(hours=21, minutes=1))
    with pytest.raises(StaleLink):
        act(service, clock, link, Action.TAKE)
    with service.db.session() as session:
        view = thread_view(session, service.policies, 1001, clock.now)
    # The page shows the new clock, both customer messages oldest first, and the earlier answer.
    assert (view.clock, view.status, view.customer.address) == (2, "open", "customer1@example.com")
    assert [(m.direction, m.when) for m in view.messages] == [("customer", T0), ("customer", T0 + timedelta(hours=21))]
    assert view.time_left == timedelta(hours=8) - timedelta(minutes=1)  # next_response, counted from 21h
    assert [a.action for a in view.actions] == ["answered"] and view.taken_by is None


def test_mailwatch_link_prints_a_working_link(dovecot, imap_user, web_service, capsys):
    service, clock, path = web_service
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    capsys.readouterr()
    assert main(["--config", str(path), "--allow-root", "link", "1001", "--to", "Boss@Acme.example"]) == 0
    link = capsys.readouterr().out.strip()
    claim = read_token(KEY.encode(), 1001, parse_qs(urlsplit(link).query)["k"][0], T0 + timedelta(days=1))
    assert (claim.ticket, claim.recipient) == (1001, "boss@acme.example")
    assert main(["--config", str(path), "--allow-root", "link", "9999", "--to", "boss@acme.example"]) == 64


def test_mailwatch_link_without_web_says_what_is_missing(config_file, smtp_sink, capsys):
    path = config_file(extra=SLA, smtp=smtp_sink)
    assert main(["--config", str(path), "--allow-root", "link", "1001", "--to", "boss@acme.example"]) == 2
    assert "[web]" in capsys.readouterr().err
