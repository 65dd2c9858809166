"""Signed action links: a capability for one thread, one clock and one recipient, until it expires.

HMAC-SHA256 from the standard library rather than itsdangerous: the claim is four fixed fields
and one expiry we check ourselves against the `now` we are given, so a library's timestamp,
serializer and key-derivation layers would add a dependency without doing work we need.
Pure: no clock reads, `now` is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailwatch.config.models import WebSettings

# Distinguishes these signatures from any other use of the same key.
_PURPOSE = b"mailwatch-action-link-v1\x00"
_MAX_TOKEN = 2048  # a query string longer than this is not ours: refuse before decoding


class LinkRefused(Exception):
    """The link does not authorise anything (base class: the page says why in general terms)."""


class LinkInvalid(LinkRefused):
    """Tampered, malformed, for another thread, or signed with another key (HTTP 403)."""


class LinkExpired(LinkRefused):
    """Genuine but past its expiry (HTTP 410): the next digest carries a fresh link."""


@dataclass(frozen=True)
class LinkClaim:
    """What a link says: who may act on which thread's clock, until when."""

    ticket: int
    clock: int
    recipient: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Only the one spelling `_b64` writes: b64decode skips stray characters and ignores the
    unused bits of the last one, so other spellings of the same bytes would pass as untampered."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data


def _payload(claim: LinkClaim) -> bytes:
    fields = [claim.ticket, claim.clock, claim.recipient, int(claim.expires_at.timestamp())]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _PURPOSE + payload, hashlib.sha256).digest()


def make_token(secret: bytes, claim: LinkClaim) -> str:
    """The URL-safe token for `claim`: payload.signature, both base64url without padding."""
    payload = _payload(claim)
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def read_token(secret: bytes, ticket: int, token: str, now: datetime) -> LinkClaim:
    """The claim a genuine, unexpired token for `ticket` (from the URL path) carries; else raise."""
    claim = _verified(secret, token)
    if claim.ticket != ticket:
        raise LinkInvalid("this link is for another ticket")
    if now >= claim.expires_at:
        raise LinkExpired("this link has expired")
    return claim


def _verified(secret: bytes, token: str) -> LinkClaim:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise LinkInvalid("not a mailwatch link")
    encoded, signature = token.split(".")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except ValueError:
        raise LinkInvalid("not a mailwatch link") from None
    # Compare before parsing: nothing of an unsigned payload is ever interpreted.
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise LinkInvalid("the link's signature does not match")
    return _claim_of(payload)


def _claim_of(payload: bytes) -> LinkClaim:
    try:
        ticket, clock, recipient, expires = json.loads(payload)
        return LinkClaim(int(ticket), int(clock), str(recipient), datetime.fromtimestamp(int(expires), UTC))
    except (ValueError, TypeError, OverflowError, OSError):
        raise LinkInvalid("not a mailwatch link") from None


def action_link(web: WebSettings, ticket: int, clock: int, recipient: str, now: datetime) -> str:
    """A fresh link for `recipient` to act on `ticket`'s clock `clock`, valid for web.link_lifetime."""
    claim = LinkClaim(ticket, clock, recipient.lower(), (now + web.link_lifetime).replace(microsecond=0))
    return f"{web.base_url}t/{ticket}?k={make_token(web.secret_key, claim)}"
