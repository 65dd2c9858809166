"""Against real servers: TLS pointed at a plain port says which `security` to set."""

import asyncio

import pytest

from mailwatch.errors import TransientError
from mailwatch.imap import ImapConnection, ImapEndpoint
from mailwatch.smtp import SmtpEndpoint, SmtpSender


def test_imap_tls_on_the_plain_port_suggests_starttls(dovecot, imap_user):
    # Dovecot's plain port answers a TLS hello with its greeting; the error says what to change.
    connection = ImapConnection(ImapEndpoint("127.0.0.1", dovecot.port, "tls", imap_user, timeout_s=5),
                                dovecot.password)
    with pytest.raises(TransientError) as caught:
        connection.open()
    assert "wrong version number" in str(caught.value)
    assert str(caught.value).endswith('answered without TLS: if it offers STARTTLS, security = "starttls"')


def test_smtp_tls_on_a_plain_server_suggests_starttls(smtp_sink):
    # The same mistake in [smtp] gets the same hint.
    async def connect() -> None:
        async with SmtpSender(SmtpEndpoint("127.0.0.1", smtp_sink.port, "tls", timeout_s=5)):
            pass

    with pytest.raises(TransientError, match='if it offers STARTTLS, security = "starttls"$'):
        asyncio.run(connect())
