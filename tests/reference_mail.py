"""The EmailMessage builder `build_email` replaced, and the corpus acks to compare it with.

Kept in tests only: the composed bytes must read back as this reference built them.
"""

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from pathlib import Path

import pytest

from mailwatch.config import load_settings
from mailwatch.db.models import Thread
from mailwatch.mail.parse import parse_message, split_raw
from mailwatch.mail.rules import reply_address
from mailwatch.pipeline.acks import Acknowledger
from mailwatch.pipeline.threads import ticket_pattern
from mailwatch.policies import build_policies
from mailwatch.templates import REFERENCES_KEPT, RenderedMail, Templates, build_email, header_address, one_line
from tests.unit.test_templates import CONFIG

SHARED = Path(__file__).resolve().parents[2] / "shared"
NOW = datetime(2026, 6, 9, 12, 2, tzinfo=UTC)
DATE = "Tue, 09 Jun 2026 12:02:00 +0000"
ACK_HEADERS = {"Auto-Submitted": "auto-replied", "Precedence": "bulk", "X-Auto-Response-Suppress": "All",
               "X-Mailwatch-Loop": "support@acme.example"}


def reference_email(
    rendered: RenderedMail, *, sender: str, to: str, message_id: str, date: str,
    in_reply_to: str | None = None, references: Sequence[str] = (),
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """The EmailMessage builder `build_email` replaced, kept here as the reference it must match."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = one_line(rendered.subject, limit=400)
    message["Date"] = date
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = " ".join([*references[-(REFERENCES_KEPT - 1):], in_reply_to])
    for key, value in (extra_headers or {}).items():
        message[key] = one_line(value)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message.as_bytes(policy=SMTP)


def corpus_files(external: bool) -> list[Path]:
    """The shared corpus's mails, and with `external` the 890 of corpus-external too."""
    files = sorted((SHARED / "corpus").glob("*.eml"))
    if external:
        files += sorted((SHARED / "corpus-external" / "mails").rglob("*.eml"))
    if not files:
        pytest.skip(f"the corpora are not under {SHARED}")
    return files


def acknowledger_in(folder: Path) -> Acknowledger:
    path = folder / "mailwatch.toml"
    path.write_text(CONFIG.format(templates=""))
    policies = build_policies(load_settings(path))
    return Acknowledger(policies.ack, policies.branding, Templates(None), ticket_pattern("#"))


def decoded(raw: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str | None, str]]]:
    """Headers as decoded text (boundary aside) and each part's type, charset and decoded text.

    Runs of whitespace count as one space: EmailMessage folds a long Message-ID onto its own
    line, which reads back with a leading space; the values are single-spaced lines anyway.
    """
    message = BytesParser(policy=default).parsebytes(raw)
    headers = [(name, " ".join(str(value).split())) for name, value in message.items() if name != "Content-Type"]
    headers.append(("Content-Type", message.get_content_type()))
    parts = [(part.get_content_type(), part.get_content_charset(), part.get_content().replace("\r\n", "\n"))
             for part in message.iter_parts()]
    return headers, parts


def ack_arguments(acknowledger: Acknowledger, raw: bytes, ticket: int) -> dict | None:
    """What `Acknowledger._queue` passes to build_email for this customer mail, None if no one to answer."""
    parsed = parse_message(*split_raw(raw))
    recipient = reply_address(parsed)
    if recipient is None:
        return None
    thread = Thread(id=ticket, mailbox="support", deadline_at=NOW)
    rendered = acknowledger.templates.render_mail("ack", acknowledger.context(thread, parsed, recipient, NOW))
    return dict(rendered=rendered, sender=acknowledger.branding.sender, to=header_address(recipient.name, recipient.address),
                message_id=f"<mailwatch.{ticket}.1781006520.0123456789ab@acme.example>", date=DATE,
                in_reply_to=None if parsed.message_id_synthesised else parsed.message_id,
                references=parsed.references, extra_headers=ACK_HEADERS)


def compare_corpus(acknowledger: Acknowledger, files: list[Path]) -> int:
    """Assert each file's ack (and unusual names' digest) composes to what the reference built; how many."""
    compared = 0
    for number, path in enumerate(files):
        arguments = ack_arguments(acknowledger, path.read_bytes(), number + 1)
        if arguments is None:
            continue
        for variant in (arguments, *digest_variant(arguments)):
            new = build_email(**variant).content
            assert decoded(new) == decoded(reference_email(**variant)), path.name
            assert new.isascii() and not re.search(rb"(?<!\r)\n|\r(?!\n)", new), path.name  # 7-bit, CRLF only
        compared += 1
    return compared


def digest_variant(ack: dict) -> list[dict]:
    """The same rendering as an escalation digest whose From is the customer's name, if that name is unusual.

    Only names beyond plain atoms, so the reference's slow header registry runs where it tells something.
    """
    if re.fullmatch(r"[\w .-]*<[^>]*>|[^<>]*", ack["to"], re.ASCII):
        return []
    return [{**ack, "sender": ack["to"], "to": "lead@acme.example", "in_reply_to": None,
             "extra_headers": {"Auto-Submitted": "auto-generated", "X-Priority": "1"}}]
