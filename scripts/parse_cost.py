"""CPU cost per mail of `parse_message` and `classify`, on the mail `mailwatch poll` really sees.

Builds the ingest bench's backlog in-process (bench.corpus, seed 6, as bench/ingest.py) and
reads both shared corpora, cuts every mail as the IMAP fetch does (header up to
HEADER_MAX_BYTES, the first BODY_PREFIX_BYTES of the body), and prints one JSON line:
CPU µs per mail (time.process_time, best of --repeat) for each step, per mail set. Usage:

    .venv/bin/python scripts/parse_cost.py [--backlog 3000] [--repeat 3] [--profile parse|classify]
    .venv/bin/python scripts/parse_cost.py --fingerprint /tmp/before.jsonl   # every outcome, one line a mail
    valgrind --tool=callgrind .venv/bin/python scripts/parse_cost.py --backlog 500 --once parse   # minus --once none

`--fingerprint` writes each mail's whole ParsedMessage and the rule outcomes (classify,
author_authentication, reply_address, staff_answer under two identities) instead of timing;
two such files from before and after a change must be equal. `--once STEP` runs one step
once over the backlog and prints nothing, for an instruction count that a busy machine
cannot blur (run it with `none` too and subtract: that is the cost of building the mail).
"""

import argparse
import cProfile
import dataclasses
import json
import pstats
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is no installed package
from bench.corpus import CorpusSpec, generate  # noqa: E402
from mailwatch.imap import BODY_PREFIX_BYTES, HEADER_MAX_BYTES  # noqa: E402
from mailwatch.mail.parse import ParsedMessage, parse_message, split_raw  # noqa: E402
from mailwatch.mail.rules import Identity, author_authentication, classify, reply_address, staff_answer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH_END = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # fixed, so every run builds the same backlog
# The bench's mailbox and staff; TRUSTING also reads Authentication-Results (the corpus's own MX).
IDENTITY = Identity(own_addresses=frozenset({"support@acme.example"}), staff=("@acme.example",),
                    own_message_id_domains=frozenset({"acme.example"}))
TRUSTING = Identity(own_addresses=frozenset({"support@acme.example"}), staff=("@acme.example",),
                    own_message_id_domains=frozenset({"acme.example"}), authserv_ids=("mx.acme.example",))

Fetched = tuple[bytes, bytes, str, bool]  # header, body prefix, origin, header_cut


def fetched(raw: bytes, origin: str) -> Fetched:
    """What BODY.PEEK[HEADER]<0.N> and BODY.PEEK[TEXT]<0.M> hand to parse_message."""
    header, body = split_raw(raw)
    header = header[:HEADER_MAX_BYTES]
    return header, body[:BODY_PREFIX_BYTES], origin, len(header) >= HEADER_MAX_BYTES


def backlog(count: int) -> list[Fetched]:
    spec = CorpusSpec(count=count, seed=6, end=BENCH_END, span=timedelta(days=3))
    return [fetched(mail.raw, f"1.{n + 1}") for n, mail in enumerate(generate(spec))]


def corpus(folder: Path) -> list[Fetched]:
    files = sorted(path for path in folder.rglob("*.eml") if path.is_file())
    return [fetched(path.read_bytes(), f"2.{n + 1}") for n, path in enumerate(files)]


def mail_sets(count: int) -> dict[str, list[Fetched]]:
    return {"backlog": backlog(count), "corpus": corpus(SHARED / "corpus"),
            "external": corpus(SHARED / "corpus-external" / "mails")}


def parse_all(mails: list[Fetched]) -> list[ParsedMessage]:
    return [parse_message(header, body, origin=origin, header_cut=cut) for header, body, origin, cut in mails]


def classify_all(parsed: list[ParsedMessage]) -> None:
    for msg in parsed:
        classify(msg, IDENTITY)


def best_us(step: Callable[[], object], per: int, repeat: int) -> float:
    """The fastest of `repeat` runs, in CPU µs per mail."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        step()
        best = min(best, time.process_time() - start)
    return round(best / max(per, 1) * 1e6, 1)


def costs(sets: dict[str, list[Fetched]], repeat: int) -> dict[str, dict[str, float]]:
    figures = {}
    for name, mails in sets.items():
        parsed = parse_all(mails)
        parse_us = best_us(lambda mails=mails: parse_all(mails), len(mails), repeat)
        classify_us = best_us(lambda parsed=parsed: classify_all(parsed), len(mails), repeat)
        figures[name] = {"mails": len(mails), "parse_us": parse_us, "classify_us": classify_us,
                         "total_us": round(parse_us + classify_us, 1)}
    return figures


def plain(value: object) -> object:
    """A result as JSON-able data: dataclasses by field, mappings by item, datetimes as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return [[key, plain(item)] for key, item in value.items()]
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def outcomes(msg: ParsedMessage) -> dict[str, object]:
    found: dict[str, object] = {"parsed": plain(msg)}
    for label, identity in (("bench", IDENTITY), ("trusting", TRUSTING)):
        verdict = classify(msg, identity)
        authentication = author_authentication(msg, identity)
        found[label] = [plain(verdict), plain(authentication),
                        plain(reply_address(msg, from_authenticated=authentication.passed)),
                        plain(reply_address(msg, from_authenticated=True)),
                        staff_answer(msg, verdict, identity)]
    return found


def fingerprint(sets: dict[str, list[Fetched]], path: Path) -> None:
    with path.open("w") as out:
        for name, mails in sets.items():
            for mail, msg in zip(mails, parse_all(mails), strict=True):
                out.write(json.dumps({"set": name, "origin": mail[2], **outcomes(msg)}, ensure_ascii=False) + "\n")


def profile(sets: dict[str, list[Fetched]], step: str) -> None:
    mails = sets["backlog"]
    parsed = parse_all(mails)
    profiler = cProfile.Profile()
    profiler.runcall(parse_all if step == "parse" else classify_all, mails if step == "parse" else parsed)
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=3000, help="backlog mails generated (bench seed 6)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest counts")
    parser.add_argument("--fingerprint", type=Path, help="write every outcome to this file instead of timing")
    parser.add_argument("--profile", choices=("parse", "classify"), help="cProfile one step over the backlog")
    parser.add_argument("--once", choices=("none", "parse", "classify"), help="run one step once, print nothing")
    args = parser.parse_args()
    if args.once:
        mails = backlog(args.backlog)
        parsed = parse_all(mails) if args.once != "none" else []
        if args.once == "classify":
            classify_all(parsed)
        return
    sets = mail_sets(args.backlog)
    if args.fingerprint:
        fingerprint(sets, args.fingerprint)
    elif args.profile:
        profile(sets, args.profile)
    else:
        print(json.dumps(costs(sets, args.repeat)))


if __name__ == "__main__":
    main()
