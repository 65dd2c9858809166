"""The per-page anti-forgery token: made for one ticket, one link, a limited time, with the [web] secret."""

from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.web.forms import CLOCK_SKEW, FORM_LIFETIME, form_token, form_token_ok

SECRET = b"s3cret-signing-key"
NOW = datetime(2026, 6, 9, 8, 0, tzinfo=UTC)
LINK = "v1.1001.1.lead%40acme.example.abcdef"


def test_a_token_round_trips_for_its_ticket_and_link():
    assert form_token_ok(SECRET, "1001", LINK, form_token(SECRET, "1001", LINK, NOW), NOW)


@pytest.mark.parametrize("secret, ticket, link", [
    (b"another-secret", "1001", LINK),
    (SECRET, "1002", LINK),
    (SECRET, "1001", LINK + "x"),
])
def test_a_token_is_refused_for_another_secret_ticket_or_link(secret, ticket, link):
    token = form_token(SECRET, "1001", LINK, NOW)
    assert not form_token_ok(secret, ticket, link, token, NOW)


def test_every_changed_character_is_refused():
    token = form_token(SECRET, "1001", LINK, NOW)
    for i, char in enumerate(token):
        other = "0" if char != "0" else "1"
        assert not form_token_ok(SECRET, "1001", LINK, token[:i] + other + token[i + 1:], NOW), i


def test_moving_the_issue_time_breaks_the_mac():
    issued, mac = form_token(SECRET, "1001", LINK, NOW).split(".")
    assert not form_token_ok(SECRET, "1001", LINK, f"{int(issued) + 3600}.{mac}", NOW)


def test_a_token_expires_after_form_lifetime_and_is_not_honoured_from_the_future():
    token = form_token(SECRET, "1001", LINK, NOW)
    assert form_token_ok(SECRET, "1001", LINK, token, NOW + FORM_LIFETIME)
    assert not form_token_ok(SECRET, "1001", LINK, token, NOW + FORM_LIFETIME + timedelta(seconds=1))
    assert form_token_ok(SECRET, "1001", LINK, token, NOW - CLOCK_SKEW)
    assert not form_token_ok(SECRET, "1001", LINK, token, NOW - CLOCK_SKEW - timedelta(seconds=1))


@pytest.mark.parametrize("token", [None, "", ".", "abc", "123", "123.", "-5.ab", "1e3.ab", "9" * 40 + ".ab", "١٢٣.ab"])
def test_missing_or_malformed_tokens_are_refused(token):
    assert not form_token_ok(SECRET, "1001", LINK, token, NOW)
