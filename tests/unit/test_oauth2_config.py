"""Tests for [mailbox.imap.oauth2] and [smtp.oauth2]: every mistake is `file: key: reason`."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from mailwatch.config import load_settings
from mailwatch.errors import ConfigError
from mailwatch.oauth2.providers import MICROSOFT_APP_SCOPES, MICROSOFT_DELEGATED_SCOPES, endpoints

CLIENT_SECRET = "Very-Secret-Client-Value~42"
# One mailbox signing in with the Microsoft preset; SMTP reuses its sign-in.
OAUTH2 = """
    [[mailbox]]
    name = "support"
    address = "support@acme.example"
      [mailbox.imap]
      host = "outlook.office365.com"
      auth = "oauth2"
      [mailbox.imap.oauth2]
      provider = "microsoft"
      tenant = "contoso.onmicrosoft.com"
      client_id = "11111111-2222-3333-4444-555555555555"

    [smtp]
    host = "smtp.office365.com"
    username = "support@acme.example"
    from = "Acme Support <support@acme.example>"
    auth = "oauth2"
      [smtp.oauth2]
      mailbox = "support"
"""


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)

    def write_config(text: str) -> Path:
        Path("mailwatch.toml").write_text(textwrap.dedent(text), encoding="utf-8")
        return Path("mailwatch.toml")

    return write_config


def problems_in(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return caught.value.problems


def test_a_microsoft_mailbox_needs_no_password_and_gets_the_preset(write: Any) -> None:
    # The preset fills in the tenant's endpoints and the delegated IMAP+SMTP scopes.
    settings = load_settings(write(OAUTH2), {})
    imap = settings.mailboxes[0].imap
    assert (imap.auth, imap.password, imap.username) == ("oauth2", None, "support@acme.example")
    found = endpoints(imap.oauth2)
    assert found.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert found.device_authorization_url.endswith("/contoso.onmicrosoft.com/oauth2/v2.0/devicecode")
    assert found.scopes == MICROSOFT_DELEGATED_SCOPES
    assert settings.smtp.oauth2.mailbox == "support"


def test_app_only_needs_a_tenant_and_a_secret_and_requests_default(write: Any) -> None:
    # client_credentials: .default of Exchange Online, from a single tenant, with a secret.
    text = OAUTH2.replace('client_id = "1', 'flow = "client_credentials"\n      client_id = "1')
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox[0].imap.oauth2.client_secret: required: give one of "
        "client_secret, client_secret_file, client_secret_env, client_secret_credential"
    ]
    with_secret = text.replace("tenant =", 'client_secret_env = "SECRET"\n      tenant =')
    settings = load_settings(write(with_secret), {"SECRET": CLIENT_SECRET})
    assert endpoints(settings.mailboxes[0].imap.oauth2).scopes == MICROSOFT_APP_SCOPES
    multi = with_secret.replace('tenant = "contoso.onmicrosoft.com"', "")
    (problem,) = problems_in(write(multi), {"SECRET": CLIENT_SECRET})
    assert problem.startswith("mailwatch.toml: mailbox[0].imap.oauth2.tenant: app-only sign-in needs your tenant")


def test_the_client_secret_never_shows_in_reprs_dumps_or_errors(write: Any) -> None:
    # A client secret is a password: masked everywhere, and never quoted by an error.
    text = OAUTH2.replace("tenant =", f'client_secret = "{CLIENT_SECRET}"\n      tenant =')
    settings = load_settings(write(text), {})
    oauth2 = settings.mailboxes[0].imap.oauth2
    assert oauth2.client_secret.reveal() == CLIENT_SECRET
    shown = repr(settings) + str(settings.model_dump()) + settings.model_dump_json()
    assert CLIENT_SECRET not in shown
    assert settings.warnings == ("mailwatch.toml: mailbox[0].imap.oauth2.client_secret: a plain client secret in "
                                 "the config file; prefer client_secret_file, client_secret_env or "
                                 "client_secret_credential",)
    broken = text.replace('provider = "microsoft"', 'provider = "yahoo"')
    assert CLIENT_SECRET not in "\n".join(problems_in(write(broken)))


@pytest.mark.parametrize(("change", "problem"), [
    (('auth = "oauth2"', 'auth = "oauth"'), "mailbox[0].imap.auth: must be 'password' or 'oauth2'"),
    (('provider = "microsoft"', 'provider = "custom"'),
     'mailbox[0].imap.oauth2.token_url: required for provider = "custom"'),
    (('client_id = "11111111-2222-3333-4444-555555555555"', ""),
     "mailbox[0].imap.oauth2.client_id: required: the application (client) id of the app registration"),
    (('provider = "microsoft"', 'provider = "microsoft"\n      token_url = "http://login.example.com/t"'),
     "mailbox[0].imap.oauth2.token_url: must be https (http is allowed only for a loopback host), "
     "not 'http://login.example.com/t'"),
    (('provider = "microsoft"', 'provider = "google"\n      flow = "client_credentials"\n      client_secret = "x"'),
     'mailbox[0].imap.oauth2.flow: Google has no client-credentials grant for mail: use flow = "device" '
     "or an app password"),
    (('mailbox = "support"', 'mailbox = "sales"'),
     "smtp.oauth2.mailbox: no [[mailbox]] named 'sales' signs in with oauth2 (those that do: support)"),
    (('auth = "oauth2"\n      [mailbox.imap.oauth2]', 'auth = "oauth2"\n      password = "p"\n      [mailbox.imap.oauth2]'),
     'mailbox[0].imap.password: conflicts with auth = "oauth2": remove password'),
    (('      [smtp.oauth2]\n      mailbox = "support"', '      [smtp.oauth2]\n      mailbox = "support"\n'
                                                       '      client_id = "x"'),
     "smtp.oauth2.client_id: with mailbox, the sign-in is that mailbox's: give no other key"),
    (('host = "outlook.office365.com"\n      auth = "oauth2"', 'host = "outlook.office365.com"\n      password = "p"'),
     'mailbox[0].imap.oauth2: given, but auth is "password": set auth = "oauth2" to use it'),
    (('client_id = "1', 'colour = "blue"\n      client_id = "1'), "mailbox[0].imap.oauth2.colour: unknown key"),
])
def test_each_oauth2_mistake_names_its_key(write: Any, change: tuple[str, str], problem: str) -> None:
    # The person editing the file learns the key and the reason; nothing starts (exit 2).
    old, new = change
    assert old in OAUTH2, old
    assert problems_in(write(OAUTH2.replace(old, new, 1))) == [f"mailwatch.toml: {problem}"]


def test_imap_oauth2_cannot_borrow_another_sign_in(write: Any) -> None:
    # Only SMTP reuses a mailbox's sign-in; a mailbox must have its own.
    text = OAUTH2.replace('provider = "microsoft"\n      tenant = "contoso.onmicrosoft.com"\n'
                          '      client_id = "11111111-2222-3333-4444-555555555555"', 'mailbox = "support"')
    assert problems_in(write(text)) == ["mailwatch.toml: mailbox[0].imap.oauth2.mailbox: only [smtp.oauth2] "
                                        "can reuse a mailbox's sign-in"]
