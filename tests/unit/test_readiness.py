"""READY waits for every mailbox's first sync, and for a mailbox that is down only so long."""

from mailwatch.daemon.readiness import Readiness


def test_ready_only_once_every_mailbox_has_synced():
    # One synced mailbox is not enough while another is still on its first sync.
    readiness = Readiness({"support": 30.0, "sales": 30.0}, started_s=100.0)
    readiness.synced("support")
    assert not readiness.is_ready(200.0, failing=[])  # "sales" is slow, not down: wait for it
    readiness.synced("sales")
    assert readiness.is_ready(100.5, failing=[])


def test_a_mailbox_that_is_down_holds_ready_back_for_its_timeout_only():
    # A failing mailbox is waited for until its imap.timeout has passed since start, then left out.
    readiness = Readiness({"support": 30.0, "sales": 5.0}, started_s=100.0)
    readiness.synced("support")
    assert not readiness.is_ready(104.9, failing=["sales"])
    assert readiness.is_ready(105.0, failing=["sales"])
    assert readiness.waiting_for() == ["sales"]


def test_a_mailbox_that_recovers_within_the_wait_makes_ready_complete():
    # Down at first, synced a moment later: READY comes with nothing left out.
    readiness = Readiness({"support": 10.0}, started_s=0.0)
    assert not readiness.is_ready(2.0, failing=["support"])
    readiness.synced("support")
    assert readiness.is_ready(2.5, failing=[]) and readiness.waiting_for() == []
