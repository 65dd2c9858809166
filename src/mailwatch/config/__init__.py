"""The configuration: one TOML file in, validated frozen settings out.

`load_settings()` is the only way in: it reads the file, resolves every password from
its source, checks everything and returns a `Settings`, or raises one `ConfigError`
listing every problem as `file: dotted.key: reason`. Nothing here connects to a server.

- `types`: value types and validators (durations, addresses, hosts, names);
- `secrets`: `Secret`, which never prints itself, and the password sources;
- `models`: one settings model per TOML section;
- `load`: reading the file and wording its problems.
"""

from mailwatch.config.calendar import CalendarSettings, PublicHolidays
from mailwatch.config.load import CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, default_config_path, load_settings
from mailwatch.config.models import (
    AcknowledgmentSettings,
    EscalationStep,
    FaqEntry,
    FaqSettings,
    ImapSettings,
    LoggingSettings,
    MailboxServiceSettings,
    MailboxSettings,
    MailboxSlaSettings,
    MetricsSettings,
    ReportSettings,
    ServiceSettings,
    Settings,
    SlaSettings,
    SmtpSettings,
)
from mailwatch.config.secrets import MASK, PASSWORD_KEYS, Secret

__all__ = [
    "AcknowledgmentSettings", "CalendarSettings", "MailboxServiceSettings", "MailboxSlaSettings", "PublicHolidays",
    "CONFIG_PATH_ENV", "DEFAULT_CONFIG_PATH", "EscalationStep", "FaqEntry", "FaqSettings", "ReportSettings",
    "ImapSettings", "LoggingSettings", "MASK", "MailboxSettings", "MetricsSettings", "PASSWORD_KEYS", "Secret",
    "ServiceSettings", "Settings", "SlaSettings", "SmtpSettings", "default_config_path", "load_settings",
]
