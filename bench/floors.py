"""The bare protocol floors: the least any program could do for each scenario's work.

Run as `python -m bench.floors NAME …` in a subprocess of its own, so a floor pays
the same interpreter start as `mailwatch` and never shares a GIL with the SMTP sink.
Each prints one JSON line when done (`idle`, which runs until SIGTERM, prints one
when it is ready to answer).

- `ingest`: imapclient UID FETCH of mailwatch's own FETCH_ITEMS in mailwatch's batch
  size, and one executemany INSERT per batch into SQLite (WAL) with the same keys.
- `smtp`: aiosmtplib sends pre-rendered acknowledgment-sized mail over one connection.
- `idle`: IMAP IDLE on INBOX; each new message is fetched and answered over one
  persistent SMTP connection (the lowest possible APPEND-to-ack latency).
"""

import argparse
import asyncio
import json
import re
import signal
import smtplib
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

import aiosmtplib
from imapclient import IMAPClient

from mailwatch.imap import FETCH_BATCH_SIZE, FETCH_ITEMS

HOST = "127.0.0.1"
IDLE_CHECK_S = 1.0  # how long one idle_check waits before looking at the stop flag
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
FLOOR_SCHEMA = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, mailbox TEXT, folder TEXT, uidvalidity INTEGER,"
    " uid INTEGER, message_id TEXT, received_at TEXT, first_seen_at TEXT, size INTEGER, flags TEXT,"
    " header TEXT, snippet TEXT, UNIQUE (mailbox, folder, uidvalidity, uid),"
    " UNIQUE (mailbox, folder, message_id, received_at))",
    "CREATE INDEX IF NOT EXISTS ix_messages_message_id ON messages (message_id)",
    "CREATE INDEX IF NOT EXISTS ix_messages_received_at ON messages (received_at)",
)
INSERT = "INSERT INTO messages VALUES (NULL, 'support', 'INBOX', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SNIPPET_CHARS = 500  # what a row keeps of the body, as mailwatch keeps a snippet


def peak_rss_kb() -> int:
    """This process's VmHWM (peak resident set) in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def report(**figures: object) -> None:
    print(json.dumps(figures), flush=True)


# -- ingest -------------------------------------------------------------------------


def batches(uids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(uids), size):
        yield list(uids[start : start + size])


def floor_row(uidvalidity: int, uid: int, item: dict, now: str) -> tuple:
    """What the floor stores of one fetched message: ids, times, size, flags, header, snippet."""
    header = next((value for key, value in item.items() if key.startswith(b"BODY[HEADER]")), b"") or b""
    body = next((value for key, value in item.items() if key.startswith(b"BODY[TEXT]")), b"") or b""
    found = MESSAGE_ID.search(header)
    received = item[b"INTERNALDATE"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    flags = " ".join(flag.decode() for flag in item.get(b"FLAGS", ()))
    return (uidvalidity, uid, (found[1] if found else b"").decode(errors="replace"), received, now,
            item.get(b"RFC822.SIZE", 0), flags, header.decode("latin-1"),
            body[:SNIPPET_CHARS].decode(errors="replace"))


def ingest(args: argparse.Namespace) -> None:
    """Fetch every message of the folder in batches, insert each batch in one transaction."""
    started = time.perf_counter()
    database = sqlite3.connect(args.db)
    for statement in FLOOR_SCHEMA:
        database.execute(statement)
    client = IMAPClient(HOST, port=args.port, ssl=False)
    client.login(args.user, args.password)
    uidvalidity = client.select_folder(args.folder, readonly=True)[b"UIDVALIDITY"]
    uids = sorted(client.search(["UID", "1:*"]))
    stored = 0
    for batch in batches(uids, FETCH_BATCH_SIZE):
        response = client.fetch(batch, FETCH_ITEMS)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with database:
            database.executemany(INSERT, [floor_row(uidvalidity, uid, response[uid], now) for uid in batch])
        stored += len(batch)
    client.logout()
    database.close()
    report(stored=stored, work_s=time.perf_counter() - started, peak_rss_kb=peak_rss_kb())


# -- smtp ---------------------------------------------------------------------------


def rendered_ack(n: int, size: int) -> bytes:
    """An acknowledgment-shaped message (multipart/alternative) of about `size` bytes."""
    head = (
        f"From: Acme Support <support@acme.example>\r\nTo: Customer {n} <customer{n}@example.com>\r\n"
        f"Subject: [Acme Support] We received your message [#{1000 + n}]\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: {make_msgid(domain='acme.example')}\r\n"
        f"In-Reply-To: <q{n}@example.com>\r\nReferences: <q{n}@example.com>\r\n"
        "Auto-Submitted: auto-replied\r\nPrecedence: bulk\r\nX-Auto-Response-Suppress: All\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
    )
    filler = max(size - len(head) - 200, 100) // 2
    sentence = "Thank you for writing to Acme Support. "
    line = (sentence * 2)[:76]
    text = "\r\n".join([line] * (filler // 78 + 1))
    return (head + f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            f"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>{text}</p>\r\n--b--\r\n").encode()


async def send_all(port: int, messages: list[bytes]) -> None:
    async with aiosmtplib.SMTP(hostname=HOST, port=port, use_tls=False, start_tls=False) as smtp:
        for n, content in enumerate(messages):
            await smtp.sendmail("", [f"customer{n}@example.com"], content)


def smtp(args: argparse.Namespace) -> None:
    """Send `count` pre-rendered messages over one reused connection."""
    messages = [rendered_ack(n, args.size) for n in range(args.count)]
    started = time.perf_counter()
    asyncio.run(send_all(args.port, messages))
    report(sent=len(messages), send_s=time.perf_counter() - started)


# -- idle ---------------------------------------------------------------------------


class Responder:
    """Answers each new message of an IDLEd folder at once, over one SMTP connection."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.imap = IMAPClient(HOST, port=args.imap_port, ssl=False)
        self.imap.login(args.user, args.password)
        self.imap.select_folder("INBOX", readonly=True)
        self.last_uid = max(self.imap.search(["ALL"]) or [0])
        self.smtp = smtplib.SMTP(HOST, args.smtp_port)
        self.stopping = False

    def run(self) -> None:
        """IDLE until SIGTERM; answer what arrives."""
        report(ready=True)
        while not self.stopping:
            self.imap.idle()
            responses = self.imap.idle_check(timeout=IDLE_CHECK_S)
            responses += self.imap.idle_done()[1]  # an EXISTS can come with the DONE: it was lost
            if any(len(response) > 1 and response[1] == b"EXISTS" for response in responses):
                self.answer_new()
        self.smtp.quit()
        self.imap.logout()

    def answer_new(self) -> None:
        uids = [uid for uid in self.imap.search(["UID", f"{self.last_uid + 1}:*"]) if uid > self.last_uid]
        if not uids:
            return
        for item in self.imap.fetch(uids, FETCH_ITEMS).values():
            header = next((value for key, value in item.items() if key.startswith(b"BODY[HEADER]")), b"") or b""
            found = MESSAGE_ID.search(header)
            parent = found[1].decode() if found else "<unknown@invalid>"
            reply = (f"From: support@acme.example\r\nTo: customer@example.com\r\nSubject: ack\r\n"
                     f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n\r\nThanks.\r\n")
            self.smtp.sendmail("", ["customer@example.com"], reply.encode())
        self.last_uid = max(uids)


def idle(args: argparse.Namespace) -> None:
    responder = Responder(args)

    def stop(*_: object) -> None:
        responder.stopping = True

    signal.signal(signal.SIGTERM, stop)
    responder.run()


# -- command line -------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.floors", description=__doc__.split("\n")[0])
    floors = parser.add_subparsers(dest="floor", required=True)
    ingest_cmd = floors.add_parser("ingest")
    ingest_cmd.add_argument("--port", type=int, required=True)
    ingest_cmd.add_argument("--user", required=True)
    ingest_cmd.add_argument("--password", default="secret")
    ingest_cmd.add_argument("--folder", default="INBOX")
    ingest_cmd.add_argument("--db", required=True)
    smtp_cmd = floors.add_parser("smtp")
    smtp_cmd.add_argument("--port", type=int, required=True)
    smtp_cmd.add_argument("--count", type=int, required=True)
    smtp_cmd.add_argument("--size", type=int, default=4000)
    idle_cmd = floors.add_parser("idle")
    idle_cmd.add_argument("--imap-port", type=int, required=True)
    idle_cmd.add_argument("--smtp-port", type=int, required=True)
    idle_cmd.add_argument("--user", required=True)
    idle_cmd.add_argument("--password", default="secret")
    return parser


FLOORS = {"ingest": ingest, "smtp": smtp, "idle": idle}

if __name__ == "__main__":
    arguments = parser().parse_args()
    FLOORS[arguments.floor](arguments)
    sys.exit(0)
