"""Provider presets: the endpoint URLs and default scopes of Microsoft and Google.

A preset differs from `provider = "custom"` only in these defaults; every request
goes through the same code whichever provider it is for (and so do the tests).
"""

from dataclasses import dataclass

from mailwatch.config.oauth2 import OAuth2Settings

# Microsoft identity platform v2.0 endpoints; {tenant} is an id, a domain or "organizations".
_MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
# Google's OAuth 2.0 endpoints.
_GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
_GOOGLE_DEVICE = "https://oauth2.googleapis.com/device/code"

# Delegated Exchange Online scopes: one token reads IMAP and sends SMTP; offline_access
# brings the refresh token; openid and profile say who signed in.
MICROSOFT_DELEGATED_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
    "openid",
    "profile",
)
# App-only: the permissions granted to the app (IMAP.AccessAsApp), requested as .default.
MICROSOFT_APP_SCOPES = ("https://outlook.office365.com/.default",)
# Full IMAP and SMTP access to Gmail; Google has no narrower scope for IMAP.
GOOGLE_SCOPES = ("https://mail.google.com/",)

PROVIDER_NAMES = {"microsoft": "Microsoft", "google": "Google", "custom": "The OAuth2 provider"}


@dataclass(frozen=True)
class Endpoints:
    """Where to ask, and for what."""

    token_url: str
    device_authorization_url: str | None
    scopes: tuple[str, ...]


def endpoints(settings: OAuth2Settings) -> Endpoints:
    """The endpoints and scopes of a sign-in: the preset's, overridden by what the config names."""
    token_url, device_url, scopes = _preset(settings)
    return Endpoints(
        token_url=settings.token_url or token_url,
        device_authorization_url=settings.device_authorization_url or device_url,
        scopes=settings.scopes if settings.scopes is not None else scopes,
    )


def _preset(settings: OAuth2Settings) -> tuple[str, str | None, tuple[str, ...]]:
    if settings.provider == "microsoft":
        base = _MICROSOFT.format(tenant=settings.tenant)
        app_only = settings.flow == "client_credentials"
        return f"{base}/token", f"{base}/devicecode", MICROSOFT_APP_SCOPES if app_only else MICROSOFT_DELEGATED_SCOPES
    if settings.provider == "google":
        return _GOOGLE_TOKEN, _GOOGLE_DEVICE, GOOGLE_SCOPES
    # custom: the config validation made sure the URLs are given.
    return "", None, ()
