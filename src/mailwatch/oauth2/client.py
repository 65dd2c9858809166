"""Talking to an OAuth2 authorization server: the token and device authorization endpoints.

Plain RFC 6749 / RFC 8628 requests over httpx, the same for every provider. A refusal
becomes `ProviderError` carrying the provider's error code; an unreachable or broken
server becomes `TransientError`. No message ever quotes a token or the client secret.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog

from mailwatch.config.oauth2 import OAuth2Settings
from mailwatch.config.secrets import Secret
from mailwatch.errors import TransientError
from mailwatch.oauth2.providers import Endpoints
from mailwatch.tls import tls_context

log = structlog.get_logger(__name__)

HTTP_TIMEOUT_S = 30.0  # per request; a token endpoint answers in well under a second
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"  # RFC 8628, section 3.4
# Microsoft's numbered reason inside error_description, e.g. "AADSTS70008: …".
_AADSTS = re.compile(r"\bAADSTS\d+\b")
# What an access token lives when the server does not say (RFC 6749 makes expires_in optional).
DEFAULT_LIFETIME = timedelta(hours=1)
# Claims of an ID token that name the person, best first.
_ACCOUNT_CLAIMS = ("preferred_username", "email", "upn", "unique_name", "sub")


class ProviderError(Exception):
    """The authorization server answered with an OAuth2 error (RFC 6749, section 5.2)."""

    def __init__(self, error: str, description: str = "") -> None:
        self.error = error
        self.description = description[:300]
        super().__init__(self.code)

    @property
    def code(self) -> str:
        """The error and, where the provider numbers its reasons, that number: 'invalid_grant (AADSTS70008)'."""
        detail = _AADSTS.search(self.description)
        return f"{self.error} ({detail[0]})" if detail else self.error


@dataclass(frozen=True)
class TokenGrant:
    """What a token endpoint handed out; tokens are Secrets, so a repr shows none."""

    access_token: Secret
    refresh_token: Secret | None
    expires_at: datetime
    account: str
    scopes: str


@dataclass(frozen=True)
class DeviceCode:
    """A device authorization (RFC 8628, section 3.2): what to show the person, and what to poll with."""

    device_code: Secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: datetime
    interval_s: float


class OAuth2Client:
    """One sign-in's requests to its authorization server."""

    def __init__(self, settings: OAuth2Settings, endpoints: Endpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints

    def start_device_flow(self, now: datetime) -> DeviceCode:
        """Ask for a user code and device code (RFC 8628, section 3.1)."""
        url = self.endpoints.device_authorization_url
        data = self._post(url, {"scope": " ".join(self.endpoints.scopes)})
        try:
            return DeviceCode(
                device_code=Secret(str(data["device_code"])),
                user_code=str(data["user_code"]),
                # Google calls it verification_url.
                verification_uri=str(data.get("verification_uri") or data["verification_url"]),
                verification_uri_complete=data.get("verification_uri_complete"),
                expires_at=now + timedelta(seconds=float(data["expires_in"])),
                interval_s=float(data.get("interval", 5)),
            )
        except (KeyError, TypeError, ValueError):
            raise TransientError(f"device authorization at {url} answered without a device or user code") from None

    def poll_device_flow(self, device: DeviceCode, now: datetime) -> TokenGrant:
        """One poll of the token endpoint; ProviderError('authorization_pending') until approved."""
        return self._grant({"grant_type": DEVICE_GRANT, "device_code": device.device_code.reveal()}, now)

    def refresh(self, refresh_token: Secret, now: datetime) -> TokenGrant:
        """Trade a refresh token for new tokens (RFC 6749, section 6)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal(),
                "scope": " ".join(self.endpoints.scopes)}
        return self._grant(form, now)

    def client_credentials(self, now: datetime) -> TokenGrant:
        """An app-only token (RFC 6749, section 4.4)."""
        return self._grant({"grant_type": "client_credentials", "scope": " ".join(self.endpoints.scopes)}, now)

    def _grant(self, form: dict[str, str], now: datetime) -> TokenGrant:
        data = self._post(self.endpoints.token_url, form)
        if not isinstance(data.get("access_token"), str) or not data["access_token"]:
            raise TransientError(f"token endpoint {self.endpoints.token_url} answered without an access token")
        refresh = data.get("refresh_token")
        return TokenGrant(
            access_token=Secret(data["access_token"]),
            refresh_token=Secret(refresh) if isinstance(refresh, str) and refresh else None,
            expires_at=now + _lifetime(data.get("expires_in")),
            account=account_of(data.get("id_token")),
            scopes=str(data.get("scope") or " ".join(self.endpoints.scopes)),
        )

    def _post(self, url: str | None, form: dict[str, str]) -> dict:
        """POST a form with our client credentials; the JSON answer, or ProviderError / TransientError."""
        form = {**form, "client_id": self.settings.client_id}
        if self.settings.client_secret is not None:
            form["client_secret"] = self.settings.client_secret.reveal()
        try:
            with httpx.Client(verify=tls_context(None), timeout=HTTP_TIMEOUT_S) as http:
                response = http.post(url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            # The exception's text can carry the URL only; never the form.
            raise TransientError(f"OAuth2 endpoint {url} unreachable: {type(exc).__name__}") from None
        return _answer(url, response)


def _answer(url: str, response: httpx.Response) -> dict:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise TransientError(f"OAuth2 endpoint {url} answered HTTP {response.status_code} without JSON")
    if response.status_code == 200 and "error" not in data:
        return data
    if isinstance(data.get("error"), str) and response.status_code < 500:
        raise ProviderError(data["error"], str(data.get("error_description") or ""))
    raise TransientError(f"OAuth2 endpoint {url} answered HTTP {response.status_code}")


def _lifetime(expires_in: object) -> timedelta:
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return timedelta(seconds=max(seconds, 1.0))


def account_of(id_token: object) -> str:
    """Who signed in, from an ID token's claims; for showing people only, so its signature is not checked."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return ""
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return ""
    if not isinstance(claims, dict):
        return ""
    return next((str(claims[claim]) for claim in _ACCOUNT_CLAIMS if claims.get(claim)), "")
