"""OAuth2 sign-ins end to end: a local OAuth2 server, Dovecot's oauth2 passdb, aiosmtpd XOAUTH2.

The provider is the "microsoft" preset with its URLs pointed at the local server, so
these tests run the very requests a real tenant gets; only the URLs differ.
"""

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailwatch import cli
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.errors import SignInRequired
from mailwatch.oauth2.signins import imap_sign_in
from mailwatch.oauth2.store import TokenStore
from mailwatch.clock import system_clock
from mailwatch.service import Service
from mailwatch.testing.devservers import Dovecot, SmtpSink, free_port
from mailwatch.testing.oauthserver import OAuthServer
from tests.integration.test_daemon import daemon, wait_until  # noqa: F401 - daemon is a fixture
from tests.integration.test_daemon_clock import http_get as _get
from tests.mailfactory import customer_mail

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PASSWORD_MAILBOX = """
[[mailbox]]
name = "sales"
address = "sales@acme.example"
poll_interval = "1s"
  [mailbox.imap]
  host = "127.0.0.1"
  port = {port}
  security = "none"
  username = "{user}"
  password = "secret"
"""


@pytest.fixture(scope="module")
def oauth_server():
    server = OAuthServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def oauth(oauth_server, imap_user):
    """The local OAuth2 server, reset, approving sign-ins as this test's IMAP account."""
    oauth_server.state.__init__()
    oauth_server.state.account = imap_user
    return oauth_server


@pytest.fixture(scope="module")
def oauth_dovecot(oauth_server):
    """A Dovecot that takes XOAUTH2 tokens by asking the OAuth2 server's introspection endpoint."""
    server = Dovecot.create(oauth2_introspection_url=oauth_server.introspection_url)
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def xoauth2_sink(oauth):
    """An SMTP server that accepts mail only after AUTH XOAUTH2 with a live token."""
    sink = SmtpSink(check_bearer=oauth.active_account)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def oauth_config(oauth, oauth_dovecot, imap_user, database_url, tmp_path):
    """A factory writing a mailwatch.toml whose mailbox signs in with OAuth2."""

    def write(*, sink: SmtpSink | None = None, smtp_oauth2: bool = True, flow: str = "device",
              extra: str = "", alert_after: str = "15m") -> Path:
        secret = f'client_secret = "app-secret"\n  tenant = "contoso.onmicrosoft.com"' if flow != "device" else ""
        body = f"""
[service]
database = "{database_url}"
alert_after = "{alert_after}"
alerts_to = ["ops@acme.example"]

[[mailbox]]
name = "support"
address = "support@acme.example"
poll_interval = "1s"
  [mailbox.imap]
  host = "127.0.0.1"
  port = {oauth_dovecot.port}
  security = "none"
  username = "{imap_user}"
  auth = "oauth2"
  [mailbox.imap.oauth2]
  provider = "microsoft"
  client_id = "{oauth.state.client_id}"
  flow = "{flow}"
  {secret}
  token_url = "{oauth.token_url}"
  device_authorization_url = "{oauth.device_url}"

[acknowledgment]
enabled = {"true" if sink else "false"}
max_age = "2d"
"""
        if sink is not None:
            body += f"""
[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
from = "Acme Support <support@acme.example>"
retry_initial = "0.2s"
retry_max = "1s"
"""
            if smtp_oauth2:
                body += f'username = "{imap_user}"\nauth = "oauth2"\noauth2 = {{ mailbox = "support" }}\n'
        path = tmp_path / "mailwatch.toml"
        path.write_text(body + extra)
        return path

    return write


def login(path: Path, *args: str) -> int:
    return cli.main(["--config", str(path), "login", *args])


def poll(path: Path) -> int:
    return cli.main(["--config", str(path), "poll"])


def test_login_then_poll_logs_the_mail_and_acks_over_xoauth2(
        oauth, oauth_config, oauth_dovecot, imap_user, xoauth2_sink, capsys):
    # One device sign-in reads the mailbox over IMAP and sends the acknowledgment over SMTP.
    path = oauth_config(sink=xoauth2_sink)
    assert login(path, "support") == 0
    out = capsys.readouterr().out
    assert "WDJB-MJHT" in out and "http://127.0.0.1/device" in out
    assert f"signed in as {imap_user}" in out
    assert oauth.count("urn:ietf:params:oauth:grant-type:device_code") == 3  # two pending, then approved
    oauth_dovecot.append(imap_user, customer_mail(1))
    assert poll(path) == 0
    assert "logged 1 new message," in capsys.readouterr().out
    (ack,) = xoauth2_sink.wait_for(1)
    assert ack.recipients == ("customer1@example.com",)
    assert xoauth2_sink.handler.logins == [imap_user]


def test_poll_before_login_fails_naming_the_login_command(oauth, oauth_config, capsys):
    # No sign-in yet: the mailbox fails with the exact command to run, nothing else.
    path = oauth_config()
    assert poll(path) == 1
    assert "not signed in to Microsoft yet; run `mailwatch login support`" in capsys.readouterr().err
    assert oauth.count("refresh_token") == 0


def test_check_says_who_is_signed_in_or_what_to_run(oauth, oauth_config, imap_user, capsys):
    # `check` names the account and the last refresh, or fails with the command.
    path = oauth_config()
    assert cli.main(["--config", str(path), "check"]) == 1
    assert "mailbox support: not signed in; run `mailwatch login support`" in capsys.readouterr().err
    assert login(path, "support") == 0
    capsys.readouterr()
    assert cli.main(["--config", str(path), "check"]) == 0
    out = capsys.readouterr().out
    assert f"mailbox support: signed in as {imap_user}, refreshed " in out
    assert "INBOX has 0 messages" in out
    assert login(path, "--status") == 0
    assert f"signed in as {imap_user}" in capsys.readouterr().out


def test_declined_and_expired_sign_ins_exit_3_and_4(oauth, oauth_config, capsys):
    # The person said no, or nobody came: each its own message and exit code, nothing stored.
    path = oauth_config()
    oauth.state.deny = True
    assert login(path, "support") == cli.EXIT_DECLINED
    assert "declined (access_denied)" in capsys.readouterr().err
    oauth.state.deny, oauth.state.polls_before_approval, oauth.state.device_expires_in_s = False, 1000, 0.5
    assert login(path, "support") == cli.EXIT_EXPIRED
    assert "expired before anyone signed in" in capsys.readouterr().err
    assert login(path, "nosuch") == cli.EXIT_CONFIG


def test_rotated_refresh_token_survives_a_restart(oauth, oauth_config, oauth_dovecot, imap_user, capsys):
    # The server spends each refresh token once used: only a stored rotated one keeps the sign-in alive.
    oauth.state.access_lifetime_s = 1.0
    path = oauth_config()
    assert login(path, "support") == 0
    for round_ in range(3):  # each `poll` is a fresh process-like start: new settings, engine, service
        time.sleep(1.1)
        oauth_dovecot.append(imap_user, customer_mail(round_))
        assert poll(path) == 0, capsys.readouterr().err
    assert oauth.count("refresh_token") == 3
    assert len(oauth.state.refresh) == 1  # one live refresh token: the one we stored


def test_a_refused_token_is_refreshed_once_and_retried(oauth, oauth_config, oauth_dovecot, imap_user, capsys):
    # The server dropped a token we thought valid: one refresh, one retry, and the mail is read.
    path = oauth_config()
    assert login(path, "support") == 0
    oauth.expire_access_tokens()
    oauth_dovecot.append(imap_user, customer_mail(1))
    assert poll(path) == 0
    captured = capsys.readouterr()
    assert "logged 1 new message," in captured.out
    assert oauth.count("refresh_token") == 1
    assert captured.err.count('"event": "imap_token_refused_retrying"') == 1


def test_client_credentials_need_no_login_and_an_expired_secret_names_its_code(
        oauth, oauth_config, oauth_dovecot, imap_user, capsys):
    # App-only: tokens are fetched and cached; an expired secret fails with Microsoft's code.
    oauth.state.client_secret = "app-secret"
    path = oauth_config(flow="client_credentials")
    oauth_dovecot.append(imap_user, customer_mail(1))
    assert poll(path) == 0, capsys.readouterr().err
    assert poll(path) == 0
    assert oauth.count("client_credentials") == 1  # the second poll used the stored token
    oauth.state.secret_expired = True
    oauth.expire_access_tokens()
    assert poll(path) == 1
    err = capsys.readouterr().err
    assert "invalid_client (AADSTS7000222)" in err and "client secret" in err


@SQLITE_ONLY
def test_no_token_reaches_logs_reprs_or_errors(oauth, oauth_config, database_url, capsys):
    # Tokens are secrets: no log line, repr or error message carries one.
    path = oauth_config()
    assert login(path, "support") == 0
    oauth.revoke_all()
    _expire_soon(path)
    assert poll(path) == 1
    settings = load_settings(path)
    store = TokenStore(Database(settings.service.database))
    seen = store.load("mailbox:support")
    tokens = [seen.refresh_token.reveal(), seen.access_token.reveal()]
    captured = capsys.readouterr()
    shown = captured.out + captured.err + repr(seen) + repr(imap_sign_in(settings.mailboxes[0], store))
    assert "mailwatch login support" in shown
    assert not any(token in shown for token in tokens)


def _expire_soon(path: Path) -> None:
    # Make the stored access token look spent, so the next use must refresh.
    settings = load_settings(path)
    db = Database(settings.service.database)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE oauth2_tokens SET access_expires_at = refreshed_at")
    db.dispose()


def test_two_instances_refreshing_at_once_both_keep_working(oauth, oauth_config, database_url):
    # Two services on one database refresh at the same moment: the newer refresh token is never lost.
    path = oauth_config()
    assert login(path, "support") == 0
    oauth.state.token_delay_s = 0.3  # both requests are in flight together
    settings = load_settings(path)
    databases = [Database(settings.service.database) for _ in range(2)]
    sign_ins = [imap_sign_in(settings.mailboxes[0], TokenStore(db)) for db in databases]
    for _round in range(2):
        _expire_soon(path)
        results: list = [None, None]
        now = system_clock()

        def refresh(index: int) -> None:
            try:
                results[index] = sign_ins[index].access_token(now)
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                results[index] = exc

        threads = [threading.Thread(target=refresh, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(oauth.active_account(result.value.reveal()) for result in results), results
    stored = TokenStore(databases[0]).load("mailbox:support")
    assert stored.refresh_token.reveal() in oauth.state.refresh  # the stored one is the live one
    for db in databases:
        db.dispose()


def test_sign_in_required_is_raised_with_code_and_remedy(oauth, oauth_config):
    # A revoked sign-in: SignInRequired with invalid_grant, remembered so the next try asks no one.
    path = oauth_config()
    assert login(path, "support") == 0
    oauth.revoke_all()
    _expire_soon(path)
    settings = load_settings(path)
    service = Service(settings, Database(settings.service.database), system_clock)
    sign_in = service.imap_sign_in(settings.mailboxes[0])
    with pytest.raises(SignInRequired) as caught:
        sign_in.access_token(system_clock())
    assert caught.value.code == "invalid_grant (AADSTS70000)"
    assert caught.value.remedy == "run `mailwatch login support`"
    asked = oauth.count("refresh_token")
    with pytest.raises(SignInRequired):
        service.open_imap(settings.mailboxes[0])
    assert oauth.count("refresh_token") == asked
    service.db.dispose()


def count_logged(path: Path, mailbox: str) -> int:
    settings = load_settings(path)
    db = Database(settings.service.database)
    with db.engine.connect() as connection:
        count = connection.exec_driver_sql(f"SELECT count(*) FROM messages WHERE mailbox = '{mailbox}'").scalar()
    db.dispose()
    return count


@SQLITE_ONLY
def test_daemon_outlives_its_tokens_alerts_once_on_revocation_and_recovers_on_login(
        oauth, oauth_config, oauth_dovecot, imap_user, smtp_sink, daemon, capsys):
    # Tokens die during IDLE: reconnect, nothing lost. Revoked: one alert naming the code and the
    # command while a password mailbox goes on; `mailwatch login` again: recovered, no restart.
    oauth.state.access_lifetime_s = 4.0
    sales = f"{imap_user}-sales"
    path = oauth_config(sink=smtp_sink, smtp_oauth2=False, alert_after="2s",
                        extra=PASSWORD_MAILBOX.format(port=oauth_dovecot.port, user=sales))
    assert login(path, "support") == 0
    running = daemon(path)
    running.wait_for_event("mailbox_watching")
    time.sleep(5)  # past the first token's life
    oauth_dovecot.append(imap_user, customer_mail(1))
    assert wait_until(lambda: count_logged(path, "support") == 1, timeout_s=10)
    assert oauth.count("refresh_token") >= 1
    # Logged in again with a fresh token before the old one died (Dovecot itself would not drop us).
    assert len(running.events("mailbox_watching")) >= 3  # support twice or more, sales once

    oauth.revoke_all()
    assert wait_until(lambda: len(smtp_sink.to("ops@acme.example")) == 1, timeout_s=20)
    oauth_dovecot.append(sales, customer_mail(2))
    assert wait_until(lambda: count_logged(path, "sales") == 1, timeout_s=10)
    time.sleep(6)  # a housekeeping round or two: still exactly one alert
    (alert,) = smtp_sink.to("ops@acme.example")
    body = alert.message.get_body(("plain",)).get_content()
    assert "mailbox support" in alert.message["Subject"]
    assert "invalid_grant (AADSTS70000)" in body and "run `mailwatch login support`" in body

    assert login(path, "support") == 0
    assert wait_until(lambda: len(smtp_sink.to("ops@acme.example")) == 2, timeout_s=20)
    assert "RECOVERED" in smtp_sink.to("ops@acme.example")[1].message["Subject"]
    oauth_dovecot.append(imap_user, customer_mail(3))
    assert wait_until(lambda: count_logged(path, "support") == 2, timeout_s=10)
    assert running.stop()[0] == 0


@SQLITE_ONLY
def test_an_smtp_sign_in_that_is_missing_shows_in_healthz_until_login(
        oauth, oauth_config, oauth_dovecot, imap_user, xoauth2_sink, daemon):
    # SMTP cannot mail its own alert: /healthz names it and the command; after login the ack goes out.
    port = free_port()
    path = oauth_config(sink=xoauth2_sink, smtp_oauth2=False, extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    body = path.read_text().replace('retry_max = "1s"\n', f'retry_max = "1s"\nusername = "{imap_user}"\n'
                                    f'auth = "oauth2"\n[smtp.oauth2]\nprovider = "custom"\n'
                                    f'client_id = "{oauth.state.client_id}"\ntoken_url = "{oauth.token_url}"\n'
                                    f'device_authorization_url = "{oauth.device_url}"\n')
    path.write_text(body)
    assert login(path, "support") == 0
    oauth_dovecot.append(imap_user, customer_mail(1))
    running = daemon(path)
    assert wait_until(lambda: _get(port, "/healthz")[0] == 503, timeout_s=15)
    assert "smtp: not signed in; run `mailwatch login --smtp`" in _get(port, "/healthz")[1]
    assert xoauth2_sink.received == []
    assert login(path, "--smtp") == 0
    assert wait_until(lambda: len(xoauth2_sink.received) == 1, timeout_s=20)
    assert wait_until(lambda: _get(port, "/healthz")[0] == 200, timeout_s=10)
    assert running.stop()[0] == 0


def test_smtp_refused_token_is_refreshed_once_and_retried(oauth, oauth_config, xoauth2_sink):
    # The SMTP server turns down a token we thought valid: one refresh, one retry, logged in.
    path = oauth_config(sink=xoauth2_sink)
    assert login(path, "support") == 0
    oauth.expire_access_tokens()
    settings = load_settings(path)
    service = Service(settings, Database(settings.service.database), system_clock)
    asyncio.run(service.check_smtp())
    assert (xoauth2_sink.handler.refused_logins, len(xoauth2_sink.handler.logins)) == (1, 1)
    assert oauth.count("refresh_token") == 1
    service.db.dispose()


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_processes_on_postgresql_refreshing_at_once_both_poll(oauth, oauth_config, oauth_dovecot, imap_user):
    # Two `mailwatch poll` processes meet a spent access token together: both read the mailbox.
    path = oauth_config()
    assert login(path, "support") == 0
    oauth_dovecot.append(imap_user, customer_mail(1))
    assert poll(path) == 0  # the folder's row exists: two first syncs at once would race on it, not on tokens
    _expire_soon(path)
    oauth.state.token_delay_s = 2.0  # both refresh requests are in flight together, even on a busy machine
    command = [sys.executable, "-m", "mailwatch.cli", "--config", str(path), "poll"]
    polls = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [poll.communicate(timeout=60) for poll in polls]
    assert [poll.returncode for poll in polls] == [0, 0], [err.decode()[-800:] for _out, err in results]
    assert oauth.count("refresh_token") == 2
    assert sum(b'"oauth2_refresh_lost_race"' in err for _out, err in results) == 1  # and it used the winner's
    db = Database(load_settings(path).service.database)
    assert TokenStore(db).load("mailbox:support").refresh_token.reveal() in oauth.state.refresh
    db.dispose()
