"""mail/authresults.py: which Authentication-Results mean something, and what they say.

The samples below are written for these tests in the shapes the real stampers use
(checked against published headers; see notes/issue10.md): Gmail's one header with
`header.i=@domain`, rspamd's one header with `header.d`, OpenDMARC's own header
beside OpenDKIM's, and Exchange Online's id-less header plus AuthAs.
"""

from __future__ import annotations

import pytest

from mailwatch.mail.authresults import (
    AuthStatus,
    authenticate,
    parse_authentication_results,
    trusted_results,
)
from mailwatch.mail.parse import parse_message, split_raw
from mailwatch.mail.rules import Category, Identity, author_authentication, classify, staff_answer
from tests.unit.test_rules import CORPUS

GMAIL = (
    "mx.google.com;\r\n       dkim=pass header.i=@acme.example header.s=google header.b=Zx3f9Q1a;\r\n"
    "       spf=pass (google.com: domain of alice@acme.example designates 209.85.220.41 as permitted sender)"
    " smtp.mailfrom=alice@acme.example;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=acme.example"
)
RSPAMD = (
    "mx.acme.example; dkim=pass header.d=acme.example header.s=dkim2025 header.b=kN4vT0pq;"
    " spf=pass (mx.acme.example: domain of alice@acme.example designates 192.0.2.25 as permitted sender)"
    " smtp.mailfrom=alice@acme.example; dmarc=pass (policy=reject) header.from=acme.example"
)
OPENDMARC_FAIL = "mx.acme.example; dmarc=fail (p=reject dis=none) header.from=acme.example"
OPENDKIM_PASS = "mx.acme.example; dkim=pass (2048-bit key; unprotected) header.d=acme.example header.i=@acme.example"
M365_PASS = (
    "spf=pass (sender IP is 40.107.22.51) smtp.mailfrom=acme.example; dkim=pass (signature was verified)"
    " header.d=acme.example;dmarc=pass action=none header.from=acme.example;compauth=pass reason=100"
)
M365_FAIL = (
    "spf=fail (sender IP is 203.0.113.9) smtp.mailfrom=evil.example; dkim=none (message not signed)"
    " header.d=none;dmarc=fail action=oreject header.from=acme.example;compauth=fail reason=000"
)


def ar(*values: str) -> dict[str, tuple[str, ...]]:
    return {"authentication-results": values}


def test_gmail_dmarc_pass_authenticates_the_from_domain() -> None:
    # Google Workspace: authserv-id mx.google.com, dmarc=pass for the From domain.
    result = authenticate(ar(GMAIL), "acme.example", ["mx.google.com"])
    assert (result.status, result.method) == (AuthStatus.PASS, "dmarc")


def test_gmail_dkim_identity_header_i_counts_as_aligned() -> None:
    # Gmail names the signer as header.i=@domain, not header.d.
    value = "mx.google.com; dkim=pass header.i=@acme.example header.s=google; spf=neutral smtp.mailfrom=x@y.example"
    assert authenticate(ar(value), "acme.example", ["mx.google.com"]).method == "dkim"


def test_rspamd_single_header_passes() -> None:
    # rspamd on the MX writes one header with dkim, spf and dmarc.
    assert authenticate(ar(RSPAMD), "ACME.example", ["mx.acme.example"]).passed


def test_opendmarc_topmost_fail_wins_over_opendkim_below() -> None:
    # OpenDMARC adds its own header above OpenDKIM's; only the topmost trusted one is read.
    result = authenticate(ar(OPENDMARC_FAIL, OPENDKIM_PASS), "acme.example", ["mx.acme.example"])
    assert result.status is AuthStatus.FAIL and "dmarc=fail" in result.reason


def test_untrusted_authserv_id_is_ignored() -> None:
    # An outsider's own "pass" from their own (or a made-up) server means nothing.
    value = RSPAMD.replace("mx.acme.example", "mx.evil.example")
    assert authenticate(ar(value), "acme.example", ["mx.acme.example"]).status is AuthStatus.NONE


def test_forged_trusted_header_below_the_genuine_one_is_ignored() -> None:
    # Receivers prepend: the genuine header is on top, so a forged copy lower down never counts.
    genuine = "mx.acme.example; dkim=none; spf=fail smtp.mailfrom=evil.example; dmarc=none header.from=acme.example"
    result = authenticate(ar(genuine, RSPAMD), "acme.example", ["mx.acme.example"])
    assert result.status is AuthStatus.NONE


def test_dmarc_for_another_domain_does_not_authenticate_this_from() -> None:
    # A pass for evil.example (say, a second From header the server read) says nothing about acme.example.
    value = "mx.acme.example; dmarc=pass header.from=evil.example; dkim=pass header.d=evil.example"
    assert authenticate(ar(value), "acme.example", ["mx.acme.example"]).status is AuthStatus.NONE


def test_dkim_pass_of_a_parent_or_other_domain_is_not_aligned() -> None:
    # Strict dkim alignment: relaxed alignment is what a dmarc=pass already states.
    value = "mx.acme.example; dkim=pass header.d=mailer.example; dkim=pass header.d=example"
    assert not authenticate(ar(value), "acme.example", ["mx.acme.example"]).passed


def test_microsoft365_reads_its_idless_header_and_auth_as() -> None:
    # Exchange Online writes no authserv-id; "microsoft365" trusts its topmost header and AuthAs: Internal.
    assert authenticate(ar(M365_PASS), "acme.example", ["microsoft365"]).method == "dmarc"
    assert authenticate(ar(M365_FAIL), "acme.example", ["microsoft365"]).status is AuthStatus.FAIL
    internal = {"x-ms-exchange-organization-authas": ("Internal",)}
    assert authenticate(internal, "acme.example", ["microsoft365"]).method == "microsoft365"
    assert authenticate({"x-ms-exchange-organization-authas": ("Anonymous",)}, "acme.example", ["microsoft365"]).status \
        is AuthStatus.NONE


def test_idless_header_and_auth_as_mean_nothing_without_microsoft365() -> None:
    # Elsewhere anyone can write both: they count only when the mailbox is on Exchange Online.
    both = {**ar(M365_PASS), "x-ms-exchange-organization-authas": ("Internal",)}
    assert authenticate(both, "acme.example", ["mx.acme.example"]).status is AuthStatus.NONE


def test_nothing_is_authenticated_without_trusted_ids() -> None:
    # No authserv_ids: no header is believed.
    assert authenticate(ar(RSPAMD), "acme.example", []).status is AuthStatus.NONE


@pytest.mark.parametrize("value", [
    "", ";;;", "(", ")", "((((((", "\"", "mx.acme.example", "mx.acme.example; none",
    "mx.acme.example; dmarc", "mx.acme.example; =pass", "mx.acme.example; dmarc=pass header.from",
    "mx.acme.example; dmarc=pass (" + "(" * 5000, "mx.acme.example; " + "dkim=pass header.d=a.example; " * 5000,
    "mx.acme.example; dmarc=pass \\\\\\ header.from=\"acme.example", "\x00\x01; dkim=pass",
])
def test_hostile_values_never_raise(value: str) -> None:
    # Whatever the header holds, parsing returns (possibly nothing) and the verdict is not PASS by accident.
    parse_authentication_results(value)
    result = authenticate(ar(value), "acme.example", ["mx.acme.example"])
    assert result.status in AuthStatus


def test_comments_and_quotes_do_not_hide_or_invent_results() -> None:
    # "(dmarc=pass header.from=acme.example)" is a comment, not a result.
    value = 'mx.acme.example; dmarc=none (dmarc=pass header.from=acme.example) header.from="acme.example"'
    parsed = parse_authentication_results(value)
    assert parsed is not None and [(r.method, r.result) for r in parsed.results] == [("dmarc", "none")]
    assert not authenticate(ar(value), "acme.example", ["mx.acme.example"]).passed


def test_topmost_trusted_is_chosen_among_untrusted() -> None:
    # Headers of other ids above the trusted one are skipped, not taken as the topmost.
    found = trusted_results(["mx.other.example; dmarc=fail header.from=acme.example", RSPAMD], ["mx.acme.example"])
    assert found is not None and found.authserv_id == "mx.acme.example"


# --- through a parsed message -------------------------------------------------------------

IDENTITY = Identity(own_addresses=frozenset({"support@acme.example"}), staff=("@acme.example",),
                    authserv_ids=("mx.acme.example",))


def staff_mail(*extra: str, sender: str = "Alice <alice@acme.example>") -> bytes:
    top = [*extra, f"From: {sender}", "To: support@acme.example", "Subject: Re: [#1001] help",
           "Message-ID: <r1@acme.example>"]
    return ("\r\n".join(top) + "\r\n\r\n").encode()


def test_folded_header_from_a_real_message_authenticates_staff() -> None:
    # A folded Gmail-style header survives parsing; the staff reply answers by dmarc.
    parsed = parse_message(staff_mail("Authentication-Results: " + GMAIL))
    identity = Identity(own_addresses=frozenset(), staff=("@acme.example",), authserv_ids=("mx.google.com",))
    verdict = classify(parsed, identity)
    assert verdict.category is Category.STAFF and staff_answer(parsed, verdict, identity) == "dmarc"


def test_unauthenticated_staff_from_is_staff_but_answers_nothing() -> None:
    # Never acked (it claims to be staff), never an answer (forgery 1).
    parsed = parse_message(staff_mail())
    verdict = classify(parsed, IDENTITY)
    assert verdict.category is Category.STAFF and staff_answer(parsed, verdict, IDENTITY) is None
    trusting = Identity(own_addresses=frozenset(), staff=("@acme.example",), trust_unauthenticated_staff=True)
    assert staff_answer(parsed, classify(parsed, trusting), trusting) == "unauthenticated"


def test_trusted_dmarc_fail_is_spoofed() -> None:
    # The From domain's own policy disowns it: category spoofed, before staff or customer (forgery 5).
    parsed = parse_message(staff_mail("Authentication-Results: " + OPENDMARC_FAIL))
    verdict = classify(parsed, IDENTITY)
    assert verdict.category is Category.SPOOFED and "dmarc=fail" in verdict.reason


def test_multiple_from_authenticate_nobody() -> None:
    # With several From the author is the Sender; a dmarc pass for the first From proves nothing of it.
    raw = staff_mail("Authentication-Results: " + RSPAMD, "Sender: mallory@evil.example",
                     sender="alice@acme.example, bob@acme.example")
    assert not author_authentication(parse_message(raw), IDENTITY).passed


def test_corpus_staff_reply_with_dkim_pass_answers() -> None:
    # Corpus 26 carries mx.acme.example's dkim=pass for acme.example: a real staff answer.
    parsed = parse_message(*split_raw((CORPUS / "26-staff-reply.eml").read_bytes()))
    verdict = classify(parsed, IDENTITY)
    assert verdict.category is Category.STAFF and staff_answer(parsed, verdict, IDENTITY) in ("dmarc", "dkim")

