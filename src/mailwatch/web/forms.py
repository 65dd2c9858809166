"""Per-page anti-forgery tokens: each POST must carry one made for that page.

A token is `{issued}.{mac}`: HMAC-SHA256 over (ticket, link token, issue time) with a key
derived from the [web] secret, so it is useless for another thread, another link, or after
FORM_LIFETIME. The standard library's hmac does all the work here; no cookie is needed
because the token rides in the form itself.
"""

import hashlib
import hmac
from datetime import datetime, timedelta

FORM_LIFETIME = timedelta(hours=12)  # a page left open over a morning can still be submitted
CLOCK_SKEW = timedelta(minutes=5)  # issued a little "in the future" by another instance is fine
_PURPOSE = b"mailwatch web form v1"  # keeps these MACs apart from the link signatures


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def _mac(secret: bytes, ticket: str, link_token: str, issued: int) -> str:
    message = "\0".join((str(ticket), link_token, str(issued))).encode()
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def form_token(secret: bytes, ticket: str, link_token: str, now: datetime) -> str:
    """The token a page issued at `now` puts in its forms."""
    issued = int(now.timestamp())
    return f"{issued}.{_mac(secret, ticket, link_token, issued)}"


def form_token_ok(secret: bytes, ticket: str, link_token: str, token: str | None, now: datetime) -> bool:
    """Whether `token` was made by `form_token` for this ticket and link, and is still fresh at `now`."""
    issued_text, _, mac = (token or "").partition(".")
    if not (issued_text.isascii() and issued_text.isdigit()) or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    expected = _mac(secret, ticket, link_token, issued)
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        return False
    age = now - datetime.fromtimestamp(issued, now.tzinfo)
    return -CLOCK_SKEW <= age <= FORM_LIFETIME
