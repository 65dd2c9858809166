"""Signed action links: a capability for one thread, one clock, one recipient, until it expires."""

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwatch.links import LinkClaim, LinkExpired, LinkInvalid, action_link, make_token, read_token

SECRET = b"k" * 32
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CLAIM = LinkClaim(ticket=1042, clock=2, recipient="lead@acme.example", expires_at=NOW + timedelta(days=7))


def _forged(token: str, **changes) -> str:
    """The token with one field of its payload changed and the old signature kept."""
    payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    names = ["ticket", "clock", "recipient", "expires"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + signature


def test_round_trip_gives_back_the_claim():
    assert read_token(SECRET, 1042, make_token(SECRET, CLAIM), NOW) == CLAIM


@given(ticket=st.integers(1, 10**9), clock=st.integers(1, 10**6), recipient=st.emails(),
       days=st.integers(1, 3650))
def test_any_claim_survives_the_round_trip_and_stays_url_safe(ticket, clock, recipient, days):
    claim = LinkClaim(ticket, clock, recipient, NOW + timedelta(days=days))
    token = make_token(SECRET, claim)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert read_token(SECRET, ticket, token, NOW) == claim


@pytest.mark.parametrize("field, value", [
    ("ticket", 1043), ("clock", 3), ("recipient", "mallory@evil.example"),
    ("expires", int((NOW + timedelta(days=400)).timestamp())),
])
def test_tampering_with_any_field_is_refused(field, value):
    forged = _forged(make_token(SECRET, CLAIM), **{field: value})
    ticket = value if field == "ticket" else 1042
    with pytest.raises(LinkInvalid):
        read_token(SECRET, ticket, forged, NOW)


def test_a_changed_signature_is_refused():
    payload, signature = make_token(SECRET, CLAIM).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(LinkInvalid):
        read_token(SECRET, 1042, f"{payload}.{flipped}", NOW)


URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_every_one_character_change_or_insertion_is_refused():
    # Not only the signed bytes: any other spelling of the token is a tampered link too
    # (base64 decoders skip stray characters and ignore the last character's spare bits).
    token = make_token(SECRET, CLAIM)
    variants = {token[:i] + c + token[i + 1:] for i in range(len(token)) for c in URL_SAFE + "=!~ "}
    variants |= {token[:i] + c + token[i:] for i in range(len(token) + 1) for c in "=!~* A"}
    variants.discard(token)
    accepted = []
    for variant in variants:
        try:
            read_token(SECRET, 1042, variant, NOW)
            accepted.append(variant)
        except LinkInvalid:
            pass
    assert accepted == []


def test_a_link_for_ticket_a_is_refused_for_ticket_b():
    with pytest.raises(LinkInvalid, match="another ticket"):
        read_token(SECRET, 1043, make_token(SECRET, CLAIM), NOW)


def test_a_link_signed_with_another_secret_is_refused():
    with pytest.raises(LinkInvalid):
        read_token(b"z" * 32, 1042, make_token(SECRET, CLAIM), NOW)


def test_a_link_expires_at_its_expiry_and_not_before():
    token = make_token(SECRET, CLAIM)
    assert read_token(SECRET, 1042, token, CLAIM.expires_at - timedelta(seconds=1)) == CLAIM
    with pytest.raises(LinkExpired):
        read_token(SECRET, 1042, token, CLAIM.expires_at)


def test_an_expired_forgery_is_invalid_not_expired():
    # Only a genuine link learns that it expired; a forgery learns nothing more than "invalid".
    forged = _forged(make_token(SECRET, replace(CLAIM, expires_at=NOW - timedelta(days=1))), clock=9)
    with pytest.raises(LinkInvalid):
        read_token(SECRET, 1042, forged, NOW)


@pytest.mark.parametrize("token", ["", ".", "abc", "a.b.c", "!!.!!", "x" * 5000, "W10.AAAA"])
def test_garbage_is_invalid(token):
    with pytest.raises(LinkInvalid):
        read_token(SECRET, 1042, token, NOW)


def test_a_genuinely_signed_payload_of_the_wrong_shape_is_invalid():
    payload = base64.urlsafe_b64encode(b'{"ticket":1}').rstrip(b"=").decode()
    mac = hmac.new(SECRET, b"mailwatch-action-link-v1\x00" + b'{"ticket":1}', hashlib.sha256).digest()
    token = payload + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(LinkInvalid):
        read_token(SECRET, 1, token, NOW)


class _Web:
    base_url = "https://support.acme.example/mailwatch/"
    secret_key = SECRET
    link_lifetime = timedelta(days=7)


def test_action_link_points_at_the_thread_and_lasts_the_lifetime():
    link = action_link(_Web(), 1042, 2, "Lead@Acme.example", NOW)
    assert link.startswith("https://support.acme.example/mailwatch/t/1042?k=")
    claim = read_token(SECRET, 1042, link.split("?k=", 1)[1], NOW)
    assert claim == LinkClaim(1042, 2, "lead@acme.example", NOW + timedelta(days=7))
