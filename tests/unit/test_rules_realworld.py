"""Rules learnt from real mail (issue 11): each class of signal, a machine it catches and a person it spares.

Every positive case here was a customer before these rules; every negative case is a
person who must still be acknowledged. The human mails of both corpora are checked
whole at the end: a rule that silences any of them fails this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailwatch.mail.parse import parse_message, split_raw
from mailwatch.mail.rules import Category, Identity, classify

SHARED = Path(__file__).resolve().parents[3] / "shared"
IDENTITY = Identity(own_addresses=frozenset({"support@acme.example"}), staff=("@acme.example",),
                    own_message_id_domains=frozenset({"acme.example"}))


def mail(headers: str, body: str = "Hello, my order 1234 has not arrived. Can you help?") -> bytes:
    lines = "\r\n".join(line.strip() for line in headers.strip().splitlines())
    if "message-id:" not in lines.lower():
        lines += "\r\nMessage-ID: <m1@example.org>"
    return (lines + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def verdict(raw: bytes):
    return classify(parse_message(*split_raw(raw)), IDENTITY)


def is_machine(raw: bytes) -> bool:
    return not verdict(raw).is_customer


PERSON = "From: Pat Lee <pat@example.org>\nTo: support@acme.example\nSubject: My order"


# --- robot senders ----------------------------------------------------------------------


@pytest.mark.parametrize("sender", [
    "post_master@vtext.example.com", "Mailer_Daemon@mx.example.org", "E500_SMTP_Mail_Service@lerctr.example",
    "Symantec_AntiVirus_for_SMTP_Gateways@csri.example", '"System Administrator"@xxx.example',
    "gmail-noreply@google.example", "do_not_reply@shop.example", "no.reply@shop.example",
    "neko-admin@example.co.jp", "list-bounces@lists.example", "golfers+owner@groups.example",
    "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@tenant.example",
])
def test_robot_local_parts_are_machines(sender: str) -> None:
    # Mail software names its mailbox after its job, however it spells it.
    assert is_machine(mail(f"From: {sender}\nTo: support@acme.example\nSubject: Delivery report"))


@pytest.mark.parametrize("sender", [
    "norah.reply@example.org", "juno-reply@example.org", "mailey@example.org", "smith.admin.jones@example.org",
    "postma@example.org", "bounceback.fitness@example.org", "owner@bakery.example", "admin@bakery.example",
    "ann+orders@example.org",
])
def test_people_whose_addresses_look_a_little_like_robots_are_acked(sender: str) -> None:
    # Tokens must match whole: "juno-reply" is no "noreply", "owner@" no "owner-list@".
    assert verdict(mail(f"From: {sender}\nTo: support@acme.example\nSubject: Question")).is_customer


@pytest.mark.parametrize("name", ["System Administrator", "Mail Delivery Subsystem", "MAILER-DAEMON"])
def test_mail_system_display_names_are_bounces(name: str) -> None:
    # "System Administrator" <x@host> is how some gateways sign their NDRs.
    raw = mail(f'From: "{name}" <gateway@host.example>\nTo: support@acme.example\nSubject: Delivery Failure')
    assert verdict(raw).category is Category.BOUNCE


def test_a_person_called_like_an_admin_role_is_acked() -> None:
    # Only whole mail-system names count, not a name containing "Administrator".
    assert verdict(mail('From: "Dana, Office Administrator" <dana@example.org>\nSubject: Invoice')).is_customer


# --- list software and envelopes ----------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Mailman-Version: 2.1.12", "X-BeenThere: list@x.example", "X-MLServer: fml 4.0"])
def test_list_software_headers_are_lists(header: str) -> None:
    # List software stamps everything it sends, its admin notices included.
    assert verdict(mail(f"{PERSON}\n{header}")).category is Category.MAILING_LIST


@pytest.mark.parametrize("return_path", [
    "<bounces-main+bratchka=amerimail.example@amerimail.example>", "<bounce-mc.us5_123.456-ann=example.org@mcsv.net>",
    "<01000189abcdef-1234@email.amazonses.com>", "<msprvs1=abc=bounces-123@sparkpostmail.com>",
    "<anything@bounce.shop.example>",
])
def test_a_bounce_processor_as_return_path_is_bulk(return_path: str) -> None:
    # A person's envelope sender is their own address; bulk mail's collects bounces.
    assert verdict(mail(f"Return-Path: {return_path}\n{PERSON}")).category is Category.BULK


@pytest.mark.parametrize("return_path", [
    "<pat@example.org>", "<SRS0=HHH=TT=example.org=pat@forwarder.example>", "<prvs=46201db6f9=pat@example.org>",
    "<pat-smith@example.org>", "<pat+orders@example.org>",
])
def test_a_persons_envelope_forwarded_or_tagged_is_acked(return_path: str) -> None:
    # SRS forwarding and BATV tagging wrap a person's address; they are no VERP.
    assert verdict(mail(f"Return-Path: {return_path}\n{PERSON}")).is_customer


@pytest.mark.parametrize("header", ["Sender: announce-bounces@lists.example", "Errors-To: macarthur-bounces@lerctr.example",
                                    "Sender: newsletter@shop.example"])
def test_a_list_or_announcement_sender_is_bulk(header: str) -> None:
    # Sender:/Errors-To: name who runs a mailing.
    assert is_machine(mail(f"{PERSON}\n{header}"))


def test_a_secretary_as_sender_is_acked() -> None:
    # Sender: on behalf of someone is a person's own mailbox.
    assert verdict(mail(f"{PERSON}\nSender: secretary@example.org")).is_customer


def test_mail_addressed_to_a_bounce_address_is_a_bounce() -> None:
    # Only machines answer the envelope sender (challenge systems, gateways).
    raw = mail("From: exampleuser@bluebottle.example\nTo: automated-bounces+1234@email.example\nSubject: RE: BLAH")
    assert verdict(raw).category is Category.BOUNCE
    assert verdict(mail(f"{PERSON}\nTo: support@acme.example, bob@example.org")).is_customer


# --- vendor headers, challenge-response, helpdesks ----------------------------------------


def test_apple_vacation_is_an_auto_reply() -> None:
    # iCloud's vacation responder sets X-Apple-Action and nothing standard.
    assert is_machine(mail(f"{PERSON}\nX-Apple-Action: VACATION"))
    assert verdict(mail(f"{PERSON}\nX-Apple-Action: NONE")).is_customer


def test_challenge_response_headers_are_auto_replies() -> None:
    # Bluebottle asks every new sender to prove being human.
    assert is_machine(mail(f"{PERSON}\nX-Bluebottle-Request: <1234>"))


@pytest.mark.parametrize("headers", [
    "From: Globex <support@globex.example>\nSubject: [globex.example #4821] AutoReply: Printer broken",
    "From: Globex <support@globex.example>\nRT-Ticket: globex.example #4821\nSubject: [globex.example #4821] Resolved: Printer",
    "From: Globex <help@globex.example>\nX-Zendesk-From-Account-Id: 7d2c1e9\nSubject: Request received: Printer",
    "From: Globex <help@globex.example>\nX-Mailer: Freshdesk\nSubject: Ticket Received - [#77] Printer",
    "From: Globex <help@globex.example>\nX-Zammad-Ticket-Number: 31001\nSubject: [Ticket#31001] Your ticket has been received",
])
def test_another_helpdesks_acknowledgment_is_an_auto_reply(headers: str) -> None:
    # Another helpdesk's ack or status notice: its marker and a notice subject.
    assert verdict(mail(headers)).category in (Category.AUTO_REPLY, Category.OUT_OF_OFFICE)


@pytest.mark.parametrize("headers", [
    "From: Kim <kim@globex.example>\nRT-Ticket: globex.example #4821\nSubject: [globex.example #4821] Printer still broken",
    "From: Kim <kim@globex.example>\nSubject: Resolved: the printer works now, thanks",
    "From: Kim <kim@globex.example>\nSubject: Re: [#1042] AutoReply: you sent me an autoreply",
])
def test_a_person_writing_through_or_about_a_helpdesk_is_acked(headers: str) -> None:
    # Agents' correspondence and people quoting notice words are people.
    assert verdict(mail(headers)).is_customer


# --- subjects -----------------------------------------------------------------------------


@pytest.mark.parametrize("subject", [
    "Automatic reply: My order", "Auto reply: Nyaan", "Out of Office AutoReply: x", "Abwesenheitsnotiz: Ihre Anfrage",
    "Réponse automatique : votre commande", "RÉPONSE AUTOMATIQUE: x", "Respuesta automática: pedido",
    "Arpus biroja atrasanas automatiska atbilde: subjecting", "[Automatyczna odpowiedź] test",
    "Автоматический ответ: заказ", "自動回覆: 訂單", "AUTO: Smith, John is out of the office. (returning 05/01/2010)",
    "[AUTO GENERATED] Weekly report", "[Automated message] Password changed",
])
def test_auto_reply_subject_prefixes_are_auto_replies(subject: str) -> None:
    # A responder puts its label first; anchored there, in many languages.
    assert is_machine(mail(f"From: kim@example.org\nSubject: {subject}"))


@pytest.mark.parametrize("subject", [
    "Re: your automatic reply did not help", "Automatic reply did not help", "Out of office hours support?",
    "My auto: reply is broken", "Auto: my car insurance claim", "Vacation rental booking #12",
    "Fwd: Automatic reply: order 1234", "Question about [AUTO GENERATED] reports",
])
def test_people_writing_about_auto_replies_are_acked(subject: str) -> None:
    # Only a prefix at the very start, closed by ":" or "]", counts.
    assert verdict(mail(f"From: kim@example.org\nSubject: {subject}")).is_customer


# --- feedback loops and text-only NDRs ------------------------------------------------------

JMRP = ("From: staff@hotmail.example\nTo: abuse@example.org\nSubject: complaint about message from 192.0.2.222\n"
        'Content-Type: multipart/mixed; boundary="b"')
ATTACHED = "--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nhi\r\n--b--"


def test_a_hotmail_complaint_is_a_bounce() -> None:
    # JMRP is a plain multipart/mixed with the reported message attached.
    assert verdict(mail(JMRP, ATTACHED)).category is Category.BOUNCE


def test_a_person_complaining_about_a_message_is_acked() -> None:
    # The same words from a person, nothing attached, or about a person, are a customer.
    assert verdict(mail("From: kim@example.org\nSubject: Complaint about message from your sales team")).is_customer
    plain = JMRP.replace('multipart/mixed; boundary="b"', "text/plain")
    assert verdict(mail(plain, "I want to complain.")).is_customer


def test_a_feedback_report_part_is_a_bounce() -> None:
    # ARF without its multipart/report wrapper still carries message/feedback-report.
    body = "--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n--b--"
    assert is_machine(mail('From: fbl@isp.example\nSubject: report\nContent-Type: multipart/mixed; boundary="b"', body))


NDR_BODY = "*****\nYour message could not be delivered to\nduke@ald.example\n*****"


def test_an_ndr_in_words_is_a_bounce() -> None:
    # Subject and body opening both say delivery failed.
    raw = mail("From: Dsicspiibs.spi@socgen.example\nSubject: RE: Your message: non remis (delivery failed)", NDR_BODY)
    assert verdict(raw).category is Category.BOUNCE


@pytest.mark.parametrize(("subject", "body"), [
    ("Delivery failed", "Hi, my parcel delivery failed twice. Your message could not be delivered to me either."),
    ("Re: invoice", NDR_BODY),
    ("Undeliverable invoice?", "Hello, I got an error when I sent the invoice. What should I do?"),
])
def test_a_person_talking_about_delivery_problems_is_acked(subject: str, body: str) -> None:
    # One signal alone, or the words not at the start, is a person.
    assert verdict(mail(f"From: kim@example.org\nSubject: {subject}", body)).is_customer


# --- nobody is silenced -----------------------------------------------------------------------


def human_mails() -> list[tuple[str, bytes]]:
    found = []
    external = SHARED / "corpus-external"
    if (external / "manifest.json").is_file():
        manifest = json.loads((external / "manifest.json").read_text())
        found += [(n, (external / "mails" / n).read_bytes()) for n, e in manifest.items() if e["expect"] == "ack"]
    invented = SHARED / "corpus"
    if (invented / "manifest.json").is_file():
        manifest = json.loads((invented / "manifest.json").read_text())
        found += [(e["file"], (invented / e["file"]).read_bytes()) for e in manifest if e["should_ack"]]
    return found


@pytest.mark.skipif(not human_mails(), reason="the shared corpora are absent")
def test_no_human_mail_of_either_corpus_is_silenced() -> None:
    # Every person of both corpora is a customer; a rule that catches one is too broad.
    silenced = [f"{name}: {v.category.value}: {v.reason}" for name, raw in human_mails()
                if not (v := verdict(raw)).is_customer]
    assert not silenced, "\n".join(silenced)
    assert len(human_mails()) >= 22 + 20
