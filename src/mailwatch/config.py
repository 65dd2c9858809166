"""Turns the TOML configuration file into validated, typed, frozen settings.

`load_settings()` is the only way in: it reads the file, resolves every password
from its source (file, environment, systemd credential), checks everything, and
either returns a `Settings` or raises one `ConfigError` that lists every problem as
`file: dotted.key: reason`. Nothing here connects to a server.

Durations (`"90s"`, `"15m"`, `"1h30m"`, `"2d"`, or plain seconds) become
`datetime.timedelta`; passwords become `Secret`, which never prints itself.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from email.utils import getaddresses
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from mailwatch.errors import ConfigError

# Used when neither --config nor $MAILWATCH_CONFIG names a file.
DEFAULT_CONFIG_PATH = Path("/etc/mailwatch/mailwatch.toml")
# The environment variable that overrides DEFAULT_CONFIG_PATH.
CONFIG_PATH_ENV = "MAILWATCH_CONFIG"
# Set by systemd for units with LoadCredential=; password_credential looks here.
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
# What a Secret, and every redacted log value, prints instead of itself.
MASK = "**********"
# The keys that can supply a password, in the order their errors are reported.
PASSWORD_KEYS = ("password", "password_file", "password_env", "password_credential")
# Error type of the problems raised by our own validators (see _problem).
_PROBLEM_TYPE = "mailwatch"
# Settings fields that are filled in by load_settings, never by the file.
_NOT_FROM_FILE = ("source", "warnings")

# Seconds per duration unit, largest first: a duration lists its parts in this order.
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# One part of a duration string: a number and its unit, e.g. "1.5h".
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", re.IGNORECASE)
# A duration string that is a bare number of seconds, e.g. "90" or "0.5".
_DURATION_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")
# Appended to every duration error, so the fix is in the message.
_DURATION_HINT = "(use e.g. 90s, 15m, 20h, 2d)"

# The shape of one mail address: local@domain, no spaces, brackets or commas.
_ADDRESS = re.compile(r'[^\s@<>()\[\],;:"]+@[^\s@<>()\[\],;:".]+(?:\.[^\s@<>()\[\],;:".]+)*')
# A host name or IP literal: no spaces and no URL parts.
_HOST = re.compile(r"[^\s/@]+")
# Mailbox names appear in the database and in logs.
_MAILBOX_NAME = re.compile(r"[a-z0-9_-]+")
# POSIX shell variable names, which is what password_env must name.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters that would break the "[#1042]" ticket tag in subjects.
_TICKET_PREFIX_FORBIDDEN = re.compile(r"[\s\[\](){}<>]")
# Host names that always mean this machine.
_LOOPBACK_NAMES = frozenset({"localhost"})


# How pydantic's type errors read in TOML terms.
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "path_type": "a path (a string)",
}
# TOML's names for the Python types tomllib returns; bool before int, as bool is an int.
_TOML_TYPES = {
    bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table",
}
# Friendlier wording for the rest of pydantic's messages.
_REWORDED = {
    "Value error, ": "", "Input should be ": "must be ", "List should have": "must have", "Tuple should have": "must have",
}


# ---------------------------------------------------------------------------
# Value types


class Secret:
    """A password: prints as Secret('**********'); `reveal()` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call it only where the value is used."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        # model_dump() and JSON both get the mask: a dump never carries a password.
        return core_schema.no_info_plain_validator_function(
            _to_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: MASK),
        )


def _to_secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        # Never echo the value: it is (meant to be) a password.
        raise _problem(f"expected a string, got {_toml_type(value)}")
    if not value:
        raise _problem("must not be empty")
    return Secret(value)


def parse_duration(text: str | int | float) -> timedelta:
    """Parse "90s", "15m", "20h", "2d", "1h30m", "0.5s" or plain seconds into a timedelta."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"not a duration: {text!r} {_DURATION_HINT}")
    if isinstance(text, int | float):
        return _seconds(text)
    if match := _DURATION_SECONDS.fullmatch(text):
        return _microseconds(Decimal(match[1]) * 1_000_000, text)
    return _microseconds(_duration_parts_us(text), text)


def _seconds(value: int | float) -> timedelta:
    if not math.isfinite(value):
        raise ValueError(f"not a duration: {value!r} {_DURATION_HINT}")
    try:
        return timedelta(seconds=value)
    except OverflowError:
        raise ValueError(f"duration too long: {value!r}") from None


def _duration_parts_us(text: str) -> Decimal:
    # Units must appear once each, largest first, so "1m30m" is a typo, not 31m.
    units = list(_UNIT_SECONDS)
    total, position, last = Decimal(0), 0, -1
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        unit = match[2].lower() if match else ""
        if not match or units.index(unit) <= last:
            raise ValueError(f"not a duration: {text!r} {_DURATION_HINT}")
        total += Decimal(match[1]) * _UNIT_SECONDS[unit] * 1_000_000
        position, last = match.end(), units.index(unit)
    if last < 0:
        raise ValueError(f"not a duration: {text!r} {_DURATION_HINT}")
    return total


def _microseconds(total_us: Decimal, text: str) -> timedelta:
    try:
        return timedelta(microseconds=int(total_us.to_integral_value()))
    except (OverflowError, InvalidOperation):
        raise ValueError(f"duration too long: {text!r}") from None


def format_duration(duration: timedelta) -> str:
    """Write a timedelta for people ("20h", "1h 30m", "0.5s"); parse_duration reads it back."""
    if duration < timedelta(0):
        return "-" + format_duration(-duration)
    seconds, micros = divmod(duration // timedelta(microseconds=1), 1_000_000)
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if unit == "s" and micros:
            parts.append(f"{count}.{micros:06d}".rstrip("0") + "s")
        elif count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


def _to_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        duration = value
    else:
        try:
            duration = parse_duration(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise _problem(str(exc)) from None
    if duration <= timedelta(0):
        raise _problem(f"must be greater than zero, got {format_duration(duration)}")
    return duration


def _check_address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise _problem(f"not an email address: {value!r}")
    return value


def _check_staff(value: str) -> str:
    # "@domain" means everyone there; matching is case-insensitive, so store lowercase.
    domain_only = value.startswith("@") and _ADDRESS.fullmatch("x" + value)
    if not domain_only and not _ADDRESS.fullmatch(value):
        raise _problem(f"not an address or @domain: {value!r}")
    return value.lower()


def _check_host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise _problem(f"not a host name: {value!r} (give the name only, e.g. imap.example.com)")
    return value


def _check_url(value: str) -> str:
    if not re.fullmatch(r"https?://\S+", value):
        raise _problem(f"not an http(s) URL: {value!r}")
    return value


def _not_empty(value: str) -> str:
    if not value.strip():
        raise _problem("must not be empty")
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


# ---------------------------------------------------------------------------
# Validation helpers


def _problem(reason: str, *loc: str | int) -> PydanticCustomError:
    """An error reading `reason`; `loc` names the key below the validator's own, if any."""
    return PydanticCustomError(_PROBLEM_TYPE, "{reason}", {"reason": reason, "loc": loc})


def _toml_type(value: object) -> str:
    # Only the type, never the value: the value may be a password.
    return next((name for kind, name in _TOML_TYPES.items() if isinstance(value, kind)), "a date or time")


def _context(info: ValidationInfo) -> tuple[Mapping[str, str], Path]:
    context = info.context or {}
    return context.get("environ", os.environ), context.get("base_dir", Path.cwd())


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    # Relative paths mean "next to the config file", not "wherever systemd started us".
    return value if value.is_absolute() else _context(info)[1] / value


def _mask_url_password(url: str) -> str:
    # A postgresql URL may carry a password; reprs and dumps show it masked.
    return re.sub(r"(://[^/:@]*:)[^/@]*@", rf"\g<1>{MASK}@", url)


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _read_secret_file(path: Path, key: str) -> Secret:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _problem(f"cannot read {path}: {exc.strerror or type(exc).__name__}", key) from None
    except UnicodeDecodeError:
        # The decoder's message quotes bytes of the file: say only where it failed.
        raise _problem(f"{path} is not UTF-8 text", key) from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise _problem(f"{path} is empty", key)
    return Secret(secret)


def _secret_from(section: Any, key: str, info: ValidationInfo) -> Secret:
    environ, _ = _context(info)
    value = getattr(section, key)
    if key == "password":
        return value
    if key == "password_file":
        return _read_secret_file(_resolve_path(value, info), key)
    if key == "password_env":
        if not environ.get(value):
            raise _problem(f"environment variable {value} is not set or empty", key)
        return Secret(environ[value])
    directory = environ.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory:
        reason = f"${CREDENTIALS_DIRECTORY_ENV} is not set (needs LoadCredential= in the systemd unit)"
        raise _problem(reason, key)
    return _read_secret_file(Path(directory) / value, key)


def _resolve_password(section: Any, info: ValidationInfo, *, required: bool) -> None:
    """Check that at most one source is given, read it, and store it as section.password."""
    given = [key for key in PASSWORD_KEYS if getattr(section, key) is not None]
    if len(given) > 1:
        raise _problem(f"conflicts with {given[0]}: give only one password source", given[1])
    if not given:
        if required:
            raise _problem("required: give one of " + ", ".join(PASSWORD_KEYS), "password")
        return
    # The model is frozen; this is its own validator finishing construction.
    object.__setattr__(section, "password", _secret_from(section, given[0], info))


def _check_credential_name(value: str) -> str:
    if "/" in value or value in {"", ".", ".."}:
        raise _problem(f"not a credential name: {value!r}")
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise _problem(f"not an environment variable name: {value!r}")
    return value


def _check_mailbox_name(value: str) -> str:
    if not _MAILBOX_NAME.fullmatch(value):
        raise _problem(f"use only a-z, 0-9, _ and -: {value!r}")
    return value


# Names that password_env and password_credential may hold.
EnvName = Annotated[StrictStr, AfterValidator(_check_env_name)]
CredentialName = Annotated[StrictStr, AfterValidator(_check_credential_name)]
# A mailbox name, unique among mailboxes; it keys database rows and log lines.
MailboxName = Annotated[StrictStr, AfterValidator(_check_mailbox_name)]


class _Model(BaseModel):
    # Python names work when building settings in code; load_settings accepts only TOML names.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )


# ---------------------------------------------------------------------------
# Settings, one model per TOML section


class ServiceSettings(_Model):
    """[service]: who we are and where things live."""

    name: Text = "Support"
    phone: StrictStr = ""
    timezone: StrictStr = "UTC"
    database: StrictStr = "sqlite:////var/lib/mailwatch/mailwatch.db"
    templates: Path | None = None
    staff: tuple[Annotated[StrictStr, AfterValidator(_check_staff)], ...] = ()
    ticket_prefix: StrictStr = "#"
    alert_after: Duration = timedelta(minutes=15)
    alerts_to: tuple[EmailAddress, ...] | None = None

    @property
    def tz(self) -> ZoneInfo:
        """The zone for human-facing times."""
        return ZoneInfo(self.timezone)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            reason = f"unknown time zone: {value!r} (use an IANA name, e.g. Europe/Berlin or UTC)"
            raise _problem(reason) from None
        return value

    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # Never echo the URL: it may carry a database password.
        if not value.startswith(("sqlite:", "postgresql")):
            raise _problem("must start with sqlite: or postgresql (e.g. postgresql+psycopg://host/db)")
        return value

    @field_validator("templates")
    @classmethod
    def _templates_directory(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if not path.is_dir():
            raise _problem(f"not a directory: {path}")
        return path

    @field_validator("ticket_prefix")
    @classmethod
    def _usable_prefix(cls, value: str) -> str:
        if not value or _TICKET_PREFIX_FORBIDDEN.search(value):
            raise _problem(f"must be non-empty, without spaces or brackets: {value!r}")
        return value

    @field_serializer("database")
    def _database_masked(self, value: str) -> str:
        return _mask_url_password(value)

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, _mask_url_password(value) if key == "database" else value


class _ServerSettings(_Model):
    """What [mailbox.imap] and [smtp] share: security rules and password sources."""

    # Default port per security, and the default security, of the subclass's protocol.
    _ports: ClassVar[dict[str, int]]
    _default_security: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        # The default port depends on the security the same section chose.
        if isinstance(data, dict) and "port" not in data:
            security = data.get("security", cls._default_security)
            # A bad security value gets its own error; any port will do meanwhile.
            port = cls._ports.get(security) if isinstance(security, str) else None
            return {**data, "port": port or cls._ports[cls._default_security]}
        return data

    @field_validator("security", check_fields=False)
    @classmethod
    def _clear_text_only_locally(cls, security: str, info: ValidationInfo) -> str:
        host = info.data.get("host")
        if security == "none" and host is not None and not _is_loopback(host):
            raise _problem(
                f"'none' sends the password in clear text; it is allowed only for a loopback "
                f"host (127.0.0.1, ::1, localhost), not {host!r}: use tls or starttls"
            )
        return security

    @field_validator("ca_file", check_fields=False)
    @classmethod
    def _existing_ca_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if not path.is_file():
            raise _problem(f"no such file: {path}")
        return path

    @property
    def password_source(self) -> str | None:
        """The key that supplied `password`, or None when there is none."""
        indirect = [key for key in PASSWORD_KEYS[1:] if getattr(self, key) is not None]
        return indirect[0] if indirect else ("password" if getattr(self, "password") else None)


class ImapSettings(_ServerSettings):
    """[mailbox.imap]: how to reach and log in to the IMAP server."""

    _ports = {"tls": 993, "starttls": 143, "none": 143}
    _default_security = "tls"

    host: Host
    port: Port
    security: Security = "tls"
    username: Text
    # After loading, `password` holds the secret whichever key supplied it.
    password: Secret | None = None
    password_file: Path | None = None
    password_env: EnvName | None = None
    password_credential: CredentialName | None = None
    ca_file: Path | None = None
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _read_password(self, info: ValidationInfo) -> ImapSettings:
        _resolve_password(self, info, required=True)
        return self


class SmtpSettings(_ServerSettings):
    """[smtp]: the submission server that sends acknowledgments and escalations."""

    _ports = {"tls": 465, "starttls": 587, "none": 25}
    _default_security = "starttls"

    host: Host
    port: Port
    security: Security = "starttls"
    username: Text | None = None
    # After loading, `password` holds the secret whichever key supplied it.
    password: Secret | None = None
    password_file: Path | None = None
    password_env: EnvName | None = None
    password_credential: CredentialName | None = None
    from_: StrictStr = Field(alias="from")
    ca_file: Path | None = None
    timeout: Duration = timedelta(seconds=30)
    # Outbox backoff: first retry delay, the cap it doubles up to, and when to give up.
    retry_initial: Duration = timedelta(seconds=30)
    retry_max: Duration = timedelta(minutes=30)
    give_up_after: Duration = timedelta(days=2)

    @field_validator("from_")
    @classmethod
    def _one_address(cls, value: str) -> str:
        pairs = getaddresses([value])
        if len(pairs) != 1 or not _ADDRESS.fullmatch(pairs[0][1]):
            raise _problem(f"not one address like 'Acme Support <support@acme.example>': {value!r}")
        return value

    @model_validator(mode="after")
    def _read_password(self, info: ValidationInfo) -> SmtpSettings:
        # Without a username we send without AUTH, so no password is needed.
        _resolve_password(self, info, required=self.username is not None)
        if self.username is None and self.password is not None:
            raise _problem("required when a password is given", "username")
        return self

    @property
    def from_address(self) -> str:
        """The bare address of `from`, e.g. support@acme.example."""
        return getaddresses([self.from_])[0][1]

    @property
    def from_domain(self) -> str:
        """The lowercased domain of `from`, used for Message-IDs."""
        return self.from_address.rpartition("@")[2].lower()


class MailboxSettings(_Model):
    """[[mailbox]]: one watched mailbox."""

    name: MailboxName
    address: EmailAddress
    folder: Text = "INBOX"
    sent_folder: Text | None = None
    poll_interval: Duration = timedelta(seconds=60)
    idle: StrictBool = True
    imap: ImapSettings

    @model_validator(mode="before")
    @classmethod
    def _default_username(cls, data: Any) -> Any:
        # imap.username defaults to the mailbox address, which only this level knows.
        if not isinstance(data, dict) or not isinstance(data.get("address"), str):
            return data
        imap = data.get("imap")
        if isinstance(imap, dict) and "username" not in imap:
            return {**data, "imap": {**imap, "username": data["address"]}}
        return data


class AcknowledgmentSettings(_Model):
    """[acknowledgment]: the automatic reply to a customer's first message."""

    enabled: StrictBool = True
    max_age: Duration = timedelta(hours=1)
    per_sender_interval: Duration = timedelta(hours=24)
    max_per_hour: Annotated[StrictInt, Field(gt=0)] = 200
    envelope_from: EmailAddress | None = None


class SlaSettings(_Model):
    """[sla]: the response deadlines."""

    first_response: Duration = timedelta(hours=24)
    next_response: Duration | None = None
    sweep_interval: Duration = timedelta(seconds=30)


class EscalationStep(_Model):
    """[[escalation]]: who hears about an unanswered thread, and when."""

    after: Duration
    to: Annotated[tuple[EmailAddress, ...], Field(min_length=1)]


class FaqEntry(_Model):
    """One entry of [faq].entries, offered when a keyword appears in the message."""

    question: Text
    url: Url
    keywords: tuple[Text, ...] = ()


class FaqSettings(_Model):
    """[faq]: links offered in acknowledgments."""

    url: Url | None = None
    entries: tuple[FaqEntry, ...] = ()
    max_entries: Annotated[StrictInt, Field(ge=0)] = 3


class LoggingSettings(_Model):
    """[logging]: how log lines look and how many there are."""

    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSettings(_Model):
    """[metrics]: where Prometheus /metrics and /healthz listen."""

    listen: StrictStr

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _problem(f"not host:port with a port from 1 to 65535: {value!r}")
        return value

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The TCP port to bind."""
        return int(self.listen.rpartition(":")[2])


class Settings(_Model):
    """The whole configuration file, validated; pass it (or parts of it) down explicitly."""

    service: ServiceSettings = ServiceSettings()
    mailboxes: tuple[MailboxSettings, ...] = Field(alias="mailbox")
    acknowledgment: AcknowledgmentSettings = AcknowledgmentSettings()
    sla: SlaSettings = SlaSettings()
    escalations: tuple[EscalationStep, ...] = Field(default=(), alias="escalation")
    # Declared after acknowledgment and escalations: its check reads them.
    smtp: SmtpSettings | None = Field(default=None, validate_default=True)
    faq: FaqSettings = FaqSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings | None = None
    source: Path = Path("mailwatch.toml")
    warnings: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _no_mailbox_is_an_empty_list(cls, data: Any, info: ValidationInfo) -> Any:
        # So that a missing [[mailbox]] gets the same clear message as an empty one.
        from_file = bool((info.context or {}).get("from_file"))
        if isinstance(data, dict) and "mailbox" not in data and (from_file or "mailboxes" not in data):
            return {**data, "mailbox": []}
        return data

    @field_validator("mailboxes")
    @classmethod
    def _unique_mailboxes(cls, mailboxes: tuple[MailboxSettings, ...]) -> tuple[MailboxSettings, ...]:
        if not mailboxes:
            raise _problem("at least one [[mailbox]] is required")
        first_index: dict[str, int] = {}
        for index, mailbox in enumerate(mailboxes):
            if mailbox.name in first_index:
                reason = f"duplicate mailbox name {mailbox.name!r} (also mailbox[{first_index[mailbox.name]}])"
                raise _problem(reason, index, "name")
            first_index[mailbox.name] = index
        return mailboxes

    @field_validator("escalations")
    @classmethod
    def _increasing_steps(cls, steps: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
        for index in range(1, len(steps)):
            if steps[index].after <= steps[index - 1].after:
                raise _problem(
                    f"must be later than escalation[{index - 1}].after "
                    f"({format_duration(steps[index - 1].after)}): steps run in order",
                    index,
                    "after",
                )
        return steps

    @field_validator("smtp")
    @classmethod
    def _smtp_when_sending(cls, smtp: SmtpSettings | None, info: ValidationInfo) -> SmtpSettings | None:
        acknowledgment = info.data.get("acknowledgment")
        sends = (acknowledgment is not None and acknowledgment.enabled) or info.data.get("escalations")
        if smtp is None and sends:
            raise _problem("required when acknowledgments or escalations are enabled")
        return smtp

    def mailbox(self, name: str) -> MailboxSettings:
        """Return the mailbox called `name`; KeyError if there is none."""
        for mailbox in self.mailboxes:
            if mailbox.name == name:
                return mailbox
        raise KeyError(name)

    @property
    def own_addresses(self) -> frozenset[str]:
        """The watched mailboxes' addresses, lowercased: mail from these is never acked."""
        return frozenset(mailbox.address.lower() for mailbox in self.mailboxes)

    @property
    def alert_recipients(self) -> tuple[str, ...]:
        """Who hears that a mailbox is unreadable: alerts_to, else the last escalation step."""
        if self.service.alerts_to:
            return self.service.alerts_to
        return self.escalations[-1].to if self.escalations else ()


# ---------------------------------------------------------------------------
# Loading


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return $MAILWATCH_CONFIG, or /etc/mailwatch/mailwatch.toml when it is unset."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, check and return the settings in `path`; raise one ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    data, problems = _read_toml(path)
    settings = None
    if data is not None:
        problems += [_problem_line(path, (key,), "unknown key") for key in _NOT_FROM_FILE if key in data]
        settings, validation_problems = _validate(path, data, environ)
        problems += validation_problems
    # Raised outside any except block, so no pydantic error (which quotes input) is chained.
    if problems or settings is None:
        raise ConfigError(problems)
    return settings.model_copy(update={"warnings": _plain_password_warnings(settings)})


def _read_toml(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror or exc}"]
    except UnicodeDecodeError as exc:
        return None, [f"{path}: cannot read: not UTF-8 text (byte {exc.start})"]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return None, [_syntax_problem(path, text, str(exc))]


def _syntax_problem(path: Path, text: str, message: str) -> str:
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if match:
        return f"{path}: line {match[2]}: {match[1]} (column {match[3]})"
    # tomllib reports some mistakes only "at end of document".
    last_line = text.count("\n") + 1
    return f"{path}: line {last_line}: {message}"


def _validate(
    path: Path, data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[Settings | None, list[str]]:
    fields = {key: value for key, value in data.items() if key not in _NOT_FROM_FILE}
    context = {"environ": environ, "base_dir": Path(path).parent.absolute(), "from_file": True}
    try:
        settings = Settings.model_validate(
            {**fields, "source": path}, context=context, by_alias=True, by_name=False
        )
    except ValidationError as exc:
        return None, [_describe(path, error) for error in exc.errors(include_url=False)]
    return settings, []


def _describe(path: Path, error: Any) -> str:
    ctx = error.get("ctx") or {}
    loc = (*error["loc"], *ctx.get("loc", ()))
    return _problem_line(path, loc, _reason(error))


def _reason(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == _PROBLEM_TYPE:
        return ctx["reason"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind == "too_short":
        return "must not be empty"
    if kind in _EXPECTED:
        return _type_mismatch(kind, error["input"], error["loc"])
    message = error["msg"]
    for prefix, replacement in _REWORDED.items():
        message = message.replace(prefix, replacement, 1) if message.startswith(prefix) else message
    return message[:1].lower() + message[1:]


def _type_mismatch(kind: str, value: object, loc: tuple[str | int, ...]) -> str:
    reason = f"expected {_EXPECTED[kind]}, got {_toml_type(value)}"
    if kind in {"tuple_type", "list_type"} and isinstance(value, dict) and len(loc) == 1:
        # The usual cause: [mailbox] where [[mailbox]] was meant.
        reason += f" (write [[{loc[0]}]], not [{loc[0]}])"
    return reason


def _problem_line(path: Path, loc: tuple[str | int, ...], reason: str) -> str:
    return f"{path}: {_dotted(loc)}: {reason}"


def _dotted(loc: tuple[str | int, ...]) -> str:
    """('mailbox', 0, 'imap', 'port') → 'mailbox[0].imap.port'."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _plain_password_warnings(settings: Settings) -> tuple[str, ...]:
    sections: list[tuple[str, ImapSettings | SmtpSettings | None]] = [
        (f"mailbox[{index}].imap", mailbox.imap) for index, mailbox in enumerate(settings.mailboxes)
    ]
    sections.append(("smtp", settings.smtp))
    return tuple(
        f"{settings.source}: {key}.password: a plain password in the config file; "
        "prefer password_file, password_env or password_credential"
        for key, section in sections
        if section is not None and section.password_source == "password"
    )
