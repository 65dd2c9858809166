"""Realistic support mail, generated deterministically and loaded into Dovecot in bulk.

Messages are built as raw bytes (the `email` package is far too slow for 300 MB of
mail): a few Received lines and a DKIM signature as real mail has, text bodies of
2–20 KB (log-uniform, so most are small), one in ten with a 200 KB base64 PDF, some
non-ASCII, some replies into earlier threads, and a sprinkling of machine mail
(newsletters, out-of-office notices, bounces) that must never be acknowledged.
Loading uses MULTIAPPEND with each message's INTERNALDATE, far faster than APPEND.
"""

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from mailwatch.testing.devservers import Dovecot

ATTACHMENT_BYTES = 200 * 1024  # the PDF a customer attaches; base64 makes it ~270 KB on the wire
ATTACHMENT_EVERY = 10  # one message in ten carries an attachment
REPLY_EVERY = 6  # one in six answers an earlier message of the same customer
MACHINE_EVERY = 20  # one in twenty is a newsletter, an out-of-office or a bounce
NON_ASCII_EVERY = 7  # one in seven has a UTF-8 body and an encoded subject
BODY_MIN_BYTES = 2 * 1024
BODY_SPREAD = 10  # bodies are BODY_MIN_BYTES × 10^U(0,1): 2–20 KB, median ~6.5 KB
APPEND_CHUNK = 50  # messages per MULTIAPPEND command
TEXT_POOL_WORDS = 40_000  # random text that bodies are cut from
CUSTOMER_POOL = 3_000  # distinct customers in a shared corpus; some write more than once

WORDS = (
    "order refund invoice delivery parcel account password login payment card charge "
    "subscription cancel upgrade broken damaged missing wrong size colour replacement "
    "warranty tracking number address shipping weeks days yesterday today please help "
    "thank you hello regards kind question problem issue still waiting answer support "
    "the a and of to in for on with it is was not but we you they this that have has "
    "can could would should will when where why how what which customer service team "
    "received sent email phone call again already twice three times since last month"
).split()
UTF8_LINES = (
    "Bonjour, ma commande est arrivée cassée, pouvez-vous m'aider ?",
    "Guten Tag, die Lieferung ist beschädigt und ich möchte eine Erstattung.",
    "Hola, todavía no he recibido el reembolso de mi pedido.",
    "Здравствуйте, заказ до сих пор не доставлен.",
)
ENCODED_SUBJECTS = (
    "=?utf-8?q?R=C3=A9clamation_commande?=",
    "=?utf-8?b?QmVzY2jDpGRpZ3RlIExpZWZlcnVuZw==?=",
    "=?utf-8?q?Reembolso_pendiente?=",
)
FIRST_NAMES = ("Zoë", "Anna", "Ben", "Chloé", "David", "Emil", "Fatima", "Greta", "Hugo", "Ines", "Jonas", "Kai")
DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "post.example")
MACHINE_KINDS = ("newsletter", "out-of-office", "bounce")


@dataclass(frozen=True)
class Mail:
    """One generated message and the INTERNALDATE it gets in Dovecot."""

    raw: bytes
    message_id: str
    sender: str
    received_at: datetime


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate: how many, from whom, arriving over which span."""

    count: int
    seed: int
    end: datetime  # the newest message's INTERNALDATE
    span: timedelta  # messages are spread evenly over (end - span, end]
    distinct_senders: bool = False  # every message from a new customer, no replies or machines
    prefix: str = "m"  # keeps Message-IDs of different corpora apart


class Generator:
    """Builds the messages of one corpus; deterministic for a given spec."""

    def __init__(self, spec: CorpusSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.text = " ".join(self.rng.choices(WORDS, k=TEXT_POOL_WORDS))
        self.attachment = _base64_lines(self.rng.randbytes(ATTACHMENT_BYTES))
        self.earlier: dict[str, tuple[str, str]] = {}  # sender -> (message id, subject) of their last mail

    def mails(self) -> Iterator[Mail]:
        """Every message of the corpus, oldest first."""
        step = self.spec.span / max(self.spec.count, 1)
        start = self.spec.end - step * (self.spec.count - 1)
        for n in range(self.spec.count):
            yield self.mail(n, (start + step * n).replace(microsecond=0))

    def mail(self, n: int, received_at: datetime) -> Mail:
        """Message number `n`, of the kind its number and the random stream pick."""
        message_id = f"<{self.spec.prefix}{n}.{self.rng.getrandbits(40):x}@{self.rng.choice(DOMAINS)}>"
        if not self.spec.distinct_senders and n % MACHINE_EVERY == MACHINE_EVERY - 1:
            kind = MACHINE_KINDS[(n // MACHINE_EVERY) % len(MACHINE_KINDS)]
            sender, headers, body = self._machine(kind, n)
        else:
            sender, headers, body = self._customer(n, message_id)
        raw = self._envelope(message_id, received_at, headers, sender) + body
        return Mail(raw, message_id, sender, received_at)

    def _customer(self, n: int, message_id: str) -> tuple[str, list[str], bytes]:
        sender, name = self._sender(n)
        earlier = self.earlier.get(sender)
        if earlier and n % REPLY_EVERY == 0:
            parent_id, subject = earlier
            threading = [f"Subject: Re: {subject}", f"In-Reply-To: {parent_id}", f"References: {parent_id}"]
        else:
            subject = self._subject(n)
            threading = [f"Subject: {subject}"]
        self.earlier[sender] = (message_id, subject)
        mime, body = self._body(n)
        return sender, [f"From: {name} <{sender}>", *threading, *mime], body

    def _sender(self, n: int) -> tuple[str, str]:
        number = n if self.spec.distinct_senders else self.rng.randrange(CUSTOMER_POOL)
        first = FIRST_NAMES[number % len(FIRST_NAMES)]
        return f"customer{number}@{DOMAINS[number % len(DOMAINS)]}", f"{first} Customer{number}"

    def _subject(self, n: int) -> str:
        if n % NON_ASCII_EVERY == 3:
            return f"{self.rng.choice(ENCODED_SUBJECTS)} {n}"
        return f"{' '.join(self.rng.choices(WORDS, k=self.rng.randint(3, 8))).capitalize()} (order {58000 + n})"

    def _body(self, n: int) -> tuple[list[str], bytes]:
        """The MIME headers and the body: text of 2–20 KB, now and then with an attachment."""
        size = int(BODY_MIN_BYTES * BODY_SPREAD ** self.rng.random())
        start = self.rng.randrange(len(self.text) - size)
        text = _wrap(self.text[start : start + size])
        if n % NON_ASCII_EVERY == 3:
            text = self.rng.choice(UTF8_LINES) + "\r\n\r\n" + text
        if n % ATTACHMENT_EVERY == 5:
            return self._with_attachment(n, text)
        return ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit"], text.encode()

    def _with_attachment(self, n: int, text: str) -> tuple[list[str], bytes]:
        boundary = f"=_bench_{n}_{self.rng.getrandbits(32):x}"
        mime = ["MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{boundary}"']
        return mime, (
            f"This is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            f"{text}\r\n--{boundary}\r\nContent-Type: application/pdf; name=\"invoice-{n}.pdf\"\r\n"
            f"Content-Disposition: attachment; filename=\"invoice-{n}.pdf\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{self.attachment}\r\n--{boundary}--\r\n"
        ).encode()

    def _machine(self, kind: str, n: int) -> tuple[str, list[str], bytes]:
        body = _wrap(self.text[: BODY_MIN_BYTES * 2]).encode()
        plain = ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
        if kind == "newsletter":
            sender = "news@shop.example"
            return sender, [f"From: Shop News <{sender}>", f"Subject: Our offers, week {n}",
                            "List-Id: <offers.shop.example>", "List-Unsubscribe: <mailto:leave@shop.example>",
                            "Precedence: bulk", *plain], body
        if kind == "out-of-office":
            sender, _name = self._sender(n)
            return sender, [f"From: <{sender}>", "Subject: Out of office", "Auto-Submitted: auto-replied", *plain], body
        sender = "MAILER-DAEMON@mx.example"
        return sender, [f"From: Mail Delivery System <{sender}>", "Subject: Undelivered Mail Returned to Sender",
                        "Return-Path: <>", 'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
                        "MIME-Version: 1.0"], b"--b\r\nContent-Type: text/plain\r\n\r\n" + body + b"\r\n--b--\r\n"

    def _envelope(self, message_id: str, received_at: datetime, headers: list[str], sender: str) -> bytes:
        stamp = format_datetime(received_at)
        # A person's envelope sender is their own address (a `bounce-…@` one marks bulk mail since issue 11).
        own_return_path = any(line.startswith("Return-Path:") for line in headers)
        self.rng.getrandbits(32)  # what the old bounce-address tag drew: the seeded corpus stays the same otherwise
        relay = f"10.{self.rng.randrange(256)}.{self.rng.randrange(256)}.{self.rng.randrange(256)}"
        signature = base64.b64encode(self.rng.randbytes(192)).decode()
        lines = [
            *([] if own_return_path else [f"Return-Path: <{sender}>"]),
            f"Received: from mx.acme.example (mx.acme.example [{relay}])\r\n\tby imap.acme.example with LMTP; {stamp}",
            f"Received: from out.example.com (out.example.com [{relay}])\r\n\tby mx.acme.example with ESMTPS; {stamp}",
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=mail;\r\n"
            f"\th=from:to:subject:date:message-id; bh={signature[:44]};\r\n\tb={signature}",
            "To: Acme Support <support@acme.example>",
            f"Date: {stamp}",
            f"Message-ID: {message_id}",
            *headers,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _wrap(text: str, width: int = 76) -> str:
    return "\r\n".join(text[i : i + width] for i in range(0, len(text), width))


def _base64_lines(data: bytes) -> str:
    return _wrap(base64.b64encode(data).decode())


def generate(spec: CorpusSpec) -> Iterator[Mail]:
    """The corpus a spec describes, oldest first."""
    return Generator(spec).mails()


def load(dovecot: Dovecot, user: str, mails: Iterator[Mail], folder: str = "INBOX") -> int:
    """MULTIAPPEND `mails` into `user`'s folder, keeping each INTERNALDATE; returns how many."""
    count = 0
    with dovecot.client(user) as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for chunk in _chunks(mails, APPEND_CHUNK):
            client.multiappend(folder, [{"msg": mail.raw, "date": mail.received_at} for mail in chunk])
            count += len(chunk)
    return count


def _chunks(mails: Iterator[Mail], size: int) -> Iterator[list[Mail]]:
    chunk: list[Mail] = []
    for mail in mails:
        chunk.append(mail)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
