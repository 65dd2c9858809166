"""Throwaway local servers for the demo, the tests and the benchmarks.

A real Dovecot, started unprivileged on free loopback ports with its own config and
maildirs in a temporary folder. Every login name is accepted with one password, so each
test can use a fresh, empty account. Never used by the service itself.
"""

import asyncio
import base64
import binascii
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

from imapclient import IMAPClient

DOVECOT_BINARY = "/usr/sbin/dovecot"
UNPRIVILEGED_USER = "nobody"  # when started as root, Dovecot runs as this user
STARTUP_TIMEOUT_S = 15.0
MULTIAPPEND_CHUNK = 500  # messages per MULTIAPPEND command

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = mailwatch-{port}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_location = maildir:{root}/mail/%u
# Throwaway mail: an fsync per APPEND made loading 1,000 test mails take 12 s.
mail_fsync = never
mail_uid = {user}
mail_gid = {group}
first_valid_uid = 0
{oauth2_passdb}passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
# A Sent folder (once created) carries the \\Sent special-use flag, as on real servers.
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
  }}
}}
"""
# Bearer tokens are checked by asking an introspection endpoint (RFC 7662) over POST.
OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""
OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""
SERVICES_AS_USER = ("anvil", "auth", "auth-worker", "config", "dict", "imap", "indexer-worker", "log", "stats")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def make_tls_files(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost; returns the CA file."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    quiet = {"check": True, "capture_output": True}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mailwatch test CA", "-keyout", ca_key, "-out", ca], **quiet)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", csr], **quiet)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", cert], **quiet)
    return ca


@dataclass
class Dovecot:
    """A running throwaway Dovecot; `append` puts mail in, `client` reads it back."""

    root: Path
    port: int
    tls_port: int
    ca_file: Path
    password: str = "secret"
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None
    oauth2_introspection_url: str | None = None  # also accept XOAUTH2 bearer tokens this endpoint knows

    @classmethod
    def create(cls, root: Path | None = None, oauth2_introspection_url: str | None = None) -> "Dovecot":
        root = Path(root or tempfile.mkdtemp(prefix="mailwatch-dovecot-"))
        server = cls(root=root, port=free_port(), tls_port=free_port(), ca_file=make_tls_files(root / "tls"),
                     oauth2_introspection_url=oauth2_introspection_url)
        server._write_config()
        return server

    def _write_config(self) -> None:
        user, group = self._run_as()
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        oauth2 = self.oauth2_introspection_url
        if oauth2:
            (self.root / "dovecot-oauth2.conf.ext").write_text(OAUTH2_CONF.format(url=oauth2))
        conf = DOVECOT_CONF.format(root=self.root, port=self.port, tls_port=self.tls_port,
                                   user=user, group=group, password=self.password,
                                   mechanisms="plain login xoauth2 oauthbearer" if oauth2 else "plain login",
                                   oauth2_passdb=OAUTH2_PASSDB.format(root=self.root) if oauth2 else "")
        conf += "".join(f"service {name} {{\n  user = {user}\n}}\n" for name in SERVICES_AS_USER)
        conf += "service anvil {\n  chroot =\n}\n"
        if oauth2:
            # Dovecot slows logins after failures from an address; a test's refused tokens would
            # then delay the next login past its short-lived token's life.
            conf += "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
        (self.root / "dovecot.conf").write_text(conf)
        if os.geteuid() == 0:
            self.root.chmod(0o755)
            entry = pwd.getpwnam(user)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    @staticmethod
    def _run_as() -> tuple[str, str]:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
        else:
            entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name

    def start(self) -> None:
        """Start Dovecot in the foreground of a child process and wait for its port."""
        command = [DOVECOT_BINARY, "-F", "-c", str(self.root / "dovecot.conf")]
        kwargs = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        # Its own process group, so that stop() also ends the per-connection imap processes.
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, **kwargs)
        if not wait_for_port(self.port, STARTUP_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"Dovecot did not start; see {self.root / 'dovecot.log'}")

    def stop(self) -> None:
        """Stop Dovecot and every connection it serves, as a crash or reboot would (mail stays)."""
        process, self.process = self.process, None
        if process is None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers: imap processes outlive the master

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def client(self, user: str) -> Iterator[IMAPClient]:
        """A logged-in plain IMAP client for `user`."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(user, self.password)
        try:
            yield client
        finally:
            client.logout()

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = (),
               msg_time: datetime | None = None) -> int:
        """APPEND one message (creating the folder if needed); returns its UID."""
        with self.client(user) as client:
            self._create(client, folder)
            return self._append(client, folder, raw, flags, msg_time)

    def append_many(self, user: str, raws: list[bytes], folder: str = "INBOX",
                    msg_time: datetime | None = None) -> list[int]:
        """APPEND several messages with MULTIAPPEND (one APPEND each took 8-12 ms; this, 1.5)."""
        uids: list[int] = []
        with self.client(user) as client:
            self._create(client, folder)
            for start in range(0, len(raws), MULTIAPPEND_CHUNK):
                dated = {"date": msg_time} if msg_time else {}
                chunk = [{"msg": raw, **dated} for raw in raws[start:start + MULTIAPPEND_CHUNK]]
                response = client.multiappend(folder, chunk)[1][-1]
                uids.extend(_uid_set(response.split(b"APPENDUID ")[1].split(b" ")[1].split(b"]")[0]))
        return uids

    @staticmethod
    def _create(client: IMAPClient, folder: str) -> None:
        if not client.folder_exists(folder):
            client.create_folder(folder)

    @staticmethod
    def _append(client: IMAPClient, folder: str, raw: bytes, flags, msg_time) -> int:
        response = client.append(folder, raw, flags=flags, msg_time=msg_time)
        return int(response.split(b"APPENDUID ")[1].split(b" ")[1].rstrip(b"]"))


def _uid_set(text: bytes) -> list[int]:
    """The UIDs of an IMAP uid-set such as `1:3,7`."""
    uids: list[int] = []
    for part in text.decode().split(","):
        first, _, last = part.partition(":")
        uids.extend(range(int(first), int(last or first) + 1))
    return uids


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP sink accepted it."""

    envelope_from: str
    recipients: tuple[str, ...]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=default).parsebytes(self.content)


class SinkHandler:
    """aiosmtpd handler: records mail; answers with scripted errors when told to."""

    def __init__(self, check_bearer: Callable[[str], str | None] | None = None) -> None:
        self.check_bearer = check_bearer  # token → whose it is (None: refused); None: no XOAUTH2
        self.logins: list[str] = []  # accounts that AUTH XOAUTH2 accepted, in order
        self.refused_logins = 0
        self.received: list[ReceivedMail] = []
        self.scripted: list[str] = []  # answers to the next DATA commands, e.g. "451 4.3.0 busy"
        self.rejected: set[str] = set()  # recipients answered with 550
        self.mail_delay_s = 0.0  # a slow server: MAIL FROM waits this long
        self.data_delay_s = 0.0  # the mail is kept, then its 250 answer waits this long
        self.connections = 0  # SMTP sessions greeted (a client says EHLO once per connection)
        self.open_sessions: list[asyncio.Transport] = []  # so that a test can drop them, as an idle timeout does
        self.lock = threading.Lock()

    async def auth_XOAUTH2(self, server, args):  # noqa: N802 - aiosmtpd's name for the mechanism
        """AUTH XOAUTH2: base64 of "user=…^Aauth=Bearer …^A^A", checked by asking `check_bearer`."""
        from aiosmtpd.smtp import AuthResult

        blob = args[1].encode() if len(args) > 1 else await server.challenge_auth("", encode_to_b64=False)
        user, token = _xoauth2_parts(blob)
        account = self.check_bearer(token) if self.check_bearer and token else None
        if account is not None and user is not None and account.lower() == user.lower():
            with self.lock:
                self.logins.append(user)
            return AuthResult(success=True, auth_data=user)
        with self.lock:
            self.refused_logins += 1
        # As Google does: an error challenge, the client's empty answer, then 535.
        await server.challenge_auth(base64.b64encode(b'{"status":"401","schemes":"bearer"}'), encode_to_b64=False)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and token not accepted")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 - aiosmtpd's name
        session.host_name = hostname  # with this hook in place, aiosmtpd leaves it to the handler
        with self.lock:
            self.connections += 1
            self.open_sessions.append(server.transport)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802 - aiosmtpd's name
        await asyncio.sleep(self.mail_delay_s)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address.lower() in self.rejected:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        with self.lock:
            if self.scripted:
                return self.scripted.pop(0)
            sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from  # "" is MAIL FROM:<>
            self.received.append(ReceivedMail(sender, tuple(envelope.rcpt_tos), envelope.content))
        await asyncio.sleep(self.data_delay_s)  # the sender's window: delivered, not yet told
        return "250 2.0.0 Message accepted"


def _xoauth2_parts(blob: bytes | object) -> tuple[str | None, str | None]:
    try:
        text = base64.b64decode(blob).decode() if isinstance(blob, (bytes, str)) else ""
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    auth = fields.get("auth", "")
    return fields.get("user"), auth[len("Bearer "):] if auth.startswith("Bearer ") else None


class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives.

    With `check_bearer`, it demands AUTH XOAUTH2 (on plain loopback) before accepting mail.
    """

    def __init__(self, port: int | None = None, check_bearer: Callable[[str], str | None] | None = None) -> None:
        self.handler = SinkHandler(check_bearer)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.controller = None

    def start(self) -> None:
        """Listen on the sink's port (again, after a stop: what it received is kept)."""
        from aiosmtpd.controller import Controller  # a test/demo dependency only

        oauth2 = self.handler.check_bearer is not None
        # AUTH without TLS is what the test wants on loopback; aiosmtpd warns about it at every start.
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
        self.controller = Controller(self.handler, hostname=self.host, port=self.port,
                                     auth_require_tls=not oauth2, auth_required=oauth2,
                                     auth_exclude_mechanism=["LOGIN", "PLAIN"] if oauth2 else None)
        self.controller.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until the next start."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def drop_connections(self) -> None:
        """Close every session from the server's side, as an idle timeout does; returns once closed."""
        with self.handler.lock:
            sessions, self.handler.open_sessions = self.handler.open_sessions, []

        async def close_all() -> None:
            for transport in sessions:
                transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.controller.loop).result(timeout=5)

    @property
    def received(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.received)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least `count` messages arrived; returns all received so far."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def to(self, address: str) -> list[ReceivedMail]:
        """Everything received for one recipient."""
        return [mail for mail in self.received if address.lower() in (r.lower() for r in mail.recipients)]


LOCAL_CONFIG = """\
[service]
name = "Acme Support"
phone = "+1 800 555 0100"
timezone = "Europe/Berlin"
database = "{database}"
staff = ["@acme.example"]
{service_lines}

[[mailbox]]
name = "support"
address = "support@acme.example"
folder = "{folder}"
{mailbox_lines}
  [mailbox.imap]
  host = "127.0.0.1"
  port = {imap_port}
  security = "none"
  username = "{imap_user}"
  password_file = "{password_file}"

[acknowledgment]
enabled = {ack}
{ack_lines}
"""
LOCAL_SMTP = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Acme Support <support@acme.example>"
retry_initial = "{retry_initial}"
retry_max = "{retry_max}"
"""


def local_config(
    *, database: str, imap_port: int, imap_user: str, password_file: Path, smtp_port: int | None = None,
    folder: str = "INBOX", ack: bool = False, mailbox_lines: str = "", ack_lines: str = "",
    retry: tuple[str, str] = ("0.2s", "1s"), extra: str = "", service_lines: str = "",
) -> str:
    """A mailwatch.toml for Acme's support mailbox on a local Dovecot and SMTP sink (tests, bench)."""
    body = LOCAL_CONFIG.format(database=database, folder=folder, mailbox_lines=mailbox_lines, imap_port=imap_port,
                               imap_user=imap_user, password_file=password_file, ack=str(ack).lower(),
                               ack_lines=ack_lines, service_lines=service_lines)
    if smtp_port is not None:
        body += LOCAL_SMTP.format(port=smtp_port, retry_initial=retry[0], retry_max=retry[1])
    return body + extra
