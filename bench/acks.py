"""Scenario `acks`: 2,000 new customers, each acknowledged by one `mailwatch poll`.

mailwatch: fresh messages from distinct senders (every one ackable), `max_age` widened
so none is too old, the hourly cap raised above the count; timed from spawning `mailwatch
poll` until the SMTP sink holds all 2,000 acknowledgments. Floor: `bench.floors smtp` —
aiosmtplib sending 2,000 pre-rendered messages of the same size over one reused
connection to the same sink. Three rounds of both, the median round reported
(`harness.median_round`). Target: ≤ 3× the floor (issue 18).
"""

import statistics
from datetime import timedelta

from bench.corpus import CorpusSpec, now_utc
from bench.harness import Bench, ChildCpu, Stopwatch, finish, median_round, read_json_line, rounds, wait_until
from bench.report import Result, Target

NAME = "acks"
MESSAGES = 2_000
QUICK_MESSAGES = 300
TARGET = Target(3.0, on_ratio=True)  # issue 18
ARRIVAL_SPAN = timedelta(minutes=10)  # a burst of new customers in the last ten minutes
MAX_AGE = "1d"  # widened from 1 h so that no message of the burst counts as old
RUN_TIMEOUT_S = 300.0


def ack_spec(count: int) -> CorpusSpec:
    return CorpusSpec(count=count, seed=2, end=now_utc(), span=ARRIVAL_SPAN, distinct_senders=True, prefix="a")


def run_mailwatch(bench: Bench, user: str, count: int, name: str) -> tuple[float, float, list[int]]:
    """Seconds from spawning `mailwatch poll` until `count` acks reached the sink; its CPU seconds; ack sizes."""
    config = bench.write_config(name, user=user, database=bench.sqlite_url(name), ack=True, max_age=MAX_AGE,
                                max_per_hour=count * 2)
    before = len(bench.sink.received)
    watch = Stopwatch()
    with ChildCpu() as cpu, bench.mailwatch(f"{name}-poll", config, "poll") as process:
        arrived = wait_until(lambda: len(bench.sink.received) >= before + count or process.poll() is not None,
                             RUN_TIMEOUT_S)
        elapsed = watch.elapsed_s
        finish(process, RUN_TIMEOUT_S)
    received = bench.sink.received[before:]
    if not arrived or len(received) < count:
        raise RuntimeError(f"only {len(received)} of {count} acknowledgments reached the sink")
    return elapsed, cpu.seconds, [len(mail.content) for mail in received]


def run_floor(bench: Bench, count: int, size: int) -> tuple[float, float, dict]:
    """Seconds from spawning the SMTP floor until `count` messages reached the sink; its CPU seconds."""
    before = len(bench.sink.received)
    watch = Stopwatch()
    args = ("smtp", "--port", str(bench.sink.port), "--count", str(count), "--size", str(size))
    with ChildCpu() as cpu, bench.floor("acks-floor", *args) as process:
        wait_until(lambda: len(bench.sink.received) >= before + count or process.poll() is not None, RUN_TIMEOUT_S)
        elapsed = watch.elapsed_s
        figures = read_json_line(process, RUN_TIMEOUT_S)
        finish(process, RUN_TIMEOUT_S)
    if figures["sent"] != count:
        raise RuntimeError(f"the floor sent {figures['sent']} of {count}")
    return elapsed, cpu.seconds, figures


def run_pair(bench: Bench, user: str, count: int, number: int) -> tuple[float, float, float, float, dict]:
    """One round: mailwatch's seconds and CPU seconds, then the floor's, sending acks of the same size."""
    mailwatch_s, mailwatch_cpu_s, sizes = run_mailwatch(bench, user, count, f"acks-{number}")
    size = int(statistics.mean(sizes))
    floor_s, floor_cpu_s, figures = run_floor(bench, count, size)
    return mailwatch_s, mailwatch_cpu_s, floor_s, floor_cpu_s, {**figures, "ack_bytes_mean": size}


def run(bench: Bench) -> list[Result]:
    """Time the acknowledgments of a burst of new customers, and the bare SMTP floor."""
    count = QUICK_MESSAGES if bench.options.quick else MESSAGES
    user = bench.mailbox(f"acks{count}", ack_spec(count))
    pairs = [run_pair(bench, user, count, number) for number in range(rounds(bench.options))]
    mailwatch_s, mailwatch_cpu_s, floor_s, floor_cpu_s, figures = median_round(pairs, lambda pair: pair[0] / pair[2])
    details = {"acks": count, "rounds_s": [[round(pair[0], 2), round(pair[2], 2)] for pair in pairs],
               "ack_bytes_mean": figures["ack_bytes_mean"], "floor_send_only_s": round(figures["send_s"], 3),
               "load_s": bench.setup_s.get(f"load_{user}")}
    return [
        Result(NAME, f"{count:,} acks in sink (poll)", "s", mailwatch_s, floor_s, TARGET, details),
        Result(NAME, "acks per second", "/s", count / mailwatch_s, count / floor_s),
        Result(NAME, "CPU seconds (user+sys)", "s", mailwatch_cpu_s, floor_cpu_s),
    ]
