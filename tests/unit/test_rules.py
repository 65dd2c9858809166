"""mail/rules.py: DESIGN.md "Never reply to a machine", staff and own mail, and the ack decision."""

from __future__ import annotations

import json
from collections import Counter
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailwatch.mail.parse import Address, ParsedMessage, parse_message, split_raw
from mailwatch.mail.rules import (
    AckFacts,
    AckOutcome,
    Category,
    Identity,
    Verdict,
    classify,
    decide_ack,
    is_staff,
    normalised_address,
    reply_address,
    reply_to_own_address,
    staff_answer,
)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
IDENTITY = Identity(
    own_addresses=frozenset({"support@acme.example", "billing@acme.example"}),
    staff=("@acme.example", "alice@partner.example"),
    own_message_id_domains=frozenset({"acme.example"}),
)
CORPUS_IDENTITY = Identity(
    own_addresses=frozenset({"support@acme.example"}),
    staff=("@acme.example",),
    own_message_id_domains=frozenset({"acme.example"}),
)
TRUSTING = Identity(  # believes the Authentication-Results of Acme's own MX, as the corpus has them
    own_addresses=frozenset({"support@acme.example", "billing@acme.example"}),
    staff=("@acme.example", "alice@partner.example"),
    authserv_ids=("mx.acme.example",),
)
# Issue 10: a Reply-To in another domain gets the ack only for an authenticated From.
ACK_TO_CHANGED = {"09-reply-to-differs.eml": "marta.k@kowalski-family.example"}


def _manifest() -> list[dict]:
    path = CORPUS / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def expected_category(entry: dict) -> Category:
    """Manifest categories → ours: customer-ish and ackable malformed mail are customers."""
    if entry["category"] in ("customer", "customer-reply"):
        return Category.CUSTOMER
    if entry["category"] == "malformed":
        return Category.CUSTOMER if entry["should_ack"] else Category.NO_SENDER
    return Category(entry["category"])


def message(headers: str = "", *, sender: str = "Pat <pat@example.com>", subject: str = "Help please") -> ParsedMessage:
    """A small message from `sender` with extra dedented header lines."""
    top = f"From: {sender}\nTo: support@acme.example\nSubject: {subject}\nMessage-ID: <m1@example.com>\n"
    return parse_message((top + textwrap.dedent(headers).strip() + "\n").encode("utf-8"), b"Hello, please help.\n")


def category(headers: str = "", **kwargs: str) -> Category:
    return classify(message(headers, **kwargs), IDENTITY).category


# --- the corpus -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", _manifest(), ids=lambda e: e["file"])
def test_corpus_message_lands_in_its_category(entry: dict) -> None:
    # Each corpus message gets the manifest's category, and ackable ones the manifest's ack address.
    parsed = parse_message(*split_raw((CORPUS / entry["file"]).read_bytes()))
    verdict = classify(parsed, CORPUS_IDENTITY)
    assert verdict.category == expected_category(entry), verdict.reason
    if entry["should_ack"]:
        recipient = reply_address(parsed)
        assert recipient is not None and recipient.address == ACK_TO_CHANGED.get(entry["file"], entry["ack_to"])


def test_plain_message_is_a_customer() -> None:
    # Without any machine, list, staff or own signal a message is a customer's.
    verdict = classify(message(), IDENTITY)
    assert verdict.is_customer and verdict.category is Category.CUSTOMER


# --- Auto-Submitted ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["auto-replied", "auto-generated", "Auto-Notified; foo=bar", "AUTO-REPLIED", "", "x-weird"]
)
def test_auto_submitted_other_than_no_is_automatic(value: str) -> None:
    # Auto-Submitted with any value but "no" (case and parameters ignored) marks an automatic reply.
    assert category(f"Auto-Submitted: {value}") is Category.AUTO_REPLY


@pytest.mark.parametrize("value", ["no", "No", "no; reason=human"])
def test_auto_submitted_no_is_a_person(value: str) -> None:
    # "Auto-Submitted: no" explicitly means a human sent it (corpus 10).
    assert category(f"Auto-Submitted: {value}") is Category.CUSTOMER


def test_reason_names_the_deciding_header() -> None:
    # The verdict's reason names the header and value that decided it.
    assert classify(message("Auto-Submitted: auto-replied"), IDENTITY).reason == "Auto-Submitted: auto-replied"


# --- Precedence, X-Loop, lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Precedence: bulk", Category.BULK),
        ("Precedence: junk", Category.BULK),
        ("precedence: BULK", Category.BULK),
        ("X-Precedence: bulk", Category.BULK),
        ("Precedence: list", Category.MAILING_LIST),
        ("X-Precedence: list", Category.MAILING_LIST),
        ("Precedence: auto_reply", Category.AUTO_REPLY),
        ("Precedence: first-class", Category.CUSTOMER),
    ],
)
def test_precedence_values(header: str, expected: Category) -> None:
    # Precedence/X-Precedence bulk and junk are bulk, list is a list, auto_reply is automatic.
    assert category(header) is expected


def test_x_loop_is_automatic() -> None:
    # Any X-Loop header marks mail that already went round a responder.
    assert category("X-Loop: helpdesk@example.org") is Category.AUTO_REPLY


@pytest.mark.parametrize(
    "name", ["List-Id", "List-Post", "List-Owner", "List-Subscribe", "List-Help", "List-Archive", "LIST-ID"]
)
def test_list_headers_mean_a_mailing_list(name: str) -> None:
    # Any List-* header (but List-Unsubscribe) marks mailing-list traffic.
    assert category(f"{name}: <mailto:x@lists.example.org>") is Category.MAILING_LIST


def test_list_unsubscribe_alone_means_bulk() -> None:
    # List-Unsubscribe without other list headers is a newsletter: bulk.
    assert category("List-Unsubscribe: <mailto:u@news.example>") is Category.BULK


# --- X-Auto-Response-Suppress and the X-Autoreply family --------------------------------


@pytest.mark.parametrize("value", ["All", "AutoReply", "OOF", "DR", "RN", "NRN", "DR, RN", "rn,nrn", "DR,  OOF"])
def test_auto_response_suppress_values_count(value: str) -> None:
    # X-Auto-Response-Suppress is a comma list; All, AutoReply, OOF, DR, RN or NRN mark machine mail.
    assert category(f"X-Auto-Response-Suppress: {value}") is Category.AUTO_REPLY


@pytest.mark.parametrize("value", ["None", "", "JustForFun"])
def test_auto_response_suppress_other_values_do_not(value: str) -> None:
    # Other X-Auto-Response-Suppress values say nothing about the sender.
    assert category(f"X-Auto-Response-Suppress: {value}") is Category.CUSTOMER


@pytest.mark.parametrize(
    "name",
    ["X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autoresponse", "X-AutoReply-From", "X-Mail-Autoreply"],
)
def test_autoreply_header_family_counts_by_presence(name: str) -> None:
    # The X-Autoreply family marks an automatic reply by its presence (corpus 22).
    assert category(f"{name}: yes") is Category.AUTO_REPLY


def test_autoreply_header_saying_no_is_a_person() -> None:
    # "X-Autoreply: no" is read like "Auto-Submitted: no".
    assert category("X-Autoreply: no") is Category.CUSTOMER


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("X-Autogenerated: Reply", Category.AUTO_REPLY),
        ("X-Autogenerated: Forward", Category.CUSTOMER),
        ("X-FC-Machinegenerated: true", Category.AUTO_REPLY),
        ("X-FC-Machinegenerated: false", Category.CUSTOMER),
        ("X-AMAZON-MAIL-RELAY-TYPE: notification", Category.AUTO_REPLY),
        ("X-Amazon-Mail-Relay-Type: other", Category.CUSTOMER),
    ],
)
def test_machine_headers_count_only_with_their_value(header: str, expected: Category) -> None:
    # X-Autogenerated: Reply, X-FC-Machinegenerated: true and X-AMAZON-MAIL-RELAY-TYPE: notification count.
    assert category(header) is expected


# --- bounces and receipts ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        "Return-Path: <>",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=x",
        "Content-Type: multipart/report; report-type=feedback-report; boundary=x",
        "X-Failed-Recipients: gone@example.org",
        "Return-Path: <MAILER-DAEMON>",
    ],
)
def test_bounce_signals(headers: str) -> None:
    # A null Return-Path, a non-MDN multipart/report or X-Failed-Recipients marks a bounce.
    assert category(headers) is Category.BOUNCE


@pytest.mark.parametrize(
    "sender", ["MAILER-DAEMON@mx.example.org", "postmaster@example.org", "Mailer-Daemon@x.example"]
)
def test_bounce_sender_local_parts(sender: str) -> None:
    # mailer-daemon@ and postmaster@ senders are bounces, whatever the case.
    assert category(sender=sender) is Category.BOUNCE


def test_read_receipt_wins_over_a_null_return_path() -> None:
    # An MDN is a read receipt even with the null Return-Path RFC 8098 recommends (corpus 16).
    headers = "Return-Path: <>\nContent-Type: multipart/report; report-type=disposition-notification; boundary=x"
    assert category(headers) is Category.READ_RECEIPT


# --- robot and list local parts ---------------------------------------------------------


@pytest.mark.parametrize(
    "local",
    ["noreply", "no-reply", "NoReply", "donotreply", "do-not-reply", "no_reply", "noreply-billing", "listserv",
     "majordomo", "owner-foo", "foo-request", "bounce", "bounces", "bounces+123-abc"],
)
def test_robot_local_parts_are_automatic(local: str) -> None:
    # noreply-style, list software, owner-*, *-request and bounce(s) local parts are machines (corpus 19).
    assert category(sender=f"Robot <{local}@example.com>") is Category.AUTO_REPLY


@pytest.mark.parametrize("local", ["owner", "request", "bouncer", "reply", "norepl", "ownerfoo", "requested"])
def test_ordinary_local_parts_are_people(local: str) -> None:
    # Names that merely resemble robot names stay customers.
    assert category(sender=f"{local}@example.com") is Category.CUSTOMER


def test_noreply_reply_to_is_automatic() -> None:
    # A Reply-To of noreply@ would send the ack to a robot, so the message counts as automatic.
    assert category("Reply-To: noreply@example.com") is Category.AUTO_REPLY


# --- spam -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("X-Spam-Flag: YES", Category.SPAM),
        ("X-Spam-Flag: yes", Category.SPAM),
        ("X-Spam-Status: Yes, score=14.2 required=5.0", Category.SPAM),
        ("X-Spam-Status: No, score=0.1 required=5.0", Category.CUSTOMER),
        ("X-Spam-Flag: NO", Category.CUSTOMER),
    ],
)
def test_spam_verdicts(header: str, expected: Category) -> None:
    # X-Spam-Flag: YES or X-Spam-Status: Yes is spam; the "No" forms are not.
    assert category(header) is expected


# --- own mail, own addresses, staff -----------------------------------------------------


def test_own_message_id_is_mailwatchs_own() -> None:
    # A Message-ID <mailwatch.…@own-domain> is one of mailwatch's own messages.
    parsed = parse_message(b"From: support@acme.example\r\nMessage-ID: <mailwatch.1036.17494@ACME.example>\r\n")
    assert classify(parsed, IDENTITY).category is Category.OWN_MESSAGE


def test_mailwatch_prefix_on_foreign_domain_is_not_ours() -> None:
    # The mailwatch. prefix counts only with one of our own Message-ID domains.
    parsed = parse_message(b"From: pat@example.com\r\nMessage-ID: <mailwatch.1@example.com>\r\n")
    assert classify(parsed, IDENTITY).category is Category.CUSTOMER


def test_loop_header_is_mailwatchs_own() -> None:
    # Any X-Mailwatch-Loop header marks mail mailwatch sent, even from elsewhere.
    assert category("X-Mailwatch-Loop: support@acme.example") is Category.OWN_MESSAGE


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ("", "Acme <support@acme.example>"),
        ("", "SUPPORT@ACME.EXAMPLE"),
        ("", "billing@acme.example"),
    ],
)
def test_own_addresses(headers: str, sender: str) -> None:
    # Mail From a watched mailbox is never acked: that would mail ourselves.
    assert category(headers, sender=sender) is Category.OWN_ADDRESS


@pytest.mark.parametrize("headers", ["Sender: support@acme.example", "Reply-To: support@acme.example",
                                     "Sender: alice@acme.example", "Reply-To: alice@acme.example"])
def test_sender_and_reply_to_never_make_staff_or_own(headers: str) -> None:
    # Anyone can write Sender and Reply-To: an outsider's From stays a customer's (forgeries 3 and 4).
    assert category(headers) is Category.CUSTOMER


def test_reply_to_own_address_only_stops_the_ack() -> None:
    # A Reply-To of a watched mailbox suppresses the ack under its own reason; it answers nothing.
    parsed = message("Reply-To: support@acme.example")
    assert reply_to_own_address(parsed, IDENTITY)
    assert decide(reply_to_own=True) is AckOutcome.REPLY_TO_OWN
    assert staff_answer(parsed, classify(parsed, TRUSTING), TRUSTING) is None


def test_own_address_wins_over_staff_domain() -> None:
    # support@acme.example lies inside the staff domain @acme.example, yet counts as own (corpus 21 vs 26).
    assert category(sender="support@acme.example") is Category.OWN_ADDRESS
    assert category(sender="alice@acme.example") is Category.STAFF


@pytest.mark.parametrize("sender", ["alice@acme.example", "Bob <BOB@Acme.Example>", "alice@partner.example"])
def test_staff_senders(sender: str) -> None:
    # A staff address or an address in a staff @domain is staff.
    assert category(sender=sender) is Category.STAFF


def test_staff_out_of_office_is_automated_not_staff() -> None:
    # A staff member's out-of-office is an automatic reply, never a staff answer.
    oof = message("Auto-Submitted: auto-replied", sender="alice@acme.example", subject="Out of office")
    verdict = classify(oof, IDENTITY)
    assert verdict.category is Category.OUT_OF_OFFICE


def test_is_staff_matches_exact_domain_only() -> None:
    # "@domain" entries match that exact domain, case-insensitively, and not its subdomains.
    staff = ("@acme.example", "carol@partner.example")
    assert is_staff("Dave@ACME.example", staff)
    assert is_staff("CAROL@partner.example", staff)
    assert not is_staff("dave@eu.acme.example", staff)
    assert not is_staff("dave@notacme.example", staff)
    assert not is_staff("dan@partner.example", staff)
    assert not is_staff("acme.example", staff)


def test_identity_lowercases_what_it_is_given() -> None:
    # Identity stores addresses and domains lowercased, so config case does not matter.
    identity = Identity(
        own_addresses={"Support@Acme.Example"}, own_message_id_domains={"ACME.example"}  # type: ignore[arg-type]
    )
    assert identity.own_addresses == frozenset({"support@acme.example"})
    assert identity.own_message_id_domains == frozenset({"acme.example"})


# --- out of office ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["Out of Office: back Monday", "Automatic reply: Your ticket", "Autoreply: hi", "Auto-Reply", "Abwesenheitsnotiz",
     "Réponse automatique : absent", "Autosvar: Re: order", "On vacation", "I am away until June",
     "Respuesta automática", "Automatisch antwoord", "AUTO: Ann is out of the office"],
)
def test_absence_subjects_make_an_auto_reply_out_of_office(subject: str) -> None:
    # An automatic reply whose subject reads like an absence notice is out-of-office.
    assert category("Auto-Submitted: auto-replied", subject=subject) is Category.OUT_OF_OFFICE


def test_absence_subject_alone_is_not_automatic() -> None:
    # A person may write "Out of office" in a subject; without a machine signal it is a customer.
    assert category(subject="Out of office printer broken") is Category.CUSTOMER


def test_other_automatic_replies_stay_auto_reply() -> None:
    # A helpdesk receipt with no absence wording is an auto-reply (corpus 13).
    receipt = category("Auto-Submitted: auto-generated", subject="Re: [#1038] We received your message")
    assert receipt is Category.AUTO_REPLY


# --- senders and the reply address ------------------------------------------------------


def test_missing_from_means_no_sender() -> None:
    # Without a From there is no one to acknowledge, even with a Return-Path (corpus 37).
    parsed = parse_message(b"Return-Path: <www@example.net>\r\nSubject: form\r\n")
    assert classify(parsed, IDENTITY) == Verdict(Category.NO_SENDER, "no From header")
    assert reply_address(parsed) is None


def test_unparsable_from_means_no_sender() -> None:
    # A From without any usable address is no sender.
    assert category(sender="undisclosed-recipients:;") is Category.NO_SENDER


def test_several_from_without_sender_means_no_sender() -> None:
    # Two From mailboxes and no Sender leave the author ambiguous: no ack to either (corpus 38).
    parsed = message(sender="Lee <lee@example.com>, Dana <dana@example.net>")
    assert classify(parsed, IDENTITY).category is Category.NO_SENDER
    assert reply_address(parsed) is None


def test_several_from_with_sender_replies_to_sender() -> None:
    # With several From mailboxes, the Sender is the one mailbox responsible (RFC 5322 3.6.2).
    parsed = message("Sender: Lee <lee@example.com>", sender="Lee <lee@example.com>, Dana <dana@example.net>")
    assert classify(parsed, IDENTITY).is_customer
    assert reply_address(parsed) == Address("Lee", "lee@example.com")


def test_reply_to_wins_over_from_in_the_same_domain() -> None:
    # The ack goes to the first Reply-To address when it is in the From's domain.
    parsed = message("Reply-To: Work <work@example.com>, other@example.org")
    assert reply_address(parsed) == Address("Work", "work@example.com")


def test_reply_to_in_another_domain_needs_an_authenticated_from() -> None:
    # Otherwise anyone could aim acks at a victim: the ack goes to the From (corpus 09 unauthenticated).
    parsed = message("Reply-To: Victim <victim+7@example.org>")
    assert reply_address(parsed) == Address("Pat", "pat@example.com")
    assert reply_address(parsed, from_authenticated=True) == Address("Victim", "victim+7@example.org")


@pytest.mark.parametrize(("given", "key"), [("Victim+7@Example.NET", "victim@example.net"),
                                            ("victim@example.net", "victim@example.net"),
                                            ("a+b+c@x.example", "a@x.example"), ("postmaster", "postmaster")])
def test_rate_limits_key_on_the_normalised_address(given: str, key: str) -> None:
    # Case and "+detail" make no new mailbox: victim+1 … victim+250 are one victim.
    assert normalised_address(given) == key


def test_single_from_is_the_reply_address() -> None:
    # Without Reply-To, the ack goes to the single From.
    assert reply_address(message()) == Address("Pat", "pat@example.com")


# --- decide_ack -------------------------------------------------------------------------

NOW = datetime(2025, 6, 10, 12, 0, tzinfo=timezone.utc)
CUSTOMER = Verdict(Category.CUSTOMER, "no signal")
PAT = Address("Pat", "pat@example.com")
FRESH = AckFacts(thread_acknowledged=False, last_ack_to_sender_at=None, acks_in_last_hour=0)
LIMITS = {
    "enabled": True, "max_age": timedelta(hours=1), "per_sender_interval": timedelta(hours=24), "max_per_hour": 200,
}


def decide(
    verdict: Verdict = CUSTOMER, recipient: Address | None = PAT, *, age: timedelta = timedelta(minutes=1),
    facts: AckFacts = FRESH, **limits: object,
) -> AckOutcome:
    decision = decide_ack(verdict, recipient, NOW - age, NOW, facts, **{**LIMITS, **limits})  # type: ignore[arg-type]
    assert decision.send == (decision.outcome is AckOutcome.SEND) and decision.reason
    return decision.outcome


def test_new_customer_thread_gets_an_ack() -> None:
    # A fresh customer message in an unacknowledged thread is acknowledged.
    assert decide() is AckOutcome.SEND


def test_disabled_acks_send_nothing() -> None:
    # acknowledgment.enabled = false stops every ack before anything else is considered.
    assert decide(Verdict(Category.BOUNCE, "x"), enabled=False) is AckOutcome.DISABLED


@pytest.mark.parametrize("cat", [c for c in Category if c is not Category.CUSTOMER])
def test_only_customers_get_acks(cat: Category) -> None:
    # Every category but CUSTOMER is suppressed.
    assert decide(Verdict(cat, "x")) is AckOutcome.NOT_CUSTOMER


def test_no_recipient_no_ack() -> None:
    # Without a single reply address there is nobody to acknowledge.
    assert decide(recipient=None) is AckOutcome.NO_RECIPIENT


def test_acknowledged_thread_gets_no_second_ack() -> None:
    # An ack goes once per thread (corpus 24 follows 23).
    assert decide(facts=AckFacts(True, None, 0)) is AckOutcome.NOT_NEW_THREAD


def test_max_age_boundary() -> None:
    # A message exactly max_age old is still acked; a microsecond older is too old.
    assert decide(age=timedelta(hours=1)) is AckOutcome.SEND
    assert decide(age=timedelta(hours=1, microseconds=1)) is AckOutcome.TOO_OLD


def test_per_sender_interval_boundary() -> None:
    # The next ack to a sender may go exactly per_sender_interval after the last one, not before.
    assert decide(facts=AckFacts(False, NOW - timedelta(hours=24), 0)) is AckOutcome.SEND
    limited = AckFacts(False, NOW - timedelta(hours=24) + timedelta(microseconds=1), 0)
    assert decide(facts=limited) is AckOutcome.SENDER_RATE_LIMITED


def test_global_cap_boundary() -> None:
    # The hourly cap allows max_per_hour acks; the next one waits (deferred), it is not dropped.
    assert decide(facts=AckFacts(False, None, 199)) is AckOutcome.SEND
    assert decide(facts=AckFacts(False, None, 200)) is AckOutcome.DEFERRED


def test_domain_share_boundary_applies_only_when_held_to_it() -> None:
    # An unauthenticated source domain gets max_per_domain acks an hour; an authenticated one is not held.
    at_share = AckFacts(False, None, 60, acks_to_domain_in_last_hour=50)
    assert decide(facts=AckFacts(False, None, 60, acks_to_domain_in_last_hour=49), max_per_domain=50) is AckOutcome.SEND
    assert decide(facts=at_share, max_per_domain=50) is AckOutcome.DEFERRED
    assert decide(facts=at_share, max_per_domain=None) is AckOutcome.SEND


def test_rate_limit_wins_over_deferral() -> None:
    # A sender acked within the interval is limited for good, not deferred until the cap frees up.
    facts = AckFacts(False, NOW - timedelta(hours=1), 500)
    assert decide(facts=facts) is AckOutcome.SENDER_RATE_LIMITED


def test_limit_reasons_write_durations_as_the_config_does() -> None:
    # "received 3d 31s ago, max_age is 1h", never timedelta's "3 days, 0:00:31.133037".
    old = decide_ack(CUSTOMER, PAT, NOW - timedelta(days=3, seconds=31.133037), NOW, FRESH, **LIMITS)
    assert old.reason == "received 3d 31s ago, max_age is 1h"
    recent = AckFacts(False, NOW - timedelta(hours=2, seconds=0.4), 0)
    limited = decide_ack(CUSTOMER, PAT, NOW, NOW, recent, **LIMITS)
    assert limited.reason.endswith("was acknowledged 2h ago, per_sender_interval is 1d")


def test_naive_datetimes_are_read_as_utc() -> None:
    # Times read back from SQLite lack tzinfo; they are UTC and compare with an aware `now`.
    naive_received = (NOW - timedelta(hours=2)).replace(tzinfo=None)
    decision = decide_ack(CUSTOMER, PAT, naive_received, NOW, FRESH, **LIMITS)  # type: ignore[arg-type]
    assert decision.outcome is AckOutcome.TOO_OLD
    naive_last = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    assert decide(facts=AckFacts(False, naive_last, 0)) is AckOutcome.SENDER_RATE_LIMITED


def test_outcome_values_are_stable() -> None:
    # Outcome and category values are logged and stored, so they must not drift.
    assert AckOutcome.NOT_NEW_THREAD.value == "thread-already-acknowledged"
    assert Category.OWN_MESSAGE.value == "mailwatch"


def test_flood_of_10000_from_one_domain_leaves_another_domains_customer_acked() -> None:
    # Through decide_ack as the service feeds it: the flood domain gets its share (50), 50 more wait for
    # the next hour, the rest can only expire; a customer of another domain is acked at once.
    sent: Counter[str] = Counter()
    held: Counter[str] = Counter()
    outcomes: Counter[AckOutcome] = Counter()
    for n in range(10_000):
        facts = AckFacts(False, None, sum(sent.values()), sent["flood.example"], held["flood.example"])
        outcome = decide(recipient=Address("", f"buyer{n}@flood.example"), facts=facts, max_per_domain=50)
        outcomes[outcome] += 1
        sent["flood.example"] += outcome is AckOutcome.SEND
        held["flood.example"] += outcome is AckOutcome.DEFERRED
    assert outcomes == {AckOutcome.SEND: 50, AckOutcome.DEFERRED: 50, AckOutcome.MAX_AGE: 9_900}
    renee = AckFacts(False, None, sum(sent.values()), sent["customer.example"], held["customer.example"])
    assert decide(recipient=Address("", "renee@customer.example"), facts=renee, max_per_domain=50) is AckOutcome.SEND
