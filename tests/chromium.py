"""Real headless Chromium for page tests: a screenshot, the rendered DOM, and the requests the page made."""

import json
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

# Isolated, quiet and offline: nothing the browser itself wants may reach the network either.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND")
PHONE = "412,2600"  # a phone's CSS width, tall enough for the whole page


@dataclass
class Rendered:
    """What Chromium made of a page."""

    dom: str
    screenshot: Path
    page_requests: list[str]  # URLs the page itself asked for (not Chromium's own services)


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return binary


def _run(page: Path, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                              capture_output=True, text=True, timeout=90, check=True)
    return done.stdout


def render(page: Path, out: Path) -> Rendered:
    """Load the page twice, once for its DOM and once for a phone-sized screenshot with a network log."""
    dom = _run(page, "--dump-dom")
    screenshot, netlog = out / "page.png", out / "netlog.json"
    _run(page, f"--window-size={PHONE}", f"--screenshot={screenshot}", f"--log-net-log={netlog}")
    return Rendered(dom, screenshot, page_requests(netlog))


def page_requests(netlog: Path) -> list[str]:
    """URLs requested on behalf of a file:// page: its network isolation key names the file origin."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [event["params"]["url"] for event in log["events"]
            if event["type"] == start and "file://" in event.get("params", {}).get("network_isolation_key", "")]


def png_pixels(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    chunks, offset = {}, 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunks.setdefault(kind, []).append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    channels = 3 if colour == 2 else 4
    rows = _unfilter(zlib.decompress(b"".join(chunks[b"IDAT"])), width * channels, height, channels)
    pixels = [tuple(row[x:x + 3]) for row in rows for x in range(0, len(row), channels)]
    return width, height, pixels


def _unfilter(raw: bytes, stride: int, height: int, bpp: int) -> list[bytearray]:
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up, corner = previous[x], previous[x - bpp] if x >= bpp else 0
            line[x] = (line[x] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(line)
        previous = line
    return rows


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner  # Paeth
    near = min((abs(estimate - left), 0, left), (abs(estimate - up), 1, up), (abs(estimate - corner), 2, corner))
    return near[2]
