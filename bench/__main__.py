"""`python -m bench`: run the scenarios, print the table, write the JSON report."""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import (acks, ingest, isolation, latency, mailboxes, memory, newcomer, outbox_isolation, recovery, reporting,
                   sweep)
from bench.harness import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_POSTGRES_URL,
    POLL_INTERVAL_ENV,
    POSTGRES_URL_ENV,
    REPO_ROOT,
    Bench,
    Options,
    Stopwatch,
)
from bench.report import Result, table

SCENARIOS = {  # in the order they run
    "ingest": ingest.run,
    "acks": acks.run,
    "latency": latency.run,
    "recovery": recovery.run,
    "isolation": isolation.run,
    "outbox-isolation": outbox_isolation.run,
    "newcomer": newcomer.run,
    "mailboxes": mailboxes.run,
    "sweep": sweep.run,
    "memory": memory.run,
    "report": reporting.run,
}
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="mailwatch benchmarks against bare protocol floors")
    parser.add_argument("--only", type=_names, default=list(SCENARIOS), metavar="NAME[,NAME]",
                        help=f"run only these scenarios ({', '.join(SCENARIOS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or two")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help=f"default: {DEFAULT_JSON}")
    parser.add_argument("--poll-interval", default=os.environ.get(POLL_INTERVAL_ENV, DEFAULT_POLL_INTERVAL),
                        help=f"the daemon's poll_interval in `latency` (env {POLL_INTERVAL_ENV}; "
                             f"default {DEFAULT_POLL_INTERVAL})")
    parser.add_argument("--no-memory-large", dest="memory_large", action="store_false",
                        help="skip `memory` on a 50,000-message backlog (about 2 minutes; never run with --quick)")
    parser.add_argument("--postgres-url", default=os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL),
                        help=f"admin URL for scratch databases; '' skips PostgreSQL (env {POSTGRES_URL_ENV})")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write py-spy profiles of the mailwatch processes to DIR (needs py-spy installed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    return names


def run_scenarios(bench: Bench, names: list[str]) -> tuple[list[Result], dict[str, dict]]:
    """Each scenario in turn; a failing one is reported and the rest still run."""
    results: list[Result] = []
    runs: dict[str, dict] = {}
    for name in names:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        watch = Stopwatch()
        try:
            results.extend(SCENARIOS[name](bench))
            runs[name] = {"ok": True, "seconds": round(watch.elapsed_s, 1)}
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
            traceback.print_exc()
            runs[name] = {"ok": False, "seconds": round(watch.elapsed_s, 1), "error": f"{type(exc).__name__}: {exc}"}
            results.append(Result(name, f"FAILED: {type(exc).__name__}", "", None))
        print(f"bench: {name} done in {watch.elapsed_s:.1f} s", file=sys.stderr, flush=True)
    return results, runs


def machine() -> dict:
    """What the figures were measured on."""
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    return {
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(total_kb / 1024 / 1024, 1), "python": platform.python_version(),
        "platform": platform.platform(), "mailwatch_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(quick=args.quick, poll_interval=args.poll_interval, memory_large=args.memory_large,
                      postgres_url=args.postgres_url or None, profile_dir=args.profile)
    watch = Stopwatch()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="mailwatch-bench-"))
    bench = Bench(root, options)
    try:
        results, runs = run_scenarios(bench, args.only)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(), "total_s": round(watch.elapsed_s, 1),
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "options": {**vars(args), "json": str(args.json)}, "setup_s": bench.setup_s,
        "scenarios": runs, "results": [result.as_json() for result in results],
    }
    write_json(args.json, report)
    print(table(results))
    print(f"\n{os.cpu_count()} cores; total {watch.elapsed_s:.0f} s; JSON in {args.json}"
          + (f"; files kept in {root}" if args.keep else ""))
    return exit_code(results, runs)


def exit_code(results: list[Result], runs: dict[str, dict]) -> int:
    """1 if a scenario broke or any side of any row timed out: a timeout is a failure, not a figure."""
    return 0 if all(run["ok"] for run in runs.values()) and not any(result.failed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
