"""[mailbox.imap.oauth2] and [smtp.oauth2]: how mailwatch gets an OAuth2 access token.

A provider preset (microsoft, google) fills in the endpoint URLs and scopes; `custom`
names them. The endpoints and scopes themselves live in `mailwatch.oauth2.providers`,
so that a preset differs from a custom provider only in its defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import StrictStr, ValidationInfo, field_validator, model_validator

from mailwatch.config.secrets import Secret, resolve_secret
from mailwatch.config.types import CredentialName, EnvName, MailboxName, Model, Text, is_loopback, problem

# The keys that can supply a client secret, plain key first (as for passwords).
CLIENT_SECRET_KEYS = ("client_secret", "client_secret_file", "client_secret_env", "client_secret_credential")
# Microsoft tenants that name no single organisation: app-only tokens need a real one.
_MULTI_TENANT = frozenset({"organizations", "common", "consumers"})


def _check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise problem(f"not an https URL: {value!r}")
    # Tokens travel in this request: clear text only to this machine (local test servers).
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise problem(f"must be https (http is allowed only for a loopback host), not {value!r}")
    return value


class OAuth2Settings(Model):
    """One OAuth2 sign-in, or (SMTP only) `mailbox` naming the mailbox whose sign-in to reuse."""

    provider: Literal["microsoft", "google", "custom"] | None = None
    tenant: Text = "organizations"
    client_id: Text | None = None
    # After loading, `client_secret` holds the secret whichever key supplied it.
    client_secret: Secret | None = None
    client_secret_file: Path | None = None
    client_secret_env: EnvName | None = None
    client_secret_credential: CredentialName | None = None
    flow: Literal["device", "client_credentials"] = "device"
    scopes: tuple[Text, ...] | None = None
    token_url: StrictStr | None = None
    device_authorization_url: StrictStr | None = None
    mailbox: MailboxName | None = None

    @field_validator("token_url", "device_authorization_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _check_endpoint(value)

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> OAuth2Settings:
        if self.mailbox is not None:
            self._only_mailbox()
            return self
        if self.provider is None:
            raise problem("required: microsoft, google or custom (or, under [smtp.oauth2], mailbox)", "provider")
        if self.client_id is None:
            raise problem("required: the application (client) id of the app registration", "client_id")
        self._endpoints_known()
        self._flow_possible()
        resolve_secret(self, info, CLIENT_SECRET_KEYS, required=self.flow == "client_credentials")
        return self

    def _only_mailbox(self) -> None:
        others = [key for key in self.model_fields_set if key != "mailbox"]
        if others:
            raise problem("with mailbox, the sign-in is that mailbox's: give no other key", sorted(others)[0])

    def _endpoints_known(self) -> None:
        if self.provider != "custom":
            return
        if self.token_url is None:
            raise problem("required for provider = \"custom\"", "token_url")
        if self.flow == "device" and self.device_authorization_url is None:
            raise problem("required for provider = \"custom\" with flow = \"device\"", "device_authorization_url")

    def _flow_possible(self) -> None:
        if self.flow != "client_credentials":
            return
        if self.provider == "google":
            raise problem("Google has no client-credentials grant for mail: use flow = \"device\" "
                          "or an app password", "flow")
        if self.provider == "microsoft" and self.tenant.lower() in _MULTI_TENANT:
            raise problem("app-only sign-in needs your tenant id or domain (e.g. contoso.onmicrosoft.com), "
                          f"not {self.tenant!r}", "tenant")

    @property
    def client_secret_source(self) -> str | None:
        """The key that supplied `client_secret`, or None."""
        given = [key for key in CLIENT_SECRET_KEYS[1:] if getattr(self, key) is not None]
        return given[0] if given else ("client_secret" if self.client_secret else None)


def check_auth(section: Model, auth: str, oauth2: OAuth2Settings | None, *, smtp: bool) -> None:
    """`auth` and the [.oauth2] table agree; `mailbox` is allowed only under [smtp.oauth2]."""
    if auth == "oauth2" and oauth2 is None:
        raise problem("required when auth = \"oauth2\"", "oauth2")
    if auth == "password" and oauth2 is not None:
        raise problem("given, but auth is \"password\": set auth = \"oauth2\" to use it", "oauth2")
    if oauth2 is not None and oauth2.mailbox is not None and not smtp:
        raise problem("only [smtp.oauth2] can reuse a mailbox's sign-in", "oauth2", "mailbox")
    if auth == "oauth2" and getattr(section, "password_source", None) is not None:
        raise problem(f"conflicts with auth = \"oauth2\": remove {section.password_source}",
                      section.password_source)
