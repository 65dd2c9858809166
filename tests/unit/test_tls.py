"""A `security` that does not fit the port is named, with what to set instead."""

import ssl

import pytest

from mailwatch.tls import security_hint

WRONG_VERSION = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")


@pytest.mark.parametrize(("protocol", "port"), [("IMAP", 143), ("SMTP", 587), ("SMTP", 25)])
def test_tls_on_a_starttls_port_suggests_starttls(protocol, port):
    # security = "tls" against a plain port reads OpenSSL's "wrong version number": name the fix.
    assert security_hint(protocol, port, "tls", WRONG_VERSION) == (
        f'port {port} usually speaks plain {protocol} with STARTTLS: security = "starttls"')


@pytest.mark.parametrize(("protocol", "port", "security"), [("IMAP", 993, "starttls"), ("SMTP", 465, "starttls"),
                                                            ("IMAP", 993, "none")])
def test_starttls_or_plain_on_a_tls_port_suggests_tls(protocol, port, security):
    # A plain greeting never comes from an implicit-TLS port: the connection times out.
    assert security_hint(protocol, port, security, TimeoutError("timed out")) == (
        f'port {port} usually speaks TLS from the first byte: security = "tls"')


def test_plain_answer_on_another_port_still_gets_a_hint():
    # A TLS handshake answered in plain text means the port is not implicit TLS, whatever its number.
    wrapped = OSError("Error connecting: [SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert 'security = "starttls"' in security_hint("SMTP", 2525, "tls", wrapped)


def test_other_failures_get_no_hint():
    # A refused connection or an untrusted certificate is not a security mismatch.
    assert security_hint("IMAP", 143, "tls", ConnectionRefusedError(111, "refused")) == ""
    assert security_hint("IMAP", 993, "tls", ssl.SSLCertVerificationError(1, "unknown ca")) == ""
    assert security_hint("IMAP", 143, "starttls", TimeoutError("timed out")) == ""
