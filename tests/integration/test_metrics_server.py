"""The metrics/healthz server on a real socket: idle clients cannot exhaust the daemon's threads."""

import json
import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime

from mailwatch.daemon import metrics
from mailwatch.daemon.metrics import MAX_WORKERS, Metrics, MetricsServer
from mailwatch.db.engine import Database


def test_idle_connections_cannot_pin_threads_and_are_dropped(tmp_path, monkeypatch):
    # 50 idle connections get at most MAX_WORKERS threads, each dropped after the timeout; scrapes then work.
    monkeypatch.setattr(metrics, "CONNECTION_TIMEOUT_S", 1.5)
    db = Database(f"sqlite:///{tmp_path}/metrics.db")
    db.ensure_schema()
    server = MetricsServer("127.0.0.1", 0, Metrics(db, lambda: datetime.now(UTC)), lambda: [])
    server.start()
    try:
        before = threading.active_count()
        started = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=1) for _ in range(50)]
        time.sleep(0.2)
        assert time.monotonic() - started < 1.0  # still inside the timeout: what is pinned now stays pinned
        assert threading.active_count() - before == MAX_WORKERS
        time.sleep(1.8)  # past the timeout: the pinned handlers gave up
        assert threading.active_count() - before <= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert json.loads(response.read()) == {"ok": True, "problems": []}
        for sock in idle:
            sock.close()
    finally:
        server.stop()
        db.dispose()
