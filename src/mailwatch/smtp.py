"""Sending over SMTP with aiosmtplib: one connection reused across a batch.

Failures leave here as TransientError (retry later: 4xx answers, a dropped or
refused connection), AuthenticationError (retry slowly, tell the operator) or
PermanentError (5xx for this message: record the server's answer, never retry).
"""

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
                 tls_context: ssl.SSLContext | None = None, bearer: BearerSource | None = None) -> None:
        self.endpoint = endpoint
        self._password = password
        self._bearer = bearer
        self._tls_context = tls_context
        self._client: aiosmtplib.SMTP | None = None

    def __repr__(self) -> str:
        return f"SmtpSender({self.endpoint.host}:{self.endpoint.port})"

    async def __aenter__(self) -> "SmtpSender":
        await self.connect()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (TLS or STARTTLS as configured) and authenticate."""
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
        """Deliver one message to one recipient; returns the server's answer."""
        if self._client is None or not self._client.is_connected:
            await self.connect()
        try:
            _refused, answer = await self._client.sendmail(envelope_from, [recipient], content)
            return answer
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            raise _by_code(refused.code, f"{refused.code} {refused.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            raise _by_code(exc.code, f"{exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise SmtpUnavailable(f"SMTP send failed: {_answer(exc)}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_close(client)


def _by_code(code: int, answer: str) -> PermanentError | TransientError:
    return PermanentError(answer) if 500 <= code < 600 else TransientError(answer)


def _answer(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


async def _quietly_close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
