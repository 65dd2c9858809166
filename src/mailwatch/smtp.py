"""Sending over SMTP with aiosmtplib: one connection reused across batches and drains.

A sender keeps its connection open between sends, closes it after `idle_close_s`
without one, and opens a new one when the server has closed it meanwhile.

Failures leave here as TransientError (retry later: 4xx answers, a dropped or
refused connection), AuthenticationError (retry slowly, tell the operator) or
PermanentError (5xx for this message: record the server's answer, never retry).
"""

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiosmtplib
import structlog

from mailwatch.errors import AuthenticationError, MailwatchError, PermanentError, SmtpUnavailable, TransientError
from mailwatch.tls import security_hint, tls_context

log = structlog.get_logger(__name__)

# A kept connection unused this long is closed: servers drop idle sessions anyway (Postfix after 300 s).
IDLE_CLOSE_S = 30.0


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str | None = None
    timeout_s: float = 30.0
    ca_file: Path | None = None
    auth_hint: str = ""  # appended to a refused login, e.g. "run `mailwatch login --smtp`"


# Gives a bearer token for AUTH XOAUTH2; called with refused=True after the server turned one down.
BearerSource = Callable[[bool], Awaitable[str]]


class SmtpSender:
    """An SMTP session; `async with` opens it, `send` delivers one message."""

    def __init__(self, endpoint: SmtpEndpoint, password: str | None = None,
                 tls_context: ssl.SSLContext | None = None, bearer: BearerSource | None = None,
                 idle_close_s: float = IDLE_CLOSE_S) -> None:
        self.endpoint = endpoint
        self.idle_close_s = idle_close_s
        self._password = password
        self._bearer = bearer
        self._tls_context = tls_context
        self._client: aiosmtplib.SMTP | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None  # an idle close under way: held so it is not collected

    def __repr__(self) -> str:
        return f"SmtpSender({self.endpoint.host}:{self.endpoint.port})"

    async def __aenter__(self) -> "SmtpSender":
        await self.connect()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (TLS or STARTTLS as configured) and authenticate."""
        await self.close()  # a kept connection the server dropped still holds its transport
        endpoint = self.endpoint
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            use_tls=endpoint.security == "tls",
            start_tls=endpoint.security == "starttls",
            tls_context=self._tls() if endpoint.security != "none" else None,
            timeout=endpoint.timeout_s,
        )
        where = f"{endpoint.host}:{endpoint.port}"
        try:
            await client.connect()
            await self._log_in(client)
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _quietly_close(client)
            hint = f"; {endpoint.auth_hint}" if endpoint.auth_hint else ""
            raise AuthenticationError(f"SMTP login refused by {where}: {exc.code} {exc.message}{hint}") from None
        except MailwatchError:
            await _quietly_close(client)  # no token could be had
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _quietly_close(client)
            hint = security_hint("SMTP", endpoint.port, endpoint.security, exc)
            raise SmtpUnavailable(f"SMTP connection to {where} failed: {_answer(exc)}"
                                  + (f"; {hint}" if hint else "")) from None
        self._client = client

    async def _log_in(self, client: aiosmtplib.SMTP) -> None:
        username = self.endpoint.username
        if not username:
            return
        if self._bearer is None:
            await client.login(username, self._password or "")
            return
        try:
            await client.auth_xoauth2(username, await self._bearer(False))
        except aiosmtplib.SMTPAuthenticationError:
            # A token we thought valid was refused: one fresh one, once.
            log.info("smtp_token_refused_retrying", host=self.endpoint.host, username=username)
            await client.auth_xoauth2(username, await self._bearer(True))

    def _tls(self) -> ssl.SSLContext:
        # Loading the CA store costs ~20 ms: callers that connect often pass one context in.
        if self._tls_context is None:
            self._tls_context = tls_context(self.endpoint.ca_file)
        return self._tls_context

    async def send(self, envelope_from: str, recipient: str, content: bytes) -> str:
        """Deliver one message to one recipient; returns the server's answer.

        A kept connection the server has closed meanwhile fails at MAIL FROM, before any of
        the message was handed over: then that mail is tried once more on a fresh connection.
        """
        self._stop_idle_clock()
        try:
            kept = self._client is not None and self._client.is_connected
            if not kept:
                await self.connect()
            try:
                await self._begin(envelope_from, len(content))
            except _ConnectionGone:
                if not kept:
                    raise
                log.info("smtp_reconnecting", host=self.endpoint.host, reason="the server closed the kept connection")
                await self.connect()
                await self._begin(envelope_from, len(content))
            return await self._deliver(recipient, content)
        finally:
            self._start_idle_clock()

    async def _begin(self, envelope_from: str, size: int) -> None:
        client = self._client
        options = [f"SIZE={size}"] if client.supports_extension("size") else []
        try:
            await client.mail(envelope_from, options=options)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            await self.close()
            raise _ConnectionGone(f"SMTP send failed: {_answer(exc)}") from None
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            if exc.code == 421:  # the server is closing this session, e.g. for idling too long
                raise _ConnectionGone(f"SMTP send failed: {exc.code} {exc.message}") from None
            raise _by_code(exc.code, f"{exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise SmtpUnavailable(f"SMTP send failed: {_answer(exc)}") from None

    async def _deliver(self, recipient: str, content: bytes) -> str:
        client = self._client
        try:
            await client.rcpt(recipient)
            return (await client.data(content)).message
        except aiosmtplib.SMTPRecipientRefused as exc:
            await _quietly_reset(client)  # the session stays good for the next mail
            raise _by_code(exc.code, f"{exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            raise _by_code(exc.code, f"{exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise SmtpUnavailable(f"SMTP send failed: {_answer(exc)}") from None

    def _start_idle_clock(self) -> None:
        if self._client is not None and self._client.is_connected:
            self._idle_timer = asyncio.get_running_loop().call_later(self.idle_close_s, self._close_idle)

    def _stop_idle_clock(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_idle(self) -> None:
        self._idle_timer = None
        log.debug("smtp_idle_closed", host=self.endpoint.host, idle_s=self.idle_close_s)
        self._closing = asyncio.ensure_future(self.close())

    async def close(self) -> None:
        """Say QUIT and close; the next send opens a new connection."""
        self._stop_idle_clock()
        client, self._client = self._client, None
        if client is not None:
            await _quietly_close(client)


class _ConnectionGone(SmtpUnavailable):
    """The server closed the session before MAIL FROM was answered: nothing was handed over."""


def _by_code(code: int, answer: str) -> PermanentError | TransientError:
    return PermanentError(answer) if 500 <= code < 600 else TransientError(answer)


def _answer(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


async def _quietly_reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


async def _quietly_close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
