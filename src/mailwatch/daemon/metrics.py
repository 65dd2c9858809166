"""Prometheus metrics and /healthz on `metrics.listen`.

Counters are fed from the service's reports (the same facts its log events carry);
gauges about the queue and the threads are read from the database at scrape time.
The registry belongs to the daemon: nothing here is global.
"""

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from mailwatch.db.engine import Database
from mailwatch.db.models import Thread
from mailwatch.pipeline.outbox import DrainReport, outbox_depth
from mailwatch.pipeline.sync import FolderReport
from mailwatch.sla import ThreadStatus


class Metrics:
    """The daemon's metrics registry and the counters it updates."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry()
        labels = {"registry": self.registry}
        self.messages_logged = Counter("mailwatch_messages_logged", "Messages logged", ["mailbox", "category"], **labels)
        self.acks_suppressed = Counter("mailwatch_acks_suppressed", "Acknowledgments not sent, by reason", ["reason"], **labels)
        self.emails_sent = Counter("mailwatch_emails_sent", "Emails accepted by the SMTP server, by kind", ["kind"], **labels)
        self.emails_failed = Counter("mailwatch_emails_failed", "Emails given up on, by kind", ["kind"], **labels)
        self.escalations = Counter("mailwatch_escalations", "Escalation steps reached", ["step"], **labels)
        self.imap_errors = Counter("mailwatch_imap_errors", "IMAP failures", ["mailbox"], **labels)
        self.imap_reconnects = Counter("mailwatch_imap_reconnects", "IMAP reconnections after a failure", ["mailbox"], **labels)
        self.smtp_errors = Counter("mailwatch_smtp_errors", "Deferred or failed SMTP attempts", **labels)
        self.last_sync = Gauge("mailwatch_last_sync_timestamp_seconds", "Last successful sync", ["mailbox"], **labels)
        self.registry.register(DatabaseCollector(db, clock))

    def observe_folder(self, report: FolderReport, synced_at: datetime | None) -> None:
        for category, count in report.categories.items():
            self.messages_logged.labels(report.mailbox, category).inc(count)
        for outcome, count in report.ack_outcomes.items():
            if outcome != "send":
                self.acks_suppressed.labels(outcome).inc(count)
        if synced_at is not None:
            self.last_sync.labels(report.mailbox).set(synced_at.timestamp())

    def observe_drain(self, report: DrainReport) -> None:
        for kind, count in report.sent_by_kind.items():
            self.emails_sent.labels(kind).inc(count)
        for kind, count in report.failed_by_kind.items():
            self.emails_failed.labels(kind).inc(count)
        if report.deferred or report.failed:
            self.smtp_errors.inc(report.deferred + report.failed)

    def observe_escalations(self, steps: list[int]) -> None:
        for step in steps:
            self.escalations.labels(str(step)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector:
    """Gauges read at scrape time: outbox depth and age, open threads, oldest waiting customer."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        with self.db.session() as session:
            depth, oldest = outbox_depth(session, now)
            open_threads, first_waiting = session.execute(
                select(func.count(Thread.id), func.min(Thread.clock_started_at)).where(Thread.status == ThreadStatus.OPEN)
            ).one()
        yield GaugeMetricFamily("mailwatch_outbox_depth", "Emails waiting to be sent", value=depth)
        yield GaugeMetricFamily("mailwatch_outbox_oldest_age_seconds", "Age of the oldest email waiting",
                                value=oldest.total_seconds() if oldest else 0)
        yield GaugeMetricFamily("mailwatch_open_threads", "Threads waiting for a staff answer", value=open_threads)
        yield GaugeMetricFamily("mailwatch_oldest_unanswered_age_seconds", "Age of the oldest unanswered customer message",
                                value=(now - first_waiting).total_seconds() if first_waiting else 0)


CONNECTION_TIMEOUT_S = 5.0  # an idle or slow client is dropped; a scrape takes milliseconds
MAX_WORKERS = 8  # connections served at once; more are closed, so idle sockets cannot pin threads


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, but never more than MAX_WORKERS: the daemon's own jobs need threads too."""

    request_queue_size = 64  # a burst is accepted (and turned away if busy) instead of waiting in SYN retries

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_WORKERS)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: the client retries at its next scrape
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class MetricsServer:
    """A small HTTP server: /metrics for Prometheus, /healthz for load balancers and humans."""

    def __init__(self, host: str, port: int, metrics: Metrics, health_check: Callable[[], list[str]]) -> None:
        handler = _handler(metrics, health_check)
        self.server = BoundedHTTPServer((host, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: Metrics, health_check: Callable[[], list[str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = CONNECTION_TIMEOUT_S  # socketserver sets it on the connection

        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            if self.path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, metrics.render())
            elif self.path == "/healthz":
                problems = health_check()
                body = json.dumps({"ok": not problems, "problems": problems}).encode()
                self._reply(503 if problems else 200, "application/json", body)
            else:
                self._reply(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            return

    return Handler
