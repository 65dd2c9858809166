"""TLS for the adapters: certificates are always verified, and a wrong `security` is named.

Pointing `security = "tls"` at a plain port gives OpenSSL's "wrong version number";
pointing STARTTLS at a TLS port just times out. Neither says what to change, so the
adapters append `security_hint`.
"""

import ssl
from pathlib import Path

# Well-known ports and the security their protocol speaks there.
CONVENTIONAL_SECURITY = {
    ("IMAP", 143): "starttls",  # plain greeting, then STARTTLS
    ("IMAP", 993): "tls",  # TLS from the first byte (IMAPS)
    ("SMTP", 25): "starttls",  # server-to-server submission, STARTTLS if any
    ("SMTP", 587): "starttls",  # message submission
    ("SMTP", 465): "tls",  # implicit-TLS submission
}


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying TLS context, trusting `ca_file` instead of the system store if given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def security_hint(protocol: str, port: int, security: str, exc: BaseException) -> str:
    """What to set when a connection failed because `security` does not match the port ('' if unclear)."""
    usual = CONVENTIONAL_SECURITY.get((protocol, port))
    if security == "tls" and _plain_answer(exc):
        if usual == "starttls":
            return f'port {port} usually speaks plain {protocol} with STARTTLS: security = "starttls"'
        return f'the server on port {port} answered without TLS: if it offers STARTTLS, security = "starttls"'
    if security != "tls" and usual == "tls":
        return f'port {port} usually speaks TLS from the first byte: security = "tls"'
    return ""


def _plain_answer(exc: BaseException) -> bool:
    # The server's plain-text greeting read as a TLS record; libraries wrap the SSLError
    # (aiosmtplib keeps only its text), so look along the chain and in the message.
    while exc is not None:
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLCertVerificationError):
            return True
        if "WRONG_VERSION_NUMBER" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
