"""Property: any mail, however mutated, goes parse → classify → ingest without raising, logged, in bounded time.

The long run is `python -m bench.fuzz` (100,000 mails); this is its bounded sibling in
the suite, with hypothesis choosing the seed mail, the mutations and raw noise, and
shrinking whatever it finds to a small reproducible mail.
"""

import itertools
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from structlog.testing import capture_logs

from bench.fuzz import fetched_from, fuzz_database, mutate, seeds
from mailwatch.db.models import Message
from mailwatch.mail.parse import parse_message
from mailwatch.mail.rules import Identity, classify
from mailwatch.pipeline.sync import FolderSync

INLINE_SEEDS = [  # used when the shared corpora are absent
    b"From: Ann <ann@example.org>\r\nSubject: hi\r\nMessage-ID: <a@example.org>\r\n\r\nHello\r\n",
    b"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; report-type=delivery-status;"
    b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n',
]
try:
    POOL = seeds()
except SystemExit:
    POOL = INLINE_SEEDS
BOUND_S = 1.0  # per mail, in the suite on a shared machine; bench.fuzz holds the 50 ms target
IDENTITY = Identity(own_addresses=frozenset({"support@acme.example"}), staff=("@acme.example",))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    db, service = fuzz_database(tmp_path_factory.mktemp("fuzz"))
    ctx = replace(service.folder_context(service.settings.mailboxes[0], "INBOX"), uidvalidity=1)
    yield db, FolderSync(db, lambda: datetime.now(UTC)), ctx, itertools.count(1)
    db.dispose()


def rows(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Message))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.sampled_from(POOL), rnd=st.randoms(use_true_random=False), noise=st.binary(max_size=400),
       where=st.floats(0, 1))
def test_any_mutated_mail_is_logged_once_without_raising(pipeline, seed, rnd, noise, where):
    # parse and classify never raise; ingest records exactly one row, not quarantined, in bounded time.
    db, sync, ctx, uids = pipeline
    raw = mutate(rnd, seed, POOL)
    cut = int(len(raw) * where)
    raw = raw[:cut] + noise + raw[cut:]
    uid, before = next(uids), rows(db)
    fetched = fetched_from(raw, uid, datetime.now(UTC) - timedelta(minutes=5) + timedelta(milliseconds=uid))
    classify(parse_message(fetched.header, fetched.body_prefix), IDENTITY)
    started = time.perf_counter()
    with capture_logs() as logs:
        sync.store_batch(ctx, [fetched])
    elapsed_s = time.perf_counter() - started
    assert rows(db) == before + 1
    assert not [e for e in logs if e["event"] in ("message_quarantined", "message_record_failed")]
    assert elapsed_s < BOUND_S, f"{elapsed_s:.3f} s for a mail of {len(raw)} bytes"
