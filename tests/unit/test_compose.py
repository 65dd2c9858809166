"""Composed mail bytes: the same mail EmailMessage built, 7-bit clean, and never an injected header."""

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from mailwatch.config import load_settings
from mailwatch.db.models import Thread
from mailwatch.mail.compose import compose
from mailwatch.mail.parse import parse_message, split_raw
from mailwatch.mail.rules import reply_address
from mailwatch.pipeline.acks import Acknowledger
from mailwatch.pipeline.threads import ticket_pattern
from mailwatch.policies import build_policies
from mailwatch.templates import REFERENCES_KEPT, RenderedMail, Templates, build_email, header_address, one_line
from tests.unit.test_templates import CONFIG

SHARED = Path(__file__).resolve().parents[3] / "shared"
NOW = datetime(2026, 6, 9, 12, 2, tzinfo=UTC)
DATE = "Tue, 09 Jun 2026 12:02:00 +0000"
ACK_HEADERS = {"Auto-Submitted": "auto-replied", "Precedence": "bulk", "X-Auto-Response-Suppress": "All",
               "X-Mailwatch-Loop": "support@acme.example"}


def reference_email(
    rendered: RenderedMail, *, sender: str, to: str, message_id: str, date: str,
    in_reply_to: str | None = None, references: Sequence[str] = (),
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """The EmailMessage builder `build_email` replaced, kept here as the reference it must match."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = one_line(rendered.subject, limit=400)
    message["Date"] = date
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = " ".join([*references[-(REFERENCES_KEPT - 1):], in_reply_to])
    for key, value in (extra_headers or {}).items():
        message[key] = one_line(value)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message.as_bytes(policy=SMTP)


def corpus_files() -> list[Path]:
    files = sorted((SHARED / "corpus").glob("*.eml")) + sorted((SHARED / "corpus-external" / "mails").rglob("*.eml"))
    if not files:
        pytest.skip(f"the corpora are not under {SHARED}")
    return files


@pytest.fixture(scope="module")
def acknowledger(tmp_path_factory) -> Acknowledger:
    path = tmp_path_factory.mktemp("compose") / "mailwatch.toml"
    path.write_text(CONFIG.format(templates=""))
    policies = build_policies(load_settings(path))
    return Acknowledger(policies.ack, policies.branding, Templates(None), ticket_pattern("#"))


def decoded(raw: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str | None, str]]]:
    """Headers as decoded text (boundary aside) and each part's type, charset and decoded text.

    Runs of whitespace count as one space: EmailMessage folds a long Message-ID onto its own
    line, which reads back with a leading space; the values are single-spaced lines anyway.
    """
    message = BytesParser(policy=default).parsebytes(raw)
    headers = [(name, " ".join(str(value).split())) for name, value in message.items() if name != "Content-Type"]
    headers.append(("Content-Type", message.get_content_type()))
    parts = [(part.get_content_type(), part.get_content_charset(), part.get_content().replace("\r\n", "\n"))
             for part in message.iter_parts()]
    return headers, parts


def ack_arguments(acknowledger: Acknowledger, raw: bytes, ticket: int) -> dict | None:
    """What `Acknowledger._queue` passes to build_email for this customer mail, None if no one to answer."""
    parsed = parse_message(*split_raw(raw))
    recipient = reply_address(parsed)
    if recipient is None:
        return None
    thread = Thread(id=ticket, mailbox="support", deadline_at=NOW)
    rendered = acknowledger.templates.render_mail("ack", acknowledger.context(thread, parsed, recipient, NOW))
    return dict(rendered=rendered, sender=acknowledger.branding.sender, to=header_address(recipient.name, recipient.address),
                message_id=f"<mailwatch.{ticket}.1781006520.0123456789ab@acme.example>", date=DATE,
                in_reply_to=None if parsed.message_id_synthesised else parsed.message_id,
                references=parsed.references, extra_headers=ACK_HEADERS)


def test_every_corpus_ack_reads_back_as_the_email_message_one(acknowledger):
    # Each ack decodes to what EmailMessage built; so does a digest sent from each customer's name.
    compared = 0
    for number, path in enumerate(corpus_files()):
        arguments = ack_arguments(acknowledger, path.read_bytes(), number + 1)
        if arguments is None:
            continue
        for variant in (arguments, *digest_variant(arguments)):
            new = build_email(**variant).content
            assert decoded(new) == decoded(reference_email(**variant)), path.name
            assert new.isascii() and not re.search(rb"(?<!\r)\n|\r(?!\n)", new), path.name  # 7-bit, CRLF only
        compared += 1
    assert compared > 800  # both corpora were read, not only the first files


def digest_variant(ack: dict) -> list[dict]:
    """The same rendering as an escalation digest whose From is the customer's name, if that name is unusual.

    Only names beyond plain atoms, so the reference's slow header registry runs where it tells something.
    """
    if re.fullmatch(r"[\w .-]*<[^>]*>|[^<>]*", ack["to"], re.ASCII):
        return []
    return [{**ack, "sender": ack["to"], "to": "lead@acme.example", "in_reply_to": None,
             "extra_headers": {"Auto-Submitted": "auto-generated", "X-Priority": "1"}}]


def sent(subject: str = "Hi", name: str = "Zoë", **arguments) -> tuple[bytes, EmailMessage]:
    mail = build_email(RenderedMail(subject, "Hello\n", "<p>Hello</p>\n"), sender="Acme Support <support@acme.example>",
                       to=header_address(name, "zoe@example.net"), message_id="<mailwatch.1.2.ab@acme.example>",
                       date=DATE, **arguments)
    return mail.content, BytesParser(policy=default).parsebytes(mail.content)


HEADER_NAMES = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.net", "Hi\nBcc: x@y", "=?utf-8?q?Bcc:?= =?x",
                                     "a\u2028Bcc: x@y\u0085To: z@y"])
def test_line_breaks_and_encoded_word_lookalikes_never_make_a_header(subject):
    # The subject stays one header whatever the customer put in it, shown as one_line shows it.
    raw, message = sent(subject=subject, name=subject)
    assert list(message.keys()) == HEADER_NAMES
    assert message["Subject"] == one_line(subject, limit=400)
    assert message["To"].addresses[0].display_name == one_line(subject, 120)
    assert all(line[:1] in (b" ", b"\t") or b":" in line for line in header_lines(raw))


def test_a_line_break_given_to_the_composer_itself_is_refused():
    # A caller's unsanitised Message-ID fails loudly (the ack is unsendable), never injects.
    with pytest.raises(ValueError, match="line break"):
        compose([("Message-ID", "<a@b>\r\nBcc: x@y")], "text", "html")


def test_non_ascii_subject_and_name_round_trip_in_encoded_words():
    # Swedish, Cyrillic and Japanese come back intact, sent as RFC 2047 words in 7-bit.
    subject = "Re: Återbetalning för order — заказ 注文 [#1042]"
    raw, message = sent(subject=subject, name="Lindström, Zoë \"Z\"")
    assert message["Subject"] == subject and b"=?utf-8?" in raw and raw.isascii()
    assert (message["To"].addresses[0].display_name, message["To"].addresses[0].addr_spec) == \
        ('Lindström, Zoë "Z"', "zoe@example.net")


@pytest.mark.parametrize("subject", [" ".join(["Refund"] * 80), "x" * 390, "ü" * 390, "Re: " + "abc défg " * 40])
def test_a_long_subject_is_folded_and_reads_back_whole(subject):
    # Every header line stays within 78 characters; unfolding gives the subject back.
    raw, message = sent(subject=subject)
    assert message["Subject"] == one_line(subject, limit=400)
    assert max(len(line) for line in header_lines(raw)) <= 78


def test_message_ids_and_addresses_stay_whole_tokens_on_valid_lines():
    # Threading headers list each ID intact (folded between IDs), the To has one mailbox.
    references = tuple(f"<{'r' * 60}{n}@example.com>" for n in range(12))
    raw, message = sent(name="O'Brien, Siobhan", in_reply_to="<abc@example.net>", references=references)
    assert message["Message-ID"] == "<mailwatch.1.2.ab@acme.example>"
    assert message["References"].split() == [*references[-(REFERENCES_KEPT - 1):], "<abc@example.net>"]
    assert max(len(line) for line in header_lines(raw)) <= 78
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [("O'Brien, Siobhan", "zoe@example.net")]


def test_bodies_are_seven_bit_and_decode_to_the_rendered_text():
    # ASCII goes as 7bit, mostly-Latin as quoted-printable, mostly-Cyrillic as base64.
    for text, encoding in [("plain words\n", "7bit"), ("Grüße, Zoë\n" + "x" * 100 + "\n", "quoted-printable"),
                           ("Здравствуйте, спасибо за письмо\n", "base64")]:
        mail = build_email(RenderedMail("Hi", text, text), sender="a@b.example", to="c@d.example",
                           message_id="<m@b.example>", date=DATE)
        part = BytesParser(policy=default).parsebytes(mail.content).get_body(("plain",))
        assert (part["Content-Transfer-Encoding"], part.get_content().replace("\r\n", "\n")) == (encoding, text)
        assert mail.content.isascii()


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=st.text(max_size=500), name=st.text(max_size=150))
def test_any_subject_and_name_read_back_as_sanitised_and_inject_nothing(subject, name):
    # Whatever the characters, parsing the bytes back gives one_line's text and only our headers.
    raw, message = sent(subject=subject, name=name)
    assert list(message.keys()) == HEADER_NAMES
    assert message["Subject"] == one_line(subject, limit=400)
    named = header_address(name, "zoe@example.net") != "zoe@example.net"  # else the bare address is sent
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == \
        [(one_line(name, 120) if named else "", "zoe@example.net")]
    assert raw.isascii() and all(len(line) <= 998 for line in header_lines(raw))
