"""A benchmark side that timed out is reported as TIMEOUT and fails the run, never as a figure."""

from bench.__main__ import exit_code
from bench.latency import Samples, measure
from bench.report import TIMEOUT, Result, Target, table

TIMEOUT_S = 20.0  # what a lost latency sample used to be printed as


def timed_out_row(**sides: bool) -> Result:
    return Result("latency", "APPEND→ack median", "s", TIMEOUT_S, 0.6, Target(0.5), **sides)


def test_a_timed_out_floor_prints_timeout_and_no_ratio():
    row = timed_out_row(floor_timed_out=True)
    line = table([row]).splitlines()[-1]
    assert TIMEOUT in line
    assert "×" not in line  # no ratio against a figure that was never measured
    assert row.ratio is None and row.met is False
    assert row.as_json()["floor"] is None


def test_a_timed_out_mailwatch_side_prints_timeout_not_its_timeout():
    row = timed_out_row(timed_out=True)
    line = table([row]).splitlines()[-1]
    assert TIMEOUT in line
    assert "20 s" not in line and "20.0" not in line
    assert row.as_json()["mailwatch"] is None and row.met is False


def test_a_timeout_fails_the_run_even_when_every_scenario_returned():
    runs = {"latency": {"ok": True}}
    assert exit_code([timed_out_row(floor_timed_out=True)], runs) == 1
    assert exit_code([timed_out_row()], runs) == 0


class _Appender:
    def append(self) -> str:
        return "<never-answered@example>"


class _Sink:
    received: list = []


def test_a_lost_latency_sample_is_not_counted_as_a_measurement():
    samples = measure(_Appender(), _Sink(), count=3, budget_s=5.0, timeout_s=0.0)
    assert samples.lost
    assert samples.seconds == []
    assert Samples().figures() == (None, None)


def test_a_lost_sample_names_its_message_id():
    samples = measure(_Appender(), _Sink(), count=2, budget_s=5.0, timeout_s=0.0)
    assert samples.lost_message_id == "<never-answered@example>"
    assert samples.lost_appended_at is not None
