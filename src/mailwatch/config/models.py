"""The settings, one frozen model per TOML section; `Settings` is the whole file."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailwatch.config.calendar import CalendarSettings
from mailwatch.config.oauth2 import OAuth2Settings, check_auth
from mailwatch.config.secrets import PASSWORD_KEYS, Secret, mask_url_password, resolve_password, resolve_secret
from mailwatch.config.types import (
    ADDRESS,
    CredentialName,
    Duration,
    EmailAddress,
    EnvName,
    Host,
    MailboxName,
    Model,
    Port,
    Security,
    StaffEntry,
    Text,
    TimeZoneName,
    Url,
    is_loopback,
    problem,
    resolve_path,
)
from mailwatch.durations import format_duration

# Characters that would break the "[#1042]" ticket tag in subjects.
_TICKET_PREFIX_FORBIDDEN = re.compile(r"[\s\[\](){}<>]")


def existing_directory(value: Path | None, info: ValidationInfo) -> Path | None:
    """A configured folder, relative to the config file, that must exist."""
    if value is None:
        return None
    path = resolve_path(value, info)
    if not path.is_dir():
        raise problem(f"not a directory: {path}")
    return path


def check_database_url(value: str) -> None:
    """Parse the URL as SQLAlchemy will, so a mistake is a config error, not a traceback later."""
    try:
        parsed = make_url(value)
    except (ArgumentError, ValueError):
        raise problem("not a database URL SQLAlchemy can read (special characters in the password "
                      "must be percent-encoded, e.g. @ as %40)") from None
    if "@" in (parsed.host or "") or ("@" in (parsed.database or "") and parsed.get_backend_name() != "sqlite"):
        raise problem("an @ in the password or user name must be written %40 (the URL has more than one @)")


class ServiceSettings(Model):
    """[service]: who we are and where things live."""

    name: Text = "Support"
    phone: StrictStr = ""
    timezone: TimeZoneName = "UTC"
    database: StrictStr = "sqlite:////var/lib/mailwatch/mailwatch.db"
    templates: Path | None = None
    staff: tuple[StaffEntry, ...] = ()
    # Receiving servers whose Authentication-Results are believed ("microsoft365": Exchange Online).
    authserv_ids: tuple[Text, ...] = ()
    trust_unauthenticated_staff: StrictBool = False  # a staff From alone stops the clock: forgeable
    ticket_prefix: StrictStr = "#"
    alert_after: Duration = timedelta(minutes=15)
    alerts_to: tuple[EmailAddress, ...] | None = None

    @property
    def tz(self) -> ZoneInfo:
        """The zone for human-facing times."""
        return ZoneInfo(self.timezone)


    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # Never echo the URL: it may carry a database password.
        if not value.startswith(("sqlite:", "postgresql")):
            raise problem("must start with sqlite: or postgresql (e.g. postgresql+psycopg://host/db)")
        check_database_url(value)
        return value

    @field_validator("templates")
    @classmethod
    def _templates_directory(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return existing_directory(value, info)

    @field_validator("ticket_prefix")
    @classmethod
    def _usable_prefix(cls, value: str) -> str:
        if not value or _TICKET_PREFIX_FORBIDDEN.search(value):
            raise problem(f"must be non-empty, without spaces or brackets: {value!r}")
        return value

    @field_serializer("database")
    def _database_masked(self, value: str) -> str:
        return mask_url_password(value)

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, mask_url_password(value) if key == "database" else value


class _ServerSettings(Model):
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
        if security == "none" and host is not None and not is_loopback(host):
            raise problem(
                f"'none' sends the password in clear text; it is allowed only for a loopback "
                f"host (127.0.0.1, ::1, localhost), not {host!r}: use tls or starttls"
            )
        return security

    @field_validator("ca_file", check_fields=False)
    @classmethod
    def _existing_ca_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = resolve_path(value, info)
        if not path.is_file():
            raise problem(f"no such file: {path}")
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
    auth: Literal["password", "oauth2"] = "password"
    oauth2: OAuth2Settings | None = None

    @model_validator(mode="after")
    def _read_password(self, info: ValidationInfo) -> ImapSettings:
        resolve_password(self, info, required=self.auth == "password")
        check_auth(self, self.auth, self.oauth2, smtp=False)
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
    auth: Literal["password", "oauth2"] = "password"
    oauth2: OAuth2Settings | None = None

    @field_validator("from_")
    @classmethod
    def _one_address(cls, value: str) -> str:
        pairs = getaddresses([value])
        if len(pairs) != 1 or not ADDRESS.fullmatch(pairs[0][1]):
            raise problem(f"not one address like 'Acme Support <support@acme.example>': {value!r}")
        return value

    @model_validator(mode="after")
    def _read_password(self, info: ValidationInfo) -> SmtpSettings:
        # Without a username we send without AUTH, so no password is needed.
        resolve_password(self, info, required=self.username is not None and self.auth == "password")
        if self.username is None and self.password is not None:
            raise problem("required when a password is given", "username")
        if self.username is None and self.auth == "oauth2":
            raise problem("required with auth = \"oauth2\": the account that sends", "username")
        check_auth(self, self.auth, self.oauth2, smtp=True)
        return self

    @property
    def from_address(self) -> str:
        """The bare address of `from`, e.g. support@acme.example."""
        return getaddresses([self.from_])[0][1]

    @property
    def from_domain(self) -> str:
        """The lowercased domain of `from`, used for Message-IDs."""
        return self.from_address.rpartition("@")[2].lower()


class MailboxSettings(Model):
    """[[mailbox]]: one watched mailbox."""

    name: MailboxName
    address: EmailAddress
    folder: Text = "INBOX"
    sent_folder: Text | None = None
    poll_interval: Duration = timedelta(seconds=60)
    idle: StrictBool = True
    imap: ImapSettings
    sla: MailboxSlaSettings | None = None
    escalations: tuple[EscalationStep, ...] | None = Field(default=None, alias="escalation")
    service: MailboxServiceSettings | None = None

    @field_validator("escalations")
    @classmethod
    def _increasing_steps(cls, steps: tuple[EscalationStep, ...] | None) -> tuple[EscalationStep, ...] | None:
        return None if steps is None else check_increasing(steps)

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


class AcknowledgmentSettings(Model):
    """[acknowledgment]: the automatic reply to a customer's first message."""

    enabled: StrictBool = True
    max_age: Duration = timedelta(hours=1)
    per_sender_interval: Duration = timedelta(hours=24)
    max_per_hour: Annotated[StrictInt, Field(gt=0)] = 200
    # The most of max_per_hour that one source domain of unauthenticated mail may use.
    max_share_per_domain: Annotated[float, Field(gt=0, le=1)] = 0.25
    envelope_from: EmailAddress | None = None

    @property
    def max_per_domain(self) -> int:
        """The hourly share of one unauthenticated source domain, at least one ack."""
        return max(1, int(self.max_per_hour * self.max_share_per_domain))


class SlaSettings(Model):
    """[sla]: the response deadlines, in business time when `calendar` names a [[calendar]]."""

    calendar: MailboxName | None = None
    first_response: Duration = timedelta(hours=24)
    next_response: Duration | None = None
    sweep_interval: Duration = timedelta(seconds=30)


class MailboxSlaSettings(Model):
    """[mailbox.sla]: this mailbox's own deadlines; unset keys follow [sla]."""

    calendar: MailboxName | None = None
    first_response: Duration | None = None
    next_response: Duration | None = None


class EscalationStep(Model):
    """[[escalation]]: who hears about an unanswered thread, and when."""

    after: Duration
    to: Annotated[tuple[EmailAddress, ...], Field(min_length=1)]
    deliver: Literal["any-time", "business-hours"] = "any-time"
    # The hours "business-hours" means; unset: the thread's own [sla] calendar.
    calendar: MailboxName | None = None


def check_increasing(steps: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
    """Steps run in order, so each must come later than the one before."""
    for index in range(1, len(steps)):
        if steps[index].after <= steps[index - 1].after:
            raise problem(
                f"must be later than escalation[{index - 1}].after "
                f"({format_duration(steps[index - 1].after)}): steps run in order",
                index,
                "after",
            )
    return steps


class MailboxServiceSettings(Model):
    """[mailbox.service]: how this mailbox's emails present the team; unset keys follow [service]."""

    name: Text | None = None
    phone: StrictStr | None = None
    templates: Path | None = None

    @field_validator("templates")
    @classmethod
    def _templates_directory(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return existing_directory(value, info)


class FaqEntry(Model):
    """One entry of [faq].entries, offered when a keyword appears in the message."""

    question: Text
    url: Url
    keywords: tuple[Text, ...] = ()


class FaqSettings(Model):
    """[faq]: links offered in acknowledgments."""

    url: Url | None = None
    entries: tuple[FaqEntry, ...] = ()
    max_entries: Annotated[StrictInt, Field(ge=0)] = 3


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EVERY = re.compile(r"(?P<day>[a-z]+)\s+(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)")


class ReportSettings(Model):
    """[report]: the weekly report email to team leads."""

    to: tuple[EmailAddress, ...] = ()
    every: StrictStr = "monday 08:00"  # weekday and time in service.timezone; the report covers the week before

    @field_validator("every")
    @classmethod
    def _weekday_and_time(cls, value: str) -> str:
        match = _EVERY.fullmatch(value.strip().lower())
        if not match or match["day"] not in _WEEKDAYS:
            raise problem(f"not a weekday and a time such as \"monday 08:00\": {value!r}")
        return value

    @property
    def weekday(self) -> int:
        """0 for Monday."""
        return _WEEKDAYS.index(_EVERY.fullmatch(self.every.strip().lower())["day"])

    @property
    def at_hour_minute(self) -> tuple[int, int]:
        """The local time of day the report goes out."""
        match = _EVERY.fullmatch(self.every.strip().lower())
        return int(match["hour"]), int(match["minute"])


class LoggingSettings(Model):
    """[logging]: how log lines look and how many there are."""

    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class _Listening:
    """A section with `listen = "host:port"`: the address to bind, split."""

    listen: str

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The TCP port to bind."""
        return int(self.listen.rpartition(":")[2])


def _host_and_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise problem(f"not host:port with a port from 1 to 65535: {value!r}")
    return value


class MetricsSettings(_Listening, Model):
    """[metrics]: where Prometheus /metrics and /healthz listen."""

    listen: Annotated[StrictStr, AfterValidator(_host_and_port)]


# The keys that can supply the [web] signing key, plain value first (as resolve_secret wants).
WEB_SECRET_KEYS = ("secret", "secret_file", "secret_env", "secret_credential")
WEB_SECRET_MIN_BYTES = 32  # an HMAC-SHA256 key shorter than its output weakens the signature


class WebSettings(_Listening, Model):
    """[web]: where the action-link page listens and what the links in escalation emails point to."""

    listen: Annotated[StrictStr, AfterValidator(_host_and_port)] = "127.0.0.1:8025"
    base_url: StrictStr
    # After loading, `secret` holds the signing key whichever key supplied it.
    secret: Secret | None = None
    secret_file: Path | None = None
    secret_env: EnvName | None = None
    secret_credential: CredentialName | None = None
    link_lifetime: Duration = timedelta(days=7)

    @field_validator("base_url")
    @classmethod
    def _public_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise problem(f"not an http(s) URL: {value!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise problem(f"must be https (http is allowed only for a loopback host), not {value!r}")
        if parts.query or parts.fragment or not value.endswith("/"):
            raise problem(f"must end with \"/\" and carry no query or fragment: {value!r}")
        return value

    @field_validator("link_lifetime")
    @classmethod
    def _positive_lifetime(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise problem("must be longer than zero")
        return value

    @model_validator(mode="after")
    def _read_secret(self, info: ValidationInfo) -> WebSettings:
        given = [key for key in WEB_SECRET_KEYS if getattr(self, key) is not None]
        resolve_secret(self, info, WEB_SECRET_KEYS, required=True)
        if len(self.secret_key) < WEB_SECRET_MIN_BYTES:
            source = given[0]  # the key the person wrote, not `secret` that now holds the value
            raise problem(f"the signing key must be at least {WEB_SECRET_MIN_BYTES} bytes long", source)
        return self

    @property
    def secret_key(self) -> bytes:
        """The signing key as bytes, for mailwatch.links."""
        assert self.secret is not None  # _read_secret requires it
        return self.secret.reveal().encode("utf-8")


class Settings(Model):
    """The whole configuration file, validated; pass it (or parts of it) down explicitly."""

    service: ServiceSettings = ServiceSettings()
    mailboxes: tuple[MailboxSettings, ...] = Field(alias="mailbox")
    acknowledgment: AcknowledgmentSettings = AcknowledgmentSettings()
    calendars: tuple[CalendarSettings, ...] = Field(default=(), alias="calendar")
    sla: SlaSettings = SlaSettings()
    escalations: tuple[EscalationStep, ...] = Field(default=(), alias="escalation")
    report: ReportSettings = ReportSettings()
    # Declared after acknowledgment, escalations and report: its check reads them.
    smtp: SmtpSettings | None = Field(default=None, validate_default=True)
    faq: FaqSettings = FaqSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings | None = None
    web: WebSettings | None = None
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
            raise problem("at least one [[mailbox]] is required")
        first_index: dict[str, int] = {}
        for index, mailbox in enumerate(mailboxes):
            if mailbox.name in first_index:
                reason = f"duplicate mailbox name {mailbox.name!r} (also mailbox[{first_index[mailbox.name]}])"
                raise problem(reason, index, "name")
            first_index[mailbox.name] = index
        return mailboxes

    @field_validator("escalations")
    @classmethod
    def _increasing_steps(cls, steps: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
        return check_increasing(steps)

    @field_validator("calendars")
    @classmethod
    def _unique_calendars(cls, calendars: tuple[CalendarSettings, ...]) -> tuple[CalendarSettings, ...]:
        names = [calendar.name for calendar in calendars]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise problem(f"duplicate calendar name {name!r} (also calendar[{names.index(name)}])", index, "name")
        return calendars

    @model_validator(mode="after")
    def _calendars_known(self) -> Settings:
        # Every calendar named anywhere exists, and "business-hours" always has hours to mean.
        for loc, name in self._calendar_references():
            if name is not None and name not in self.calendar_names:
                known = ", ".join(sorted(self.calendar_names)) or "none defined"
                raise problem(f"no [[calendar]] named {name!r} (calendars: {known})", *loc)
        for index, mailbox in enumerate(self.mailboxes):
            own = mailbox.escalations is not None
            for step_index, step in enumerate(self.steps_of(mailbox.name)):
                if step.deliver == "business-hours" and step.calendar is None and self.calendar_of(mailbox.name) is None:
                    loc = ("mailbox", index, "escalation", step_index) if own else ("escalation", step_index)
                    raise problem(f"'business-hours' needs a calendar: set calendar here or in [sla] "
                                  f"(mailbox {mailbox.name!r} has none)", *loc, "deliver")
        return self

    def _calendar_references(self) -> list[tuple[tuple[str | int, ...], str | None]]:
        refs: list[tuple[tuple[str | int, ...], str | None]] = [(("sla", "calendar"), self.sla.calendar)]
        refs += [(("escalation", i, "calendar"), step.calendar) for i, step in enumerate(self.escalations)]
        for index, mailbox in enumerate(self.mailboxes):
            if mailbox.sla is not None:
                refs.append((("mailbox", index, "sla", "calendar"), mailbox.sla.calendar))
            refs += [(("mailbox", index, "escalation", i, "calendar"), step.calendar)
                     for i, step in enumerate(mailbox.escalations or ())]
        return refs

    @property
    def calendar_names(self) -> frozenset[str]:
        """The names of the [[calendar]] sections."""
        return frozenset(calendar.name for calendar in self.calendars)

    def calendar(self, name: str | None) -> CalendarSettings | None:
        """The [[calendar]] called `name`; None for None (elapsed time)."""
        return next((calendar for calendar in self.calendars if calendar.name == name), None)

    def calendar_of(self, mailbox: str) -> str | None:
        """The calendar name of a mailbox's deadlines: its own [mailbox.sla], else [sla]."""
        own = self.mailbox(mailbox).sla
        return own.calendar if own is not None and own.calendar is not None else self.sla.calendar

    def steps_of(self, mailbox: str) -> tuple[EscalationStep, ...]:
        """A mailbox's escalation steps: its own [[mailbox.escalation]] replace the global ones."""
        own = self.mailbox(mailbox).escalations
        return own if own is not None else self.escalations

    @field_validator("smtp")
    @classmethod
    def _smtp_when_sending(cls, smtp: SmtpSettings | None, info: ValidationInfo) -> SmtpSettings | None:
        acknowledgment = info.data.get("acknowledgment")
        mailboxes = info.data.get("mailboxes") or ()
        sends = ((acknowledgment is not None and acknowledgment.enabled) or info.data.get("escalations")
                 or any(mailbox.escalations for mailbox in mailboxes))
        if smtp is None and sends:
            raise problem("required when acknowledgments or escalations are enabled")
        report = info.data.get("report")
        if smtp is None and report is not None and report.to:
            raise problem("required when [report] to names recipients of the weekly report")
        return smtp

    @model_validator(mode="after")
    def _smtp_reuses_an_oauth2_mailbox(self) -> Settings:
        reused = self.smtp.oauth2.mailbox if self.smtp and self.smtp.oauth2 else None
        if reused is None:
            return self
        names = [mailbox.name for mailbox in self.mailboxes if mailbox.imap.auth == "oauth2"]
        if reused not in names:
            raise problem(f"no [[mailbox]] named {reused!r} signs in with oauth2 "
                          f"(those that do: {', '.join(names) or 'none'})", "smtp", "oauth2", "mailbox")
        return self

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

    @property
    def escalates(self) -> bool:
        """Whether any mailbox has escalation steps."""
        return any(self.steps_of(mailbox.name) for mailbox in self.mailboxes)

