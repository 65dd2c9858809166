"""Sampling profiles of the mailwatch subprocesses, and a summary to read them by.

With `python -m bench --profile DIR`, py-spy (installed by hand: `pip install py-spy`;
it is no dependency of mailwatch) attaches to each mailwatch process and writes
DIR/NAME.speedscope (open it at speedscope.app). Attaching samples the running process
from outside, so the figures of a profiled run are a little slower than usual.
`python -m bench.profiles FILE…` prints the functions with the largest shares of the
samples: inclusive (the function and what it calls) and self (its own code).
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

SAMPLE_RATE_HZ = 200
STOP_TIMEOUT_S = 30.0  # py-spy writes its file after the target exits
TOP = 30
# Leaf frames of a thread that waits rather than works: an event loop with nothing to do, an
# idle worker of asyncio.to_thread's pool (blocked in its queue's C get, so `_worker` is the leaf).
WAITING = re.compile(r"^(EpollSelector\.select|select|poll|Event\.wait|Condition\.wait|sleep) \("
                     r"|^_worker \(concurrent/futures/thread\.py:")
STDLIB = re.compile(r".*/lib/python3\.\d+/")


def attach(pid: int, output: Path) -> subprocess.Popen | None:
    """Start py-spy on a running process; None when py-spy is not installed."""
    binary = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if binary is None:
        print("bench: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [binary, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ), "--format", "speedscope",
               "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def detach(spy: subprocess.Popen | None) -> None:
    """Wait for py-spy to write its file (its target has exited)."""
    if spy is None:
        return
    try:
        spy.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        spy.terminate()
        spy.wait()


def _frame_name(frame: dict) -> str:
    path = STDLIB.sub("", frame.get("file", ""))
    for marker in ("site-packages/", "src/"):
        path = path.split(marker, 1)[-1]
    return f"{frame['name']} ({path}:{frame.get('line', '')})"


def shares(path: Path) -> tuple[Counter[str], Counter[str], float, float]:
    """Inclusive and self seconds per function over all threads; the working and the waiting total."""
    data = json.loads(path.read_text())
    names = [_frame_name(frame) for frame in data["shared"]["frames"]]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    working = waiting = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            if WAITING.match(names[stack[-1]]):
                waiting += weight
                continue
            working += weight
            for name in {names[index] for index in stack}:
                inclusive[name] += weight
            own[names[stack[-1]]] += weight
    return inclusive, own, working, waiting


def summary(path: Path, top: int = TOP) -> str:
    """The top functions of one profile by inclusive and by self share of the working samples."""
    inclusive, own, total, waiting = shares(path)
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total:.1f} s of samples in working threads ({waiting:.1f} s idle waits left out)",
             "inclusive:"]
    lines += [f"  {100 * weight / total:5.1f}%  {name}" for name, weight in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * weight / total:5.1f}%  {name}" for name, weight in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description="summarise py-spy speedscope files")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=TOP)
    args = parser.parse_args(argv)
    for path in args.files:
        print(summary(path, args.top), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
