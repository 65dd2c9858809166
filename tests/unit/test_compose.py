"""Composed mail bytes: the same mail EmailMessage built, 7-bit clean, and never an injected header."""

from email.parser import BytesParser
from email.policy import default

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from mailwatch.mail.compose import compose
from mailwatch.templates import REFERENCES_KEPT, RenderedMail, build_email, header_address, one_line
from tests.reference_mail import DATE, acknowledger_in, compare_corpus, corpus_files


def test_every_shared_corpus_ack_reads_back_as_the_email_message_one(tmp_path):
    # Each ack decodes to what EmailMessage built (the 890 external mails: tests/integration/test_compose_corpus.py).
    assert compare_corpus(acknowledger_in(tmp_path), corpus_files(external=False)) > 25


def sent(subject: str = "Hi", name: str = "Zoë", **arguments):
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
