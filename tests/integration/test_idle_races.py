"""Mail that arrives at the moment a watcher goes from its sync into IDLE is not missed.

The bench (isolation, full run) lost a sample this way: the mail came while the watcher
was between the NOOP it sends before IDLE and the IDLE command, so Dovecot reported it
in the same packet as the "+ idling" continuation.
"""

import threading
import time

import pytest

from mailwatch.imap import ImapConnection, ImapEndpoint
from tests.mailfactory import customer_mail

PROMPT_S = 2.0  # "at once": a couple of IDLE ticks, far below the 20 s a bench sample may take


SECURITY = pytest.mark.parametrize("security", ["none", "tls"])  # TLS keeps bytes of its own


def connected(dovecot, user: str, security: str) -> ImapConnection:
    port, ca_file = (dovecot.tls_port, dovecot.ca_file) if security == "tls" else (dovecot.port, None)
    connection = ImapConnection(ImapEndpoint("127.0.0.1", port, security, user, timeout_s=10, ca_file=ca_file),
                                dovecot.password)
    connection.open()
    connection.select("INBOX")
    return connection


@SECURITY
def test_mail_arriving_between_the_noop_and_idle_ends_the_idle_at_once(dovecot, imap_user, security):
    # Dovecot looks at the mailbox as IDLE begins and sends "* 2 EXISTS" right behind
    # "+ idling"; imaplib reads both off the socket, so polling the socket for the EXISTS
    # waited for the next packet: the IDLE renewal (poll_interval), a sample lost.
    dovecot.append(imap_user, customer_mail(0))
    connection = connected(dovecot, imap_user, security)
    noop = connection.folder_changed

    def noop_then_mail_arrives() -> bool:
        changed = noop()
        dovecot.append(imap_user, customer_mail(1))  # after the NOOP's answer, before IDLE
        return changed

    connection.folder_changed = noop_then_mail_arrives
    try:
        started = time.monotonic()
        assert connection.idle_wait(10, threading.Event())
        assert time.monotonic() - started < PROMPT_S
    finally:
        connection.close()


@SECURITY
def test_a_quiet_idle_waits_its_time_and_the_connection_still_works(dovecot, imap_user, security):
    # Looking for what came with "+ idling" must not read a response that is not there.
    connection = connected(dovecot, imap_user, security)
    try:
        started = time.monotonic()
        assert not connection.idle_wait(1.5, threading.Event())
        assert time.monotonic() - started >= 1.5
        dovecot.append(imap_user, customer_mail(0))
        assert connection.idle_wait(10, threading.Event())
        assert connection.new_uids(0) == [1]
    finally:
        connection.close()
