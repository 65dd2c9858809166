"""TLS for the adapters: certificates are always verified."""

import ssl
from pathlib import Path


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying TLS context, trusting `ca_file` instead of the system store if given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
