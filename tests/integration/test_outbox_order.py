"""Which mail a round takes: oldest first, but a customer who writes now never waits behind a backlog.

Real parts: an aiosmtpd sink on loopback and SQLite or PostgreSQL.
"""

import asyncio

import pytest

from mailwatch.pipeline.outbox import CLAIM_BATCH, NEWEST_SHARE, Outbox
from tests.integration.test_outbox_connections import now, outbox_db, queue, sender_for  # noqa: F401 - a fixture

BACKLOG = 2 * CLAIM_BATCH


def claimed_numbers(outbox: Outbox, limit: int) -> list[int]:
    return [int(item.recipient[1:].split("@")[0]) for item in outbox.claim(limit)]


def test_a_round_that_holds_everything_due_takes_it_oldest_first(outbox_db, smtp_sink):
    queue(outbox_db, *range(10))
    assert claimed_numbers(Outbox(outbox_db, sender_for(smtp_sink), now), 10) == list(range(10))


def test_behind_a_backlog_the_newest_mail_starts_the_round_and_the_oldest_fill_it(outbox_db, smtp_sink):
    queue(outbox_db, *range(BACKLOG))
    numbers = claimed_numbers(Outbox(outbox_db, sender_for(smtp_sink), now), CLAIM_BATCH)
    newest = int(CLAIM_BATCH * NEWEST_SHARE)
    assert numbers[:newest] == list(range(BACKLOG - 1, BACKLOG - 1 - newest, -1))
    assert numbers[newest:] == list(range(CLAIM_BATCH - newest))


@pytest.mark.parametrize("backlog", [CLAIM_BATCH // 3, BACKLOG])
def test_mail_queued_during_a_drain_ends_the_round_and_goes_out_next(outbox_db, smtp_sink, backlog):
    # A drain of a backlog shorter than a round, or two rounds long; a customer's ack queued a few
    # mails in (the daemon sets `queued` after every commit that queues mail) goes out within a few
    # mails, not at the end of the round.
    queue(outbox_db, *range(backlog))
    smtp_sink.handler.data_delay_s = 0.005  # enough for the round to be in progress when it comes

    async def drain_and_write_meanwhile() -> None:
        queued = asyncio.Event()
        outbox = Outbox(outbox_db, sender_for(smtp_sink), now, connections=3)
        drain = asyncio.create_task(outbox.drain(queued=queued))
        while len(smtp_sink.received) < 10:
            await asyncio.sleep(0.005)
        await asyncio.to_thread(queue, outbox_db, backlog)
        queued.set()
        await drain

    asyncio.run(drain_and_write_meanwhile())
    recipients = [mail.recipients[0] for mail in smtp_sink.received]
    assert len(recipients) == backlog + 1
    assert recipients.index(f"c{backlog}@example.com") < 10 + 3 * 3  # the mails in flight, then it
