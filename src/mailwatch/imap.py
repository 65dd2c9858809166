"""IMAP access with imapclient: login, folder status, incremental fetch.

Everything here blocks; callers run each connection in its own worker thread
(`asyncio.to_thread`) so the event loop never waits on the network.
"""

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.response_parser import parse_response

from mailwatch.errors import AuthenticationError, MailwatchError, TransientError
from mailwatch.tls import security_hint, tls_context

log = structlog.get_logger(__name__)

FETCH_BATCH_SIZE = 250  # UIDs per FETCH: few round trips, bounded memory
FETCH_BATCH_BYTES = 4 * 1024 * 1024  # and at most this much mail per FETCH, whatever the count
SIZE_LOOKUP_CHUNK = 5000  # UIDs per "UID FETCH RFC822.SIZE", which plans the batches
BODY_PREFIX_BYTES = 8192  # enough text for a snippet; attachments are never downloaded
HEADER_MAX_BYTES = 65536  # a longer header is cut (and marked): a 5 MB header must not cost 5 MB
FETCH_ITEMS = [
    b"INTERNALDATE",
    b"FLAGS",
    b"RFC822.SIZE",
    f"BODY.PEEK[HEADER]<0.{HEADER_MAX_BYTES}>".encode(),  # PEEK: never mark a customer's mail as seen
    f"BODY.PEEK[TEXT]<0.{BODY_PREFIX_BYTES}>".encode(),
]


IDLE_TICK_S = 1.0  # how often an IDLE wait looks at the stop flag
REAUTH_AHEAD = timedelta(minutes=2)  # reconnect this long before a bearer token dies (servers may drop us)

# Gives a bearer token and its expiry; called with refused=True after the server turned one down.
BearerSource = Callable[[bool], tuple[str, datetime]]
FOLDER_CHANGES = (b"EXISTS", b"EXPUNGE", b"FETCH")  # IDLE responses worth a sync


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    exists: int
    highest_modseq: int | None


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    received_at: datetime | None  # INTERNALDATE in UTC: when the server accepted the mail
    flags: tuple[str, ...]
    size: int
    header: bytes
    body_prefix: bytes
    header_cut: bool = False  # the server had more header than HEADER_MAX_BYTES


@dataclass(frozen=True)
class ImapEndpoint:
    """Where and how to connect; the password stays out of repr."""

    host: str
    port: int
    security: str  # tls | starttls | none
    username: str
    timeout_s: float = 30.0
    ca_file: Path | None = None
    auth_hint: str = ""  # appended to a refused login, e.g. "run `mailwatch login support`"


class ImapConnection:
    """One logged-in IMAP connection, by password or by OAuth2 bearer token (XOAUTH2)."""

    def __init__(self, endpoint: ImapEndpoint, password: str | None = None,
                 bearer: BearerSource | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.endpoint = endpoint
        self._password = password
        self._bearer = bearer
        self._clock = clock  # with a bearer: when its token dies is a wall time
        self._client: IMAPClient | None = None
        self.credentials_expire_at: datetime | None = None  # a bearer token's end; None for passwords
        self._reauth_at = datetime.max.replace(tzinfo=UTC)

    def __repr__(self) -> str:
        return f"ImapConnection({self.endpoint.username}@{self.endpoint.host}:{self.endpoint.port})"

    def open(self) -> None:
        """Connect and log in, translating failures into TransientError/AuthenticationError."""
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        token = self._bearer(False) if self._bearer else None  # before connecting: a dead sign-in needs no socket
        try:
            self._client = self._connect()
            self._log_in(token)
            if b"CONDSTORE" in self._client.capabilities():
                self._client.enable("CONDSTORE")  # HIGHESTMODSEQ: find flag changes cheaply
        except MailwatchError:
            self.close()  # a second token was needed and could not be had
            raise
        except LoginError:
            self.close()
            hint = f"; {self.endpoint.auth_hint}" if self.endpoint.auth_hint else ""
            raise AuthenticationError(f"IMAP login refused by {where} for {self.endpoint.username}{hint}") from None
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise TransientError(f"IMAP TLS certificate of {where} not trusted: {exc.verify_message}") from None
        except (OSError, IMAPClientError) as exc:
            self.close()
            hint = security_hint("IMAP", self.endpoint.port, self.endpoint.security, exc)
            raise TransientError(f"IMAP connection to {where} failed: {_describe(exc)}"
                                 + (f"; {hint}" if hint else "")) from None
        self._client.normalise_times = False  # keep INTERNALDATE's offset: we store UTC

    def _log_in(self, token: tuple[str, datetime] | None) -> None:
        if token is None:
            self._client.login(self.endpoint.username, self._password)
            return
        try:
            self._client.oauth2_login(self.endpoint.username, token[0])
        except LoginError:
            # A token we thought valid was refused (revoked early, clock skew): one fresh one, once.
            log.info("imap_token_refused_retrying", host=self.endpoint.host, username=self.endpoint.username)
            token = self._bearer(True)
            self._client.oauth2_login(self.endpoint.username, token[0])
        self.credentials_expire_at = token[1]
        left = token[1] - self._clock()
        self._reauth_at = token[1] - min(REAUTH_AHEAD, left / 4)

    def credentials_expiring(self, now: datetime) -> bool:
        """True when the bearer token we logged in with is about to die: time to reconnect with a new one."""
        return self.credentials_expire_at is not None and now >= self._reauth_at

    def _connect(self) -> IMAPClient:
        endpoint = self.endpoint
        context = tls_context(endpoint.ca_file)
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.security == "tls",
            ssl_context=context,
            timeout=endpoint.timeout_s,
        )
        if endpoint.security == "starttls":
            client.starttls(context)
        return client

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise TransientError("IMAP connection is not open")
        return self._client

    def capabilities(self) -> tuple[bytes, ...]:
        return tuple(self.client.capabilities())

    def select(self, folder: str) -> FolderStatus:
        """Open `folder` read-only and report its UIDVALIDITY, UIDNEXT and MODSEQ."""
        with self._translated(f"SELECT {folder}"):
            info = self.client.select_folder(folder, readonly=True)
        self._forget_announcements()
        modseq = info.get(b"HIGHESTMODSEQ")
        return FolderStatus(
            uidvalidity=int(info[b"UIDVALIDITY"]),
            uidnext=int(info.get(b"UIDNEXT", 0)),
            exists=int(info.get(b"EXISTS", 0)),
            highest_modseq=int(modseq) if modseq is not None else None,
        )

    def list_folders(self) -> list[tuple[str, tuple[str, ...]]]:
        """Every folder's name and flags; with SPECIAL-USE, `\\Sent` marks the Sent folder."""
        with self._translated("LIST"):
            folders = self.client.list_folders()
        return [(name, tuple(_text(flag) for flag in flags)) for flags, _delimiter, name in folders]

    def fetch_new(self, after_uid: int, batch_size: int = FETCH_BATCH_SIZE,
                  batch_bytes: int = FETCH_BATCH_BYTES) -> Iterator[list[FetchedMessage]]:
        """Yield the messages with UID > after_uid in the selected folder, a batch at a time."""
        return self.fetch_batches(self.new_uids(after_uid), batch_size, batch_bytes)

    def new_uids(self, after_uid: int) -> list[int]:
        """The UIDs above `after_uid` in the selected folder, ascending."""
        with self._translated("UID SEARCH"):
            # "N:*" also matches the highest UID when it is below N, so filter.
            return sorted(uid for uid in self.client.search(["UID", f"{after_uid + 1}:*"]) if uid > after_uid)

    def arrived_after(self, uid: int) -> list[int]:
        """The UIDs above `uid`, after a NOOP: a server shows a SEARCH the mail that came
        during our last command only once it has told us of it, which a NOOP makes it do."""
        self.folder_changed()
        return self.new_uids(uid)

    def folder_changed(self) -> bool:
        """A NOOP: whether the server then reported new mail, an expunge or changed flags."""
        with self._translated("NOOP"):
            return any(_is_change(response) for response in self.client.noop()[1])

    def fetch_batches(self, uids: Sequence[int], batch_size: int = FETCH_BATCH_SIZE,
                      batch_bytes: int = FETCH_BATCH_BYTES) -> Iterator[list[FetchedMessage]]:
        """Fetch `uids` a batch at a time.

        A batch holds at most `batch_size` messages and about `batch_bytes` of fetched
        mail, so forty mails with 5 MB headers cost no more memory than a normal batch.
        """
        for start in range(0, len(uids), SIZE_LOOKUP_CHUNK):
            chunk = uids[start : start + SIZE_LOOKUP_CHUNK]
            for batch in plan_batches(chunk, self.sizes(chunk), batch_size, batch_bytes):
                yield self.fetch(batch)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each message, to plan batches by bytes."""
        with self._translated("UID FETCH RFC822.SIZE"):
            response = self.client.fetch(list(uids), [b"RFC822.SIZE"])
        return {uid: int(item.get(b"RFC822.SIZE", 0)) for uid, item in response.items()}

    def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        """Fetch what mailwatch logs about `uids` (never whole attachments)."""
        with self._translated("UID FETCH"):
            response = self.client.fetch(list(uids), FETCH_ITEMS)
        # A UID can vanish between SEARCH and FETCH (expunged meanwhile): skip it.
        return [_to_fetched(uid, response[uid]) for uid in uids if uid in response]

    def changed_flags(self, since_modseq: int) -> dict[int, tuple[str, ...]]:
        """Flags of the messages whose flags changed after `since_modseq` (CONDSTORE)."""
        with self._translated("UID SEARCH MODSEQ"):
            # imapclient's fetch keeps only the UIDs it was given, so search first.
            uids = self.client.search(["MODSEQ", str(since_modseq + 1)])
        return self.flags(uids)

    def flags(self, uids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """Flags of the given messages (for servers without CONDSTORE)."""
        if not uids:
            return {}
        with self._translated("UID FETCH FLAGS"):
            response = self.client.fetch(list(uids), [b"FLAGS"])
        return {uid: tuple(_text(f) for f in item.get(b"FLAGS", ())) for uid, item in response.items()}

    def _forget_announcements(self) -> None:
        # imaplib keeps every untagged "* N EXISTS" it reads; the SELECT's own is in the status.
        self.client._imap.untagged_responses.pop("EXISTS", None)

    def announced_new_mail(self) -> bool:
        """Whether the server announced a changed message count since the last SELECT.

        A server reports mail that arrives during our FETCHes as "* N EXISTS" in their
        responses; imaplib keeps it aside, and IDLE never repeats it. Asked after a sync,
        this says whether to sync again at once instead of idling.
        """
        return bool(self.client._imap.untagged_responses.pop("EXISTS", None))

    def supports_idle(self) -> bool:
        return b"IDLE" in self.capabilities()

    def idle_wait(self, timeout_s: float, stop: threading.Event) -> bool:
        """IDLE on the selected folder until it changes (True), `timeout_s` passes or `stop` is set."""
        if self.credentials_expire_at is not None:
            # Wake up in time to log in again with a fresh token before this one dies.
            timeout_s = min(timeout_s, max(0.0, (self._reauth_at - self._clock()).total_seconds()))
        deadline = time.monotonic() + timeout_s
        # Mail that came after the sync's last command: RFC 2177 does not make a server report
        # it when IDLE begins (Dovecot does, right behind "+ idling": see _read_with_idle),
        # so a NOOP asks first.
        if self.folder_changed():
            return True
        with self._translated("IDLE"):
            self.client.idle()
            try:
                if any(_is_change(response) for response in self._read_with_idle()):
                    return True
                while not stop.is_set() and time.monotonic() < deadline:
                    started = time.monotonic()
                    responses = self.client.idle_check(timeout=IDLE_TICK_S)
                    if any(_is_change(response) for response in responses):
                        return True
                    if not responses and time.monotonic() - started < IDLE_TICK_S / 2:
                        # Readable but nothing to read: the server closed the connection.
                        raise TransientError(f"IMAP server {self.endpoint.host} closed the connection during IDLE")
                return False
            finally:
                self.client.idle_done()

    def _read_with_idle(self) -> list[tuple]:
        """The responses that came in the same packet as IDLE's "+ idling".

        Dovecot looks at the mailbox as IDLE begins and sends what changed since the NOOP
        right behind the continuation; imaplib's buffered reader takes it off the socket
        with it, and idle_check, which polls the socket, would not see it until the next
        packet (a keepalive, more mail, the renewal): the bench lost a sample to that.
        """
        responses = []
        while self._unread_bytes():
            responses.append(_untagged(self.client._imap._get_line()))
        return responses

    def _unread_bytes(self) -> bool:
        """Whether imaplib (or TLS) holds bytes already received but not yet parsed, without waiting."""
        sock = self.client.socket()
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return bool(self.client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False  # nothing buffered, and the socket has nothing now either
        finally:
            sock.settimeout(timeout)

    def close(self) -> None:
        """Log out, or at least drop the socket."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (OSError, IMAPClientError, socket.timeout):
            try:
                client.shutdown()
            except OSError:
                pass

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn library and socket errors into TransientError at the adapter boundary."""
        try:
            yield
        except (OSError, IMAPClientError) as exc:
            raise TransientError(f"IMAP {what} on {self.endpoint.host} failed: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) < 300 else text[:300] + "…"


def plan_batches(uids: Sequence[int], sizes: dict[int, int], batch_size: int, batch_bytes: int) -> list[list[int]]:
    """UIDs in order, cut into batches of at most `batch_size` and about `batch_bytes` fetched."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for uid in uids:
        cost = min(sizes.get(uid, 0), HEADER_MAX_BYTES + BODY_PREFIX_BYTES) + 512  # what a FETCH returns of it
        if current and (len(current) >= batch_size or used + cost > batch_bytes):
            batches.append(current)
            current, used = [], 0
        current.append(uid)
        used += cost
    return [*batches, current] if current else batches


def _to_fetched(uid: int, item: dict) -> FetchedMessage:
    body = _section(item, b"BODY[TEXT]")
    header = _section(item, b"BODY[HEADER]")
    received = item.get(b"INTERNALDATE")
    return FetchedMessage(
        uid=uid,
        received_at=_as_utc(received),
        flags=tuple(_text(flag) for flag in item.get(b"FLAGS", ())),
        size=int(item.get(b"RFC822.SIZE", 0)),
        header=header,
        body_prefix=body,
        header_cut=len(header) >= HEADER_MAX_BYTES,
    )


def _section(item: dict, name: bytes) -> bytes:
    """A fetched section whatever the server calls it: "BODY[HEADER]" or "BODY[HEADER]<0>"."""
    value = next((value for key, value in item.items() if key.startswith(name)), b"")
    return value if isinstance(value, bytes) else b""


def _is_change(response: tuple) -> bool:
    """EXISTS (new mail), EXPUNGE or FETCH (flags) change the folder; "OK Still here" does not."""
    return len(response) >= 2 and response[1] in FOLDER_CHANGES


def _untagged(line: bytes) -> tuple:
    """An untagged response line ("* 2 EXISTS") parsed as idle_check parses it: (2, b"EXISTS")."""
    return tuple(parse_response([line.removeprefix(b"* ").rstrip(b"\r\n")]))


def _text(flag: bytes | str) -> str:
    return flag.decode("ascii", "replace") if isinstance(flag, bytes) else str(flag)


def _as_utc(value: datetime | None) -> datetime | None:
    # A naive value is local time (imapclient's normalised form): astimezone handles both.
    return value.astimezone(UTC) if value is not None else None
