"""The routes: GET shows one thread to the holder of its signed link, POST acts on it, nothing else.

GET never changes anything (mail scanners open every link). Each POST carries the link
token and the page's anti-forgery token as form fields; both are checked before the
action runs, and the answer is a 303 back to the page. Forms post to relative URLs and
the redirect is relative too, so the app works under any path prefix the proxy keeps
or strips. Logs name the ticket and the outcome, never the token.
"""

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web
from sqlalchemy.orm import Session

from mailwatch.links import LinkClaim, LinkExpired, LinkRefused, read_token
from mailwatch.pipeline.actions import Action, ActionRefused, StaleLink, apply_action
from mailwatch.pipeline.threadview import thread_view
from mailwatch.web import forms
from mailwatch.web.headers import headers_middleware
from mailwatch.web.pages import Pages
from mailwatch.web.view import page_context, parse_until

log = structlog.get_logger(__name__)

MAX_BODY = 16 * 1024  # a note and three tokens; anything larger is refused with 413
REQUEST_TIMEOUT_S = 10.0
NOTE_LIMIT = 500


@dataclass(frozen=True)
class WebContext:
    """What the app reads per request, through callables: a reload's new settings apply at once."""

    web: Callable[[], object]  # the [web] settings in force
    policies: Callable[[], object]
    session: Callable[[], AbstractContextManager[Session]]
    clock: Callable[[], datetime]


PAGE_ACTIONS = (Action.ANSWERED, Action.TAKE, Action.SNOOZE, Action.CLOSE)  # reopen stays the CLI's


def secret_bytes(web_settings) -> bytes:
    return web_settings.secret_key


def make_app(context: WebContext) -> web.Application:
    pages = Pages()
    app = web.Application(client_max_size=MAX_BODY, middlewares=[headers_middleware(pages.css), _time_limit])
    handlers = _Handlers(context, pages)
    for prefix in _prefixes(context.web().base_url):
        app.router.add_get(prefix + r"t/{ticket:\d{1,12}}", handlers.show)
        app.router.add_post(prefix + r"t/{ticket:\d{1,12}}/{action:[a-z]{1,16}}", handlers.act)
    return app


def _prefixes(base_url: str) -> list[str]:
    """"/" and base_url's path: a proxy may strip the prefix or pass it on."""
    path = urlsplit(base_url).path or "/"
    return ["/"] if path == "/" else ["/", path if path.endswith("/") else path + "/"]


@web.middleware
async def _time_limit(request: web.Request, handler) -> web.StreamResponse:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await handler(request)
    except TimeoutError:
        log.warning("web_request_timed_out", path=request.path)
        raise web.HTTPServiceUnavailable(text="took too long; try again\n") from None


class _Handlers:
    def __init__(self, context: WebContext, pages: Pages) -> None:
        self.context, self.pages = context, pages

    def _page(self, status: int, html: str) -> web.Response:
        return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")

    def _claim(self, ticket: int, token: str | None, now: datetime) -> LinkClaim | web.Response:
        """The link's claim, or the 403/410 page that says how to get a fresh link."""
        if self.context.web() is None:  # a reload removed [web]; the listener goes at the next restart
            return self._page(503, self.pages.notice("Links are switched off", "This mailwatch no longer serves "
                                                     "action links."))
        try:
            return read_token(secret_bytes(self.context.web()), ticket, token or "", now)
        except LinkExpired:
            log.info("web_link_refused", ticket=ticket, outcome="expired")
            return self._page(410, self.pages.notice("This link has expired", "Links in escalation emails work for "
                                                     "a limited time.", fresh_link=True))
        except LinkRefused:
            log.info("web_link_refused", ticket=ticket, outcome="invalid")
            return self._page(403, self.pages.notice("This link is not valid", "The link is incomplete or was "
                                                     "changed. Open it again from the email.", fresh_link=True))

    async def show(self, request: web.Request) -> web.Response:
        ticket, token, now = int(request.match_info["ticket"]), request.query.get("k"), self.context.clock()
        claim = self._claim(ticket, token, now)
        if isinstance(claim, web.Response):
            return claim
        view = await asyncio.to_thread(self._view, ticket, now)
        if view is None:
            log.info("web_page", ticket=ticket, outcome="no such thread")
            return self._page(404, self.pages.notice("No such conversation", f"Ticket {ticket} is not in mailwatch."))
        form_token = forms.form_token(secret_bytes(self.context.web()), str(ticket), token, now)
        done = request.query.get("done")
        log.info("web_page", ticket=ticket, outcome="shown")
        return self._page(200, self.pages.render("thread.html.j2", **page_context(
            view, claim, token, form_token, now, done if done in set(Action) else None)))

    def _view(self, ticket: int, now: datetime):
        with self.context.session() as session:
            return thread_view(session, self.context.policies(), ticket, now)

    async def act(self, request: web.Request) -> web.Response:
        ticket, now = int(request.match_info["ticket"]), self.context.clock()
        form = await request.post()  # over MAX_BODY: aiohttp raises 413 here
        token, csrf = _field(form, "k"), _field(form, "form")
        claim = self._claim(ticket, token, now)
        if isinstance(claim, web.Response):
            return claim
        if not forms.form_token_ok(secret_bytes(self.context.web()), str(ticket), token, csrf, now):
            log.info("web_action_refused", ticket=ticket, outcome="bad form token")
            return self._page(403, self.pages.notice("Please use the page's buttons", "This request did not come "
                                                     "from a current mailwatch page. Open the link again and retry."))
        action = request.match_info["action"]
        if action not in PAGE_ACTIONS:
            raise web.HTTPNotFound(text="no such action\n")
        return await self._apply(request, claim, Action(action), form, now)

    async def _apply(self, request: web.Request, claim: LinkClaim, action, form, now: datetime) -> web.Response:
        ticket, back = claim.ticket, f"../{claim.ticket}?k={quote(_field(form, 'k'), safe='')}"
        options: dict[str, object] = {"clock": claim.clock}
        if action == Action.ANSWERED:
            options["note"] = " ".join(_field(form, "note").split())[:NOTE_LIMIT] or None
        if action == Action.SNOOZE:
            until = await asyncio.to_thread(self._until, ticket, _field(form, "until"), now)
            if isinstance(until, str):
                return self._page(400, self.pages.notice("Pick a time to snooze until", until, back=back))
            options["until"] = until
        try:
            result = await asyncio.to_thread(self._run, ticket, action, claim.recipient, now, options)
        except StaleLink as exc:  # the link is for an earlier clock: the customer wrote again since
            log.info("web_action_refused", ticket=ticket, action=str(action), outcome="stale link")
            return self._page(409, self.pages.notice("The conversation moved on", str(exc), fresh_link=True))
        except ActionRefused as exc:  # a bad snooze time or note, or the thread vanished
            log.info("web_action_refused", ticket=ticket, action=str(action), outcome="refused")
            return self._page(400, self.pages.notice("That did not work", str(exc), back=back))
        log.info("web_action", ticket=ticket, action=str(action), outcome="changed" if result.changed else "unchanged")
        raise web.HTTPSeeOther(location=f"{back}&done={action}")

    def _until(self, ticket: int, text: str, now: datetime) -> datetime | str:
        view = self._view(ticket, now)
        return parse_until(text, view.tz, now) if view is not None else "no such conversation"

    def _run(self, ticket: int, action, actor: str, now: datetime, options: dict):
        with self.context.session() as session:
            return apply_action(session, self.context.policies(), ticket, action, actor, now, **options)


def _field(form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
