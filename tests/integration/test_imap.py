"""IMAP connections as operators configure them: TLS, STARTTLS, several mailboxes."""

import asyncio
import threading
import time

import pytest

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.errors import AuthenticationError, TransientError
from mailwatch.imap import ImapConnection, ImapEndpoint
from mailwatch.service import Service
from tests.mailfactory import customer_mail

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def endpoint(dovecot, user: str, security: str, ca_file=None) -> ImapEndpoint:
    port = dovecot.tls_port if security == "tls" else dovecot.port
    return ImapEndpoint("127.0.0.1", port, security, user, timeout_s=10, ca_file=ca_file)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_starttls_verify_against_the_configured_ca(dovecot, imap_user, security):
    # With the private CA in ca_file the certificate is trusted and mail is read.
    dovecot.append(imap_user, customer_mail(1))
    connection = ImapConnection(endpoint(dovecot, imap_user, security, dovecot.ca_file), dovecot.password)
    connection.open()
    try:
        assert connection.select("INBOX").exists == 1
    finally:
        connection.close()


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate_is_refused(dovecot, imap_user, security):
    # TLS is verified by default: a certificate from an unknown CA is an error, not a warning.
    connection = ImapConnection(endpoint(dovecot, imap_user, security), dovecot.password)
    with pytest.raises(TransientError, match="certificate|CERTIFICATE"):
        connection.open()


def test_wrong_password_is_an_authentication_error_without_the_password(dovecot, imap_user):
    # A refused login says so (to be retried slowly and alerted on) and never echoes the password.
    connection = ImapConnection(endpoint(dovecot, imap_user, "none"), "Tr0ub4dor&3")
    with pytest.raises(AuthenticationError) as caught:
        connection.open()
    assert "Tr0ub4dor&3" not in str(caught.value) and "login refused" in str(caught.value)


@SQLITE_ONLY
def test_several_mailboxes_are_logged_and_one_failing_stops_none(dovecot, tmp_path, config_file):
    # Two mailboxes log their own mail; a third with a dead server only reports its failure.
    (tmp_path / "pw").write_text(dovecot.password)
    base = config_file().read_text().split("[[mailbox]]")[0]
    boxes = "".join(f"""
[[mailbox]]
name = "{name}"
address = "{name}@acme.example"
  [mailbox.imap]
  host = "127.0.0.1"
  port = {port}
  security = "none"
  username = "{name}-{tmp_path.name}"
  password_file = "{tmp_path / 'pw'}"
""" for name, port in (("support", dovecot.port), ("sales", dovecot.port), ("dead", 1)))
    path = tmp_path / "multi.toml"
    path.write_text(base + boxes + "\n[acknowledgment]\nenabled = false\n")
    settings = load_settings(path)
    dovecot.append(f"support-{tmp_path.name}", customer_mail(1))
    dovecot.append_many(f"sales-{tmp_path.name}", [customer_mail(2), customer_mail(3)])
    db = Database(settings.service.database)
    service = Service(settings, db, system_clock)
    service.prepare()
    report = asyncio.run(service.run_once())
    assert {(f.mailbox, f.logged) for f in report.folders} == {("support", 1), ("sales", 2)}
    assert list(report.failed_mailboxes) == ["dead"]
    db.dispose()


def test_mail_arriving_between_a_sync_and_idle_ends_the_idle_at_once(dovecot, imap_user):
    # The bench lost a sample when an ack went out fast and the next mail came while the
    # watcher was between its sync and IDLE. (Dovecot does report it as IDLE begins, but
    # in the packet of "+ idling", which imaplib swallowed: see test_idle_races.py.)
    dovecot.append(imap_user, customer_mail(0))
    connection = ImapConnection(endpoint(dovecot, imap_user, "none"), dovecot.password)
    connection.open()
    try:
        connection.select("INBOX")
        assert connection.new_uids(0) == [1]  # the sync's last command
        dovecot.append(imap_user, customer_mail(1))
        started = time.monotonic()
        assert connection.idle_wait(10, threading.Event())
        assert time.monotonic() - started < 2
    finally:
        connection.close()


def test_mail_arriving_during_a_sync_is_announced_afterwards(dovecot, imap_user):
    # The server's "* N EXISTS" during our FETCHes is not lost: asked after the sync, the
    # connection says new mail came, so the watcher syncs again instead of idling.
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(3)])
    connection = ImapConnection(endpoint(dovecot, imap_user, "none"), dovecot.password)
    connection.open()
    try:
        connection.select("INBOX")
        for index, _batch in enumerate(connection.fetch_new(0, batch_size=1)):
            if index == 0:
                dovecot.append(imap_user, customer_mail(3))
        assert connection.announced_new_mail()
        assert not connection.announced_new_mail()  # said once
        connection.select("INBOX")
        list(connection.fetch_new(3))
        assert not connection.announced_new_mail()  # a quiet sync announces nothing
    finally:
        connection.close()
