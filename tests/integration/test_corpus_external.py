"""890 real mails from public projects' test collections, through Dovecot, `poll` and SMTP.

`../shared/corpus-external` holds DSNs from ~70 MTAs, feedback-loop reports, vacation and
challenge-response replies and ordinary human mail, each byte for byte, with a manifest
saying whether a person wrote (one ack) or a machine (none). The replay follows its
README: INTERNALDATE about now, an address and staff domain no file uses, a short
per_sender_interval, and files that share a Message-ID or an ack recipient in separate
rounds (each round one APPEND batch and one poll, a second apart in INTERNALDATE).
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.db.models import Message
from mailwatch.testing.devservers import local_config
from mailwatch.mail.parse import parse_message, split_raw
from mailwatch.mail.rules import reply_address
from mailwatch.service import Service

EXTERNAL = Path(__file__).resolve().parents[3] / "shared" / "corpus-external"


@pytest.fixture(scope="module")
def external() -> tuple[Path, dict[str, dict]]:
    if not (EXTERNAL / "manifest.json").is_file():
        pytest.skip(f"the external corpus is not at {EXTERNAL}")
    return EXTERNAL / "mails", json.loads((EXTERNAL / "manifest.json").read_text())


def rounds(mails: Path, manifest: dict[str, dict]) -> list[list[str]]:
    """Files grouped so that no round holds two with one Message-ID or two acks to one address."""
    groups: list[tuple[list[str], set[str]]] = []
    for name in sorted(manifest):
        parsed = parse_message(*split_raw((mails / name).read_bytes()))
        keys = {f"id:{parsed.message_id}"}
        recipient = reply_address(parsed)
        if manifest[name]["expect"] == "ack" and recipient is not None:
            keys.add(f"to:{recipient.address.lower()}")
        group = next((g for g in groups if not g[1] & keys), None)
        if group is None:
            group = ([], set())
            groups.append(group)
        group[0].append(name)
        group[1].update(keys)
    return [names for names, _ in groups]


def replay_settings(dovecot, imap_user, tmp_path, smtp_sink):
    password_file = tmp_path / "imap-password"
    password_file.write_text(dovecot.password + "\n")
    body = local_config(
        database=f"sqlite:///{tmp_path / 'mailwatch.db'}", imap_port=dovecot.port, imap_user=imap_user,
        password_file=password_file, smtp_port=smtp_sink.port, ack=True,
        ack_lines='per_sender_interval = "0.001s"\nmax_per_hour = 100000\nmax_age = "1h"\n',
    )
    path = tmp_path / "mailwatch.toml"
    path.write_text(body)
    return load_settings(path)


def test_every_external_mail_is_logged_and_acked_only_if_a_person_wrote(external, dovecot, imap_user, tmp_path,
                                                                         smtp_sink):
    # A person gets exactly one ack, no machine gets any, and every file fetched is a row.
    mails, manifest = external
    settings = replay_settings(dovecot, imap_user, tmp_path, smtp_sink)
    db = Database(settings.service.database)
    db.ensure_schema()
    uid_of: dict[str, int] = {}
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        for number, names in enumerate(rounds(mails, manifest)):
            raws = [(mails / name).read_bytes() for name in names]
            uids = dovecot.append_many(imap_user, raws, msg_time=now - timedelta(seconds=number))
            uid_of.update(zip(names, uids))
            asyncio.run(Service(settings, db, system_clock).run_once())
        with db.session() as session:
            rows = {row.uid: row for row in session.scalars(select(Message))}
    finally:
        db.dispose()
    assert len(rows) == len(uid_of) == len(manifest), "every UID fetched must be a logged row"
    wrong = [
        f"{name}: expected {entry['expect']} ({entry['category']}), got {rows[uid_of[name]].ack_outcome} "
        f"as {rows[uid_of[name]].category}: {rows[uid_of[name]].category_reason or rows[uid_of[name]].ack_reason}"
        for name, entry in sorted(manifest.items())
        if (rows[uid_of[name]].ack_outcome == "send") != (entry["expect"] == "ack")
    ]
    assert not wrong, f"{len(wrong)} of {len(manifest)} judged wrongly:\n" + "\n".join(wrong)
    people = sum(1 for entry in manifest.values() if entry["expect"] == "ack")
    assert len(smtp_sink.wait_for(people)) == people
