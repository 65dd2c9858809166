"""Sets up logging: structlog events and stdlib records, rendered one way, with secrets redacted.

`configure_logging()` is called once at start-up (the CLI does it). Everything that
logs — mailwatch through structlog, alembic, apscheduler and imapclient through the
standard library — goes through the same processors to one stream: JSON lines for
journald and log shippers, or aligned console lines for people.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from mailwatch.config import MASK, Secret
from mailwatch.durations import format_duration

# Log levels by the names the [logging] section uses.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Output formats by the names the [logging] section uses.
FORMATS = ("json", "console")
# Keys whose values are always hidden, whatever they hold.
_SECRET_KEY = re.compile(r"password|passwd|secret|token|credential", re.IGNORECASE)
# imapclient logs every protocol line at DEBUG, the LOGIN command with the password
# included (its own redaction misses imaplib's timestamp prefix), so these loggers
# never go below INFO.
_PROTOCOL_LOGGERS = ("imapclient",)
# The lowest level a protocol logger may emit.
_PROTOCOL_FLOOR = logging.INFO
# Libraries that narrate routine work at INFO ("Context impl SQLiteImpl."): warnings only.
_CHATTY_LOGGERS = ("alembic", "aiosmtplib", "httpx")  # httpx: a line per token request
# apscheduler warns on every run skipped by max_instances=1, which is by design here.
_QUIET_LOGGERS = ("apscheduler",)
# How deep redaction looks into nested dicts and lists.
_REDACT_DEPTH = 4


def redact_secrets(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: mask values under secret-sounding keys and every Secret value."""
    return {key: _redacted(key, value, _REDACT_DEPTH) for key, value in event_dict.items()}


def _redacted(key: object, value: Any, depth: int) -> Any:
    if isinstance(key, str) and key != "event" and _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, Secret):
        return MASK
    if depth and isinstance(value, Mapping):
        return {k: _redacted(k, v, depth - 1) for k, v in value.items()}
    if depth and isinstance(value, list | tuple):
        # A plain list or tuple: subclasses such as namedtuples take other arguments.
        items = [_redacted(None, item, depth - 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


class _ProtocolFloor(logging.Filter):
    """Drops records below INFO from protocol loggers, whatever level they were set to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= _PROTOCOL_FLOOR:
            return True
        return not any(record.name == name or record.name.startswith(name + ".") for name in _PROTOCOL_LOGGERS)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our root handler; its class tells a second configure_logging() call what to replace."""


def durations_as_text(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: timedeltas read as the configuration writes them ('20h', '3d 31s')."""
    return {key: format_duration(value) if isinstance(value, timedelta) else value
            for key, value in event_dict.items()}


def _shared_processors() -> list[Processor]:
    # Run on structlog events and on stdlib records alike, before rendering.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        redact_secrets,
        durations_as_text,  # the console renderer would print repr(timedelta)
    ]


def _renderers(format: str, stream: TextIO) -> list[Processor]:
    if format == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=_json_default)]
    # ConsoleRenderer formats exceptions itself, prettier than format_exc_info.
    return [structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))]


def _json_default(value: Any) -> Any:
    # Times as ISO 8601 (received_at is logged a lot), durations as "20h", the rest as text.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _make_handler(format: str, stream: TextIO) -> logging.Handler:
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderers(format, stream),
            ],
        )
    )
    handler.addFilter(_ProtocolFloor())
    return handler


def _install_handler(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    # Replace only our own handler: pytest and embedding programs keep theirs.
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in _PROTOCOL_LOGGERS:
        logging.getLogger(name).setLevel(max(level, _PROTOCOL_FLOOR))
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.ERROR))


class _CurrentStderr:
    """Whatever sys.stderr is at the moment of writing (it may be replaced after setup)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(format: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to `stream` (default stderr) as JSON lines or console text."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}: use one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    _install_handler(_make_handler(format, stream or _CurrentStderr()), LEVELS[level])
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Caching would pin loggers to this configuration and defeat capture_logs() in tests.
        cache_logger_on_first_use=False,
    )
