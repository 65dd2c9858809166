"""Pure parts of the OAuth2 code: error codes, who signed in, when a token counts as spent."""

import base64
import json
from datetime import UTC, datetime, timedelta

from mailwatch.config.secrets import Secret
from mailwatch.oauth2.client import ProviderError, account_of
from mailwatch.oauth2.store import StoredSignIn
from mailwatch.oauth2.tokens import AccessToken, refresh_margin, usable

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _stored(expires_in: timedelta, issued_ago: timedelta = timedelta(0), token: str = "A") -> StoredSignIn:
    return StoredSignIn(key="mailbox:support", version=3, provider="microsoft", client_id="c", flow="device",
                        account="alice@contoso.com", refresh_token=Secret("R"), access_token=Secret(token),
                        access_expires_at=NOW + expires_in, signed_in_at=NOW - issued_ago,
                        refreshed_at=NOW - issued_ago, failed_at=None, failure=None)


def test_microsoft_reason_numbers_join_the_error_code() -> None:
    # The alert names what Microsoft's documentation is searchable by.
    error = ProviderError("invalid_grant", "AADSTS70008: The refresh token has expired due to inactivity.\r\nTrace ID: x")
    assert error.code == "invalid_grant (AADSTS70008)"
    assert ProviderError("invalid_grant").code == "invalid_grant"
    assert str(error) == "invalid_grant (AADSTS70008)"


def test_the_account_comes_from_the_id_token_claims() -> None:
    # Shown to people only; anything unreadable is simply no name.
    claims = base64.urlsafe_b64encode(json.dumps({"preferred_username": "alice@contoso.com"}).encode()).decode()
    assert account_of(f"e30.{claims.rstrip('=')}.sig") == "alice@contoso.com"
    assert account_of("not-a-jwt") == "" and account_of(None) == "" and account_of("a.%%%.c") == ""


def test_a_token_is_refreshed_five_minutes_or_a_quarter_of_its_life_ahead() -> None:
    # An hour-long token: refreshed 5 minutes early; a 40-second one: 10 seconds early.
    assert refresh_margin(NOW, NOW + timedelta(hours=1)) == timedelta(minutes=5)
    assert refresh_margin(NOW, NOW + timedelta(seconds=40)) == timedelta(seconds=10)
    assert usable(_stored(timedelta(minutes=6), timedelta(minutes=54)), NOW, None) is not None
    assert usable(_stored(timedelta(minutes=4), timedelta(minutes=56)), NOW, None) is None


def test_the_refused_token_is_never_handed_out_again() -> None:
    # After the server said no to it, only a refresh helps.
    stored = _stored(timedelta(minutes=30), timedelta(minutes=30))
    refused = AccessToken(Secret("A"), NOW + timedelta(minutes=30), "alice@contoso.com")
    assert usable(stored, NOW, refused) is None
    assert usable(stored, NOW, AccessToken(Secret("other"), NOW, "")) is not None


def test_stored_sign_ins_print_no_token() -> None:
    # A repr in a traceback or a debug log shows the masks only.
    shown = repr(_stored(timedelta(minutes=30), token="eyJ0eXAiOiJKV1QiLCJub25jZSI6"))
    assert "eyJ0eXAi" not in shown and "**********" in shown
