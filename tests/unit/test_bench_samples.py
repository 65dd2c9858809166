"""A benchmark sample comes from a customer the daemon has never acknowledged; a lost one is traced.

A sample's ack is what is timed; a customer who got an ack within per_sender_interval
rightly gets no second one, so a sample from one of the backlog's customers was lost
(bench isolation: 1 of 75 got no ack within 20 s, at the backlog's end, where its last
hour's mail is acknowledged).
"""

import json
from datetime import UTC, datetime

from bench import isolation
from bench.corpus import Generator
from bench.ingest import backlog_spec
from bench.latency import lost_sample_trace, sample_generator, sample_mail


def test_no_sample_customer_writes_in_the_shared_backlog():
    backlog = {mail.sender for mail in Generator(backlog_spec(isolation.QUICK_BACKLOG)).mails()}
    generator = sample_generator("iso")
    samples = {sample_mail(generator, number).sender for number in range(isolation.SAMPLES)}
    assert not backlog & samples


def test_every_sample_has_a_customer_of_its_own():
    generator = sample_generator("mbx")
    senders = [sample_mail(generator, number).sender for number in range(isolation.SAMPLES)]
    assert len(set(senders)) == len(senders)


def _event(at: str, event: str, **fields) -> str:
    return json.dumps({"timestamp": f"2026-12-03T08:06:{at}Z", "event": event, "level": "info", **fields})


def test_a_lost_sample_is_traced_through_the_daemons_log(tmp_path):
    # The report names the lost mail and says what mailwatch did with it and its ack, and
    # what the watchers did meanwhile; other mail and events outside the wait are left out.
    log = tmp_path / "isolation-run.log"
    log.write_text("\n".join([
        "not json: a traceback line",
        _event("40.000000", "folder_synced", mailbox="support"),  # before the window
        _event("49.588889", "folder_synced", mailbox="support", logged=1),
        _event("49.700000", "message_logged", mailbox="support", uid=3, message_id="<iso2@x>"),
        _event("49.700000", "ack_suppressed", outcome="sender-rate-limited", reason="acked 0s ago",
               message_id="<iso2@x>"),
        _event("49.710000", "ack_queued", message_id="<other@x>", ack_message_id="<ack-other@x>"),
        _event("49.720000", "mail_sent", message_id="<ack-other@x>"),
    ]) + "\n")
    appended = datetime(2026, 12, 3, 8, 6, 49, 600000, tzinfo=UTC)
    trace = lost_sample_trace(log, "<iso2@x>", appended, 20.0)
    assert trace["message_id"] == "<iso2@x>"
    assert [e["event"] for e in trace["daemon_log"]] == ["message_logged", "ack_suppressed"]
    assert trace["daemon_log"][1]["outcome"] == "sender-rate-limited"
    assert [e["timestamp"] for e in trace["watchers_meanwhile"]] == ["2026-12-03T08:06:49.588889Z"]


def test_a_lost_samples_ack_is_followed_to_the_sink(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("\n".join([
        _event("50.000000", "ack_queued", message_id="<s@x>", ack_message_id="<ack@x>"),
        _event("50.100000", "mail_sent", message_id="<ack@x>"),
    ]) + "\n")
    trace = lost_sample_trace(log, "<s@x>", datetime(2026, 12, 3, 8, 6, 49, tzinfo=UTC), 20.0)
    assert [e["event"] for e in trace["daemon_log"]] == ["ack_queued", "mail_sent"]
