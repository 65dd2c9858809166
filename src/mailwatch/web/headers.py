"""Security headers on every response, errors included: the page runs no script and embeds nothing."""

import base64
import hashlib
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def style_hash(css: str) -> str:
    """The CSP source allowing exactly this <style> block and no other."""
    digest = hashlib.sha256(css.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def security_headers(css: str) -> dict[str, str]:
    csp = "; ".join((
        "default-src 'none'",
        f"style-src {style_hash(css)}",
        "img-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ))
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",  # the link token must not leave in a Referer
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",  # a shared phone or proxy keeps no copy of a customer's mail
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def headers_middleware(css: str) -> Callable:
    """A middleware adding the headers to whatever the handler returned or raised."""
    headers = security_headers(css)

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return add_headers
