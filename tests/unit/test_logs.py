"""Tests for log setup (mailwatch.logs): JSON and console output, redaction, stdlib routing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from mailwatch.config import Secret
from mailwatch.logs import configure_logging, redact_secrets

# A password that must never reach the log stream.
PASSWORD = "hunter2-Sup3rSecret"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A log stream; logging and structlog are put back as they were afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("imapclient").level)
    yield io.StringIO()
    for handler in root.handlers[:]:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved[1])
    logging.getLogger("imapclient").setLevel(saved[2])
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, parsed as JSON."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_event_level_timestamp_and_keys(stream: io.StringIO) -> None:
    # One JSON object per line, with an ISO 8601 UTC timestamp.
    configure_logging("json", "info", stream)
    structlog.get_logger("mailwatch.test").info("ack_sent", thread_id=42, ticket="#1042")
    (line,) = lines(stream)
    assert line["event"] == "ack_sent" and line["level"] == "info"
    assert (line["thread_id"], line["ticket"], line["logger"]) == (42, "#1042", "mailwatch.test")
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timezone.utc.utcoffset(None)


def test_times_and_durations_are_readable_in_json(stream: io.StringIO) -> None:
    # Values JSON cannot hold are written as ISO 8601, durations as "20h", the rest as text.
    configure_logging("json", "info", stream)
    received = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    structlog.get_logger().info("stored", received_at=received, deadline_in=timedelta(hours=20), path=Path("/x"))
    (line,) = lines(stream)
    assert (line["received_at"], line["deadline_in"], line["path"]) == ("2024-05-01T12:30:00+00:00", "20h", "/x")


def test_level_filters_events(stream: io.StringIO) -> None:
    # Below the configured level nothing is written.
    configure_logging("json", "warning", stream)
    log = structlog.get_logger("mailwatch.test")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_secrets_bound_as_context_are_redacted_too(stream: io.StringIO) -> None:
    # Redaction runs after the bound context is merged: a bound password is masked like a passed one.
    configure_logging("json", "info", stream)
    with structlog.contextvars.bound_contextvars(mailbox="support", smtp_password=PASSWORD):
        structlog.get_logger().info("smtp_login")
    (line,) = lines(stream)
    assert PASSWORD not in stream.getvalue()
    assert (line["mailbox"], line["smtp_password"]) == ("support", "**********")


def test_library_records_carry_the_bound_message_context(stream: io.StringIO) -> None:
    # A library's warning while one message is handled names that message, secrets masked.
    configure_logging("json", "info", stream)
    with structlog.contextvars.bound_contextvars(message_id="<a@b.example>", imap_token=PASSWORD):
        logging.getLogger("aiosmtplib").warning("connection reset")
    (line,) = lines(stream)
    assert (line["event"], line["logger"], line["message_id"]) == ("connection reset", "aiosmtplib", "<a@b.example>")
    assert line["imap_token"] == "**********" and PASSWORD not in stream.getvalue()


def test_exceptions_are_formatted(stream: io.StringIO) -> None:
    # A logged exception carries its traceback as text.
    configure_logging("json", "info", stream)
    try:
        raise RuntimeError("imap went away")
    except RuntimeError:
        structlog.get_logger().exception("poll_failed")
    (line,) = lines(stream)
    assert "Traceback" in line["exception"] and "RuntimeError: imap went away" in line["exception"]


def test_secrets_are_redacted_in_the_stream(stream: io.StringIO) -> None:
    # Secret-sounding keys and Secret values never reach the output.
    configure_logging("json", "debug", stream)
    structlog.get_logger().info(
        "login", password=PASSWORD, api_token=PASSWORD, value=Secret(PASSWORD), nested={"smtp_secret": PASSWORD}
    )
    (line,) = lines(stream)
    assert PASSWORD not in stream.getvalue()
    assert line["password"] == line["api_token"] == line["value"] == "**********"
    assert line["nested"] == {"smtp_secret": "**********"}


def test_redact_processor_leaves_other_keys_alone() -> None:
    # Only secret keys and Secret values change, at any nesting depth up to a limit.
    event = {"event": "x", "user": "alice", "credential": "c", "items": [Secret("s"), 3], "deep": {"a": {"token": "t"}}}
    assert redact_secrets(None, "info", event) == {
        "event": "x", "user": "alice", "credential": "**********", "items": ["**********", 3],
        "deep": {"a": {"token": "**********"}},
    }


def test_stdlib_logging_goes_through_the_same_renderer(stream: io.StringIO) -> None:
    # alembic and apscheduler log through the standard library; they become JSON lines too.
    configure_logging("json", "info", stream)
    logging.getLogger("alembic.runtime").warning("Revision %r missing", "0009", extra={"job": "upgrade"})
    (line,) = lines(stream)
    assert (line["event"], line["level"], line["logger"], line["job"]) == (
        "Revision '0009' missing", "warning", "alembic.runtime", "upgrade",
    )
    assert "timestamp" in line


def test_chatty_libraries_are_kept_to_warnings(stream: io.StringIO) -> None:
    # Routine library narration ("Context impl SQLiteImpl.") stays out of the journal.
    configure_logging("json", "info", stream)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("apscheduler.executors.default").warning("Execution of job skipped: maximum number of running instances reached")
    assert lines(stream) == []


def test_imapclient_login_never_appears_even_at_debug(stream: io.StringIO) -> None:
    # imapclient logs protocol lines, LOGIN included, at DEBUG; those are dropped.
    configure_logging("json", "debug", stream)
    logging.getLogger("imapclient.imaplib").debug("  12:00.00 > b'A001 LOGIN support %s'", PASSWORD)
    logging.getLogger("imapclient.imapclient").debug("> b'A002 LOGIN support %s'", PASSWORD)
    logging.getLogger("imapclient.imapclient").info("Connection closed")
    assert PASSWORD not in stream.getvalue()
    assert [line["event"] for line in lines(stream)] == ["Connection closed"]


def test_imapclient_stays_capped_if_its_level_is_lowered(stream: io.StringIO) -> None:
    # The handler filter holds even if something sets imapclient's logger to DEBUG.
    configure_logging("json", "debug", stream)
    logging.getLogger("imapclient").setLevel(logging.DEBUG)
    logging.getLogger("imapclient.imaplib").debug("> b'A001 LOGIN support %s'", PASSWORD)
    assert stream.getvalue() == ""


def test_console_format_is_for_people(stream: io.StringIO) -> None:
    # One readable line with the event and its keys; no colours into a non-terminal.
    configure_logging("console", "info", stream)
    structlog.get_logger().info("ack_sent", thread_id=42, password=PASSWORD)
    output = stream.getvalue()
    assert "ack_sent" in output and "thread_id=42" in output and "\x1b[" not in output
    assert PASSWORD not in output and not output.startswith("{")


def test_console_durations_read_as_the_config_writes_them(stream: io.StringIO) -> None:
    # People reading the console see "20h", not "datetime.timedelta(seconds=72000)".
    configure_logging("console", "info", stream)
    structlog.get_logger().info("stored", deadline_in=timedelta(hours=20), since=timedelta(days=3, seconds=31))
    output = stream.getvalue()
    assert "deadline_in=20h" in output and "since='3d 31s'" in output
    assert "timedelta" not in output


def test_configuring_twice_keeps_one_handler(stream: io.StringIO) -> None:
    # The CLI may reconfigure after reading the config; lines must not double.
    configure_logging("json", "info", io.StringIO())
    configure_logging("json", "info", stream)
    structlog.get_logger().info("once")
    assert len(lines(stream)) == 1


def test_unknown_format_or_level_is_refused(stream: io.StringIO) -> None:
    # Settings validate these already; direct callers get a clear error.
    with pytest.raises(ValueError, match="format"):
        configure_logging("xml", "info", stream)
    with pytest.raises(ValueError, match="level"):
        configure_logging("json", "loud", stream)


def test_capture_logs_still_works_after_configuring(stream: io.StringIO) -> None:
    # Tests elsewhere assert on events with capture_logs().
    configure_logging("json", "info", stream)
    with capture_logs() as captured:
        structlog.get_logger().info("ack_suppressed", reason="auto_submitted")
    assert captured == [{"event": "ack_suppressed", "reason": "auto_submitted", "log_level": "info"}]
