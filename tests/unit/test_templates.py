"""Rendering acknowledgments: sandboxed, escaped, strict, and safe for headers."""

import re
import textwrap
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from email.parser import BytesParser
from email.policy import default

import pytest
from structlog.testing import capture_logs

from mailwatch.config import load_settings
from mailwatch.db.models import Thread
from mailwatch.mail.parse import parse_message, split_raw
from mailwatch.pipeline.acks import Acknowledger, bare_subject, matching_faq, sample_context
from mailwatch.pipeline.escalations import DueItem, Escalator
from mailwatch.pipeline.threads import ticket_pattern
from mailwatch.policies import build_policies
from mailwatch.templates import Templates, build_email, header_address, one_line

RECEIVED = datetime(2026, 6, 9, 12, 2, tzinfo=UTC)

CONFIG = """\
[service]
name = "Acme Support"
phone = "+1 800 555 0100"
timezone = "Europe/Berlin"
database = "sqlite:///unused.db"
{templates}

[[mailbox]]
name = "support"
address = "support@acme.example"
  [mailbox.imap]
  host = "127.0.0.1"
  security = "none"
  password = "x"

[smtp]
host = "127.0.0.1"
security = "none"
from = "Acme Support <support@acme.example>"

[[escalation]]
after = "20h"
to = ["lead@acme.example"]

[faq]
url = "https://acme.example/help"
entries = [
  {{ question = "How do I get a refund?", url = "https://acme.example/help/refunds", keywords = ["refund", "money back"] }},
  {{ question = "How do I reset my password?", url = "https://acme.example/help/password", keywords = ["password", "log in"] }},
]
"""


@pytest.fixture
def settings_with(tmp_path):
    def make(templates: str = ""):
        path = tmp_path / "mailwatch.toml"
        path.write_text(CONFIG.format(templates=templates))
        return load_settings(path)

    return make


def inbound(subject: str, sender: str = "Zoë Lindström <zoe@example.net>", body: str = "I want my money back.") -> bytes:
    return textwrap.dedent(f"""\
        From: {sender}
        To: support@acme.example
        Subject: {subject}
        Message-ID: <abc@example.net>

        {body}
        """).encode()


def acknowledger_for(settings, templates: Templates) -> Acknowledger:
    policies = build_policies(settings)
    return Acknowledger(policies.ack, policies.branding, templates, ticket_pattern("#"))


def render_ack(settings, raw: bytes, ticket: int = 1042):
    parsed = parse_message(*split_raw(raw))
    thread = Thread(id=ticket, mailbox="support", deadline_at=RECEIVED.replace(day=10))
    acknowledger = acknowledger_for(settings, Templates(settings.service.templates))
    recipient = parsed.from_[0]
    rendered = Templates(settings.service.templates).render_mail("ack", acknowledger.context(thread, parsed, recipient, RECEIVED))
    message = build_email(rendered, sender=settings.smtp.from_, to=header_address(recipient.name, recipient.address),
                          message_id="<mailwatch.1042.1.ab@acme.example>", date="Tue, 09 Jun 2026 12:02:00 +0000",
                          in_reply_to=parsed.message_id, references=parsed.references)
    return BytesParser(policy=default).parsebytes(message.content)


def test_ack_has_text_and_html_with_phone_near_the_top(settings_with):
    # The phone number is in both parts, before the details, for customers in a hurry.
    message = render_ack(settings_with(), inbound("Refund please"))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert text.index("+1 800 555 0100") < text.index("answer by")
    assert html.index("+1 800 555 0100") < html.index("answer by")
    assert "#1042" in text and "#1042" in html


def test_ack_times_are_local_to_the_service(settings_with):
    # Customers read Berlin time in the email, while storage stays UTC.
    text = render_ack(settings_with(), inbound("Refund please")).get_body(("plain",)).get_content()
    assert "Tuesday 9 June 2026, 14:02 CEST" in text


def test_faq_entries_match_the_customers_words_and_only_those(settings_with):
    # A refund question shows the refund answer; an unrelated one shows no entry at all.
    settings = settings_with()
    assert [e.question for e in matching_faq(settings.faq.entries, "money back now", 3)] == ["How do I get a refund?"]
    assert matching_faq(settings.faq.entries, "something else", 3) == []
    text = render_ack(settings, inbound("Refund please")).get_body(("plain",)).get_content()
    assert "https://acme.example/help/refunds" in text and "help/password" not in text
    assert "Perhaps this answer helps you right away:" in text


def test_unmatched_question_gets_the_faq_link_alone(settings_with):
    # A French invoice question is offered no unrelated answer, only the help-centre link.
    raw = inbound("Question sur ma facture", body="Bonjour, ma facture est-elle correcte ?")
    message = render_ack(settings_with(), raw)
    for part in (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()):
        assert "refund" not in part and "password" not in part and "Perhaps" not in part
        assert "https://acme.example/help" in part


def test_ack_sentences_start_with_a_capital(settings_with):
    # "Hello Zoë," is followed by a sentence, so it starts with a capital letter.
    message = render_ack(settings_with(), inbound("Refund please"))
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Hello Zoë Lindström,\n\nThank you for writing" in text
    assert "<p>Thank you for writing" in message.get_body(("html",)).get_content()


def test_non_ascii_subject_and_name_round_trip(settings_with):
    # Swedish subject and name arrive intact after MIME encoding.
    message = render_ack(settings_with(), inbound("=?utf-8?q?=C3=85terbetalning_f=C3=B6r_order?="))
    assert message["Subject"] == "Re: Återbetalning för order [#1042]"
    assert message["To"].addresses[0].display_name == "Zoë Lindström"


def test_subject_tag_and_reply_prefix_are_not_repeated():
    # "Re: [#1042] x" becomes "x" before the template adds "Re:" and the tag once.
    assert bare_subject("RE: AW: [#1042] Invoice", ticket_pattern("#")) == "Invoice"


def test_header_injection_subject_stays_one_header(settings_with):
    # A decoded CR/LF cannot start a Bcc header in the ack.
    message = render_ack(settings_with(), inbound("=?utf-8?Q?Hi=0D=0ABcc:_victim@example.net?="))
    assert "Bcc" not in message
    assert message["Subject"] == "Re: Hi Bcc: victim@example.net [#1042]"


@pytest.mark.parametrize("subject", [
    "=?bogus?q?=FF?= =?bogus?q?=F0Ijqz+gg x",  # unknown charset, an unfinished word: fuzz seed 21
    "Café =?utf-8?q?=ED=A0=80?= literal",  # a word that decodes to a lone surrogate
    "=?utf-8?q?=C3=A9?= =?x?b?8A==?=",
])
def test_text_shaped_like_encoded_words_is_sent_as_the_customer_saw_it(settings_with, subject):
    # The parsed subject is repeated literally, never decoded a second time by the header registry.
    parsed = parse_message(*split_raw(inbound(subject)))
    message = render_ack(settings_with(), inbound(subject))
    assert message["Subject"] == f"Re: {parsed.subject.replace('=?', '= ?')} [#1042]"


def test_display_name_with_comma_and_quotes_is_requoted():
    # The To header keeps one mailbox even when the name has a comma.
    value = header_address('O\'Brien, Siobhan "Shiv"', "siobhan.obrien@example.com")
    parsed = BytesParser(policy=default).parsebytes(f"To: {value}\n\n".encode())
    assert [a.addr_spec for a in parsed["To"].addresses] == ["siobhan.obrien@example.com"]


def test_html_part_escapes_what_the_customer_wrote(settings_with):
    # A name or quote with markup is shown, never executed.
    raw = inbound("Hi", sender="\"<script>x</script>\" <evil@example.com>", body="<img src=x onerror=alert(1)>")
    html = render_ack(settings_with(), raw).get_body(("html",)).get_content()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_one_line_removes_controls_and_bounds_length():
    # Header values never contain line breaks and never exceed the limit.
    assert one_line("a\r\nb\x00c\u2028d") == "a b c d"
    assert len(one_line("x" * 5000)) == 200
    assert one_line("a =?utf-8?q?x?= b") == "a = ?utf-8?q?x?= b"


def test_broken_override_template_is_reported_with_file_and_line(settings_with, tmp_path):
    # A typo in a user's template is found at check time, named by file and line.
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "ack.txt.j2").write_text("Hello\n{{ customer.nmae }}\n")
    templates = Templates(folder)
    context = sample_context(acknowledger_for(settings_with(), templates), RECEIVED)
    assert re.match(r"ack.txt.j2: line 2: .*nmae", templates.check({"ack": context})[0])
    (folder / "ack.txt.j2").write_text("Hello {% if %}\n")
    assert templates.check({"ack": context})[0].startswith(str(folder / "ack.txt.j2") + ": line 1")


def test_override_failing_on_one_customer_falls_back_to_the_packaged_template(settings_with, tmp_path):
    # A template that passed check but breaks on one customer's data still sends a proper ack.
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "ack.txt.j2").write_text("Dear {{ customer.name.split()[0] }},\n")
    settings = settings_with(f'templates = "{folder}"')
    with capture_logs() as logs:
        message = render_ack(settings, inbound("Hi", sender="nobody@example.com"))
    assert "Hello there," in message.get_body(("plain",)).get_content()
    assert [e["kind"] for e in logs if e["event"] == "template_failed"] == ["ack"]


def test_templates_run_in_a_sandbox(tmp_path):
    # A template cannot reach Python internals.
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "ack.subject.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    problems = Templates(folder).check({"ack": {}})
    assert any("ack.subject.j2" in problem and "unsafe" in problem for problem in problems)


def render_digest(settings, overdue_by: list[timedelta]):
    """An escalation digest listing one thread per entry, overdue by that much (negative: not yet due)."""
    policies = build_policies(settings)
    escalator = Escalator(policies.escalation, policies.branding, Templates())
    items = []
    for ticket, overdue in enumerate(overdue_by, start=1042):
        thread = Thread(id=ticket, mailbox="support", customer_name="Zoë", customer_address="zoe@example.net",
                        subject=f"Question {ticket}", clock=1, clock_started_at=RECEIVED - timedelta(hours=24),
                        deadline_at=RECEIVED - overdue, message_count=1)
        items.append(escalator.item_context(DueItem(thread, 1), "Still waiting.", RECEIVED))
    return Templates().render_mail("escalation", escalator.context(items, RECEIVED))


@pytest.mark.parametrize(("overdue_by", "sentence"), [
    ([timedelta(minutes=5)], "One conversation needs an answer and is past its deadline."),
    ([timedelta(minutes=5), -timedelta(hours=1)], "2 conversations need an answer; 1 is past its deadline."),
    ([timedelta(minutes=5), timedelta(minutes=1)], "2 conversations need an answer; 2 are past their deadline."),
])
def test_digest_sentence_agrees_with_its_counts(settings_with, overdue_by, sentence):
    # "1 is past its deadline", "2 are past their deadline": never "1 are".
    mail = render_digest(settings_with(), overdue_by)
    assert sentence in " ".join(mail.text.split())
    assert sentence in " ".join(re.sub(r"<[^>]+>", "", mail.html).split())


def test_digest_html_title_agrees_with_its_count(settings_with):
    # The HTML title says "1 conversation needs", "2 conversations need".
    assert "1 conversation needs an answer</title>" in render_digest(settings_with(), [timedelta(minutes=5)]).html
    two = render_digest(settings_with(), [timedelta(minutes=5), timedelta(minutes=1)]).html
    assert "2 conversations need an answer</title>" in two


class _LabelCells(HTMLParser):
    """The style of each table row's first cell, when the row has a label and a value."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[dict]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "td" and self.rows:
            self.rows[-1].append(dict(attrs))


def test_digest_html_labels_keep_a_gap_before_their_values(settings_with):
    # "Answered?" (the longest label) must not run into the command beside it.
    parser = _LabelCells()
    parser.feed(render_digest(settings_with(), [timedelta(minutes=5)]).html)
    labels = [row[0] for row in parser.rows if len(row) == 2]
    assert len(labels) >= 7
    assert all("padding-right: 12px" in cell.get("style", "") for cell in labels)
