"""Value types and validators of the configuration: durations, addresses, hosts, names.

Each validator raises `problem(reason)`, which `load` turns into `file: key: reason`.
"""

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictInt,
    StrictStr,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from mailwatch.durations import format_duration, parse_duration

# Error type of the problems raised by our own validators (see problem).
PROBLEM_TYPE = "mailwatch"

# The shape of one mail address: local@domain, no spaces, brackets or commas.
ADDRESS = re.compile(r'[^\s@<>()\[\],;:"]+@[^\s@<>()\[\],;:".]+(?:\.[^\s@<>()\[\],;:".]+)*')
# A host name or IP literal: no spaces and no URL parts.
_HOST = re.compile(r"[^\s/@]+")
# Mailbox names appear in the database and in logs.
_MAILBOX_NAME = re.compile(r"[a-z0-9_-]+")
# POSIX shell variable names, which is what password_env must name.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Host names that always mean this machine.
_LOOPBACK_NAMES = frozenset({"localhost"})
# TOML's names for the Python types tomllib returns; bool before int, as bool is an int.
TOML_TYPES = {
    bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table",
}


def problem(reason: str, *loc: str | int) -> PydanticCustomError:
    """An error reading `reason`; `loc` names the key below the validator's own, if any."""
    return PydanticCustomError(PROBLEM_TYPE, "{reason}", {"reason": reason, "loc": loc})


def toml_type(value: object) -> str:
    # Only the type, never the value: the value may be a password.
    return next((name for kind, name in TOML_TYPES.items() if isinstance(value, kind)), "a date or time")


def context_of(info: ValidationInfo) -> tuple[Mapping[str, str], Path]:
    context = info.context or {}
    return context.get("environ", os.environ), context.get("base_dir", Path.cwd())


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    # Relative paths mean "next to the config file", not "wherever systemd started us".
    return value if value.is_absolute() else context_of(info)[1] / value


def is_loopback(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False



def _to_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        duration = value
    else:
        try:
            duration = _signed_duration(value)
        except ValueError as exc:
            raise problem(str(exc)) from None
    if duration <= timedelta(0):
        written = repr(value) if isinstance(value, str) else format_duration(duration)  # as the user wrote it
        raise problem(f"must be positive, got {written}")
    return duration


def _signed_duration(value: object) -> timedelta:
    # Durations are never written with a sign, but "-24h" is a duration with the wrong
    # sign, not "not a duration": read it so the message can say what is wrong.
    if isinstance(value, str) and value.strip().startswith("-"):
        return -parse_duration(value.strip()[1:])
    return parse_duration(value)  # type: ignore[arg-type]


def _check_address(value: str) -> str:
    if not ADDRESS.fullmatch(value):
        raise problem(f"not an email address: {value!r}")
    return value


def _check_staff(value: str) -> str:
    # "@domain" means everyone there; matching is case-insensitive, so store lowercase.
    domain_only = value.startswith("@") and ADDRESS.fullmatch("x" + value)
    if not domain_only and not ADDRESS.fullmatch(value):
        raise problem(f"not an address or @domain: {value!r}")
    return value.lower()


def _check_host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise problem(f"not a host name: {value!r} (give the name only, e.g. imap.example.com)")
    return value


def _check_url(value: str) -> str:
    if not re.fullmatch(r"https?://\S+", value):
        raise problem(f"not an http(s) URL: {value!r}")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise problem(f"unknown time zone: {value!r} (use an IANA name, e.g. Europe/Berlin or UTC)") from None
    return value


def _not_empty(value: str) -> str:
    if not value.strip():
        raise problem("must not be empty")
    return value


# A time span: "90s", "15m", "20h", "2d", "1h30m", or seconds; always > 0.
Duration = Annotated[
    timedelta,
    PlainValidator(_to_duration),
    PlainSerializer(format_duration, when_used="json"),
]
# A bare mail address, local@domain.
EmailAddress = Annotated[StrictStr, AfterValidator(_check_address)]
# A non-empty string.
Text = Annotated[StrictStr, AfterValidator(_not_empty)]
Host = Annotated[StrictStr, AfterValidator(_check_host)]
Url = Annotated[StrictStr, AfterValidator(_check_url)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Security = Literal["tls", "starttls", "none"]
# An IANA time zone name such as "Europe/Berlin".
TimeZoneName = Annotated[StrictStr, AfterValidator(_check_timezone)]
# A staff address, or "@domain" for everyone there; stored lowercase.
StaffEntry = Annotated[StrictStr, AfterValidator(_check_staff)]

def _check_credential_name(value: str) -> str:
    if "/" in value or value in {"", ".", ".."}:
        raise problem(f"not a credential name: {value!r}")
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise problem(f"not an environment variable name: {value!r}")
    return value


def _check_mailbox_name(value: str) -> str:
    if not _MAILBOX_NAME.fullmatch(value):
        raise problem(f"use only a-z, 0-9, _ and -: {value!r}")
    return value


# Names that password_env and password_credential may hold.
EnvName = Annotated[StrictStr, AfterValidator(_check_env_name)]
CredentialName = Annotated[StrictStr, AfterValidator(_check_credential_name)]
# A mailbox name, unique among mailboxes; it keys database rows and log lines.
MailboxName = Annotated[StrictStr, AfterValidator(_check_mailbox_name)]


class Model(BaseModel):
    # Python names work when building settings in code; load_settings accepts only TOML names.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )

