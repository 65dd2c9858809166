"""Tests for loading and checking the TOML configuration (mailwatch.config)."""

from __future__ import annotations

import os
import re
import textwrap
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from mailwatch.config import (
    AcknowledgmentSettings,
    FaqEntry,
    ImapSettings,
    MailboxSettings,
    Secret,
    Settings,
    SmtpSettings,
    default_config_path,
    load_settings,
)
from mailwatch.durations import format_duration, parse_duration
from mailwatch.errors import ConfigError

# The repository's example configuration, which must stay valid.
EXAMPLE = Path(__file__).parents[2] / "deploy" / "mailwatch.toml"
# A password that must never show up in any output.
PASSWORD = "hunter2-Sup3rSecret"
# The smallest valid configuration: one mailbox, and SMTP because acks default to on.
MINIMAL = """
    [[mailbox]]
    name = "support"
    address = "support@acme.example"
      [mailbox.imap]
      host = "imap.acme.example"
      password_env = "IMAP_PASSWORD"

    [smtp]
    host = "smtp.acme.example"
    from = "Acme Support <support@acme.example>"
"""
# The environment MINIMAL needs.
ENVIRON = {"IMAP_PASSWORD": PASSWORD}


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Return write(text) → Path('mailwatch.toml'), relative, so messages read as in the docs."""
    monkeypatch.chdir(tmp_path)

    def write_config(text: str, name: str = "mailwatch.toml") -> Path:
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
        return Path(name)

    return write_config


def problems_in(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Load `path`, expect a ConfigError, and return its problems."""
    with pytest.raises(ConfigError) as caught:
        load_settings(path, ENVIRON if environ is None else environ)
    return caught.value.problems


def with_section(extra: str) -> str:
    """MINIMAL plus more TOML."""
    return MINIMAL + textwrap.dedent(extra)


# --- valid configurations ---------------------------------------------------


def test_minimal_config_loads_with_documented_defaults(write: Any) -> None:
    # Everything but the mailbox and the SMTP server has a default.
    settings = load_settings(write(MINIMAL), ENVIRON)
    service, mailbox = settings.service, settings.mailboxes[0]
    assert (service.name, service.phone, service.timezone, str(service.tz)) == ("Support", "", "UTC", "UTC")
    assert service.database == "sqlite:////var/lib/mailwatch/mailwatch.db"
    assert (service.templates, service.staff, service.ticket_prefix) == (None, (), "#")
    assert (service.alert_after, service.alerts_to) == (timedelta(minutes=15), None)
    assert (mailbox.folder, mailbox.sent_folder, mailbox.poll_interval, mailbox.idle) == (
        "INBOX", None, timedelta(seconds=60), True,
    )
    imap = mailbox.imap
    assert (imap.port, imap.security, imap.username, imap.timeout) == (993, "tls", "support@acme.example", timedelta(seconds=30))
    assert imap.password is not None and imap.password.reveal() == PASSWORD
    assert imap.password_source == "password_env"
    assert settings.smtp is not None
    assert (settings.smtp.port, settings.smtp.security, settings.smtp.username, settings.smtp.password) == (
        587, "starttls", None, None,
    )
    assert (settings.smtp.retry_initial, settings.smtp.retry_max, settings.smtp.give_up_after) == (
        timedelta(seconds=30), timedelta(minutes=30), timedelta(days=2),
    )
    assert settings.acknowledgment == AcknowledgmentSettings(
        enabled=True, max_age=timedelta(hours=1), per_sender_interval=timedelta(hours=24),
        max_per_hour=200, envelope_from=None,
    )
    assert (settings.sla.first_response, settings.sla.next_response, settings.sla.sweep_interval) == (
        timedelta(hours=24), None, timedelta(seconds=30),
    )
    assert (settings.escalations, settings.faq.url, settings.faq.entries, settings.faq.max_entries) == ((), None, (), 3)
    assert (settings.logging.format, settings.logging.level, settings.metrics) == ("json", "info", None)
    assert (settings.source, settings.warnings) == (Path("mailwatch.toml"), ())


def test_example_config_in_deploy_is_valid(tmp_path: Path) -> None:
    # The shipped example must load once its credentials exist.
    (tmp_path / "imap").write_text("imap-secret\n")
    (tmp_path / "smtp").write_text("smtp-secret\n")
    settings = load_settings(EXAMPLE, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.mailboxes[0].imap.password == Secret("imap-secret")
    assert settings.smtp is not None and settings.smtp.password == Secret("smtp-secret")
    assert [step.after for step in settings.escalations] == [timedelta(hours=20), timedelta(hours=24)]
    assert settings.warnings == ()


def _all_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for inner in _models_in(field.annotation):
            keys |= _all_keys(inner)
    return keys


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in getattr(annotation, "__args__", ()) for model in _models_in(arg)]


def test_example_config_documents_every_option() -> None:
    # Each option appears in deploy/mailwatch.toml, set or commented out.
    text = EXAMPLE.read_text()
    keys = _all_keys(Settings) - {"source", "warnings"}
    # A key is set or commented out on its own line, names a [section], or sits in an inline table.
    forms = [r"^[ \t#]*{key} =", r"^\s*\[\[?([\w.]+\.)?{key}\]\]?$", r"[{{,] {key} ="]
    missing = {key for key in keys if not any(re.search(form.format(key=key), text, re.M) for form in forms)}
    assert missing == set()


def test_settings_can_be_built_in_code_with_python_names() -> None:
    # Tests elsewhere build settings without a file; Python names work there.
    imap = ImapSettings(host="127.0.0.1", security="none", username="u", password="p")
    smtp = SmtpSettings(host="127.0.0.1", port=2525, security="none", from_="a@b.example")
    settings = Settings(mailboxes=(MailboxSettings(name="m", address="m@b.example", imap=imap),), smtp=smtp)
    assert settings.mailbox("m").imap.port == 143
    assert settings.smtp is not None and settings.smtp.from_address == "a@b.example"


def test_relative_password_file_is_read_from_the_config_folder(tmp_path: Path) -> None:
    # A relative path means "next to the config", not the working directory.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "imap-password").write_text(PASSWORD + "\n")
    config = tmp_path / "etc" / "mailwatch.toml"
    config.write_text(textwrap.dedent(MINIMAL).replace('password_env = "IMAP_PASSWORD"', 'password_file = "imap-password"'))
    settings = load_settings(config, {})
    assert settings.mailboxes[0].imap.password == Secret(PASSWORD)


def test_password_credential_is_read_from_credentials_directory(write: Any, tmp_path: Path) -> None:
    # systemd's LoadCredential= puts the file in $CREDENTIALS_DIRECTORY.
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "imap").write_text(PASSWORD)
    path = write(MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_credential = "imap"'))
    settings = load_settings(path, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert settings.mailboxes[0].imap.password == Secret(PASSWORD)


def test_smtp_from_is_parsed(write: Any) -> None:
    # The display name stays in `from`; the address and domain are derived.
    settings = load_settings(write(MINIMAL.replace("support@acme.example>", "Support@Acme.Example>")), ENVIRON)
    assert settings.smtp is not None
    assert settings.smtp.from_ == "Acme Support <Support@Acme.Example>"
    assert (settings.smtp.from_address, settings.smtp.from_domain) == ("Support@Acme.Example", "acme.example")


def test_smtp_default_port_follows_security(write: Any) -> None:
    # 465 for implicit TLS, 25 for a loopback relay without TLS.
    tls = load_settings(write(MINIMAL.replace('from =', 'security = "tls"\nfrom =')), ENVIRON)
    assert tls.smtp is not None and tls.smtp.port == 465
    relay = MINIMAL.replace('"smtp.acme.example"', '"localhost"').replace('from =', 'security = "none"\nfrom =')
    local = load_settings(write(relay), ENVIRON)
    assert local.smtp is not None and local.smtp.port == 25


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_security_none_is_allowed_on_loopback(write: Any, host: str) -> None:
    # A local test server needs no TLS; the default port is then 143.
    text = MINIMAL.replace('"imap.acme.example"', f'"{host}"\n  security = "none"')
    assert load_settings(write(text), ENVIRON).mailboxes[0].imap.port == 143


def test_staff_entries_are_lowercased(write: Any) -> None:
    # Staff matching ignores case, so the stored form is lowercase.
    settings = load_settings(write('[service]\nstaff = ["@Acme.Example", "Bob@Partner.Example"]\n' + MINIMAL), ENVIRON)
    assert settings.service.staff == ("@acme.example", "bob@partner.example")


def test_helpers_find_mailboxes_and_recipients(write: Any) -> None:
    # own_addresses is lowercase; alerts go to the last escalation step by default.
    text = with_section("""
        [[mailbox]]
        name = "sales"
        address = "Sales@Acme.Example"
          [mailbox.imap]
          host = "imap.acme.example"
          password_env = "IMAP_PASSWORD"

        [[escalation]]
        after = "20h"
        to = ["leads@acme.example"]

        [[escalation]]
        after = "1d"
        to = ["boss@acme.example", "ceo@acme.example"]
    """)
    settings = load_settings(write(text), ENVIRON)
    assert settings.mailbox("sales").address == "Sales@Acme.Example"
    with pytest.raises(KeyError):
        settings.mailbox("nope")
    assert settings.own_addresses == frozenset({"support@acme.example", "sales@acme.example"})
    assert settings.alert_recipients == ("boss@acme.example", "ceo@acme.example")


def test_alerts_to_overrides_escalation_recipients(write: Any) -> None:
    # An explicit alerts_to wins; with neither, nobody is alerted.
    settings = load_settings(write('[service]\nalerts_to = ["ops@acme.example"]\n' + MINIMAL), ENVIRON)
    assert settings.alert_recipients == ("ops@acme.example",)
    assert load_settings(write(MINIMAL), ENVIRON).alert_recipients == ()


def test_smtp_may_be_left_out_when_nothing_is_sent(write: Any) -> None:
    # Logging only: no acknowledgments, no escalations, no SMTP.
    text = MINIMAL.split("[smtp]")[0] + "[acknowledgment]\nenabled = false\n"
    assert load_settings(write(text), ENVIRON).smtp is None


def test_metrics_listen_is_split_into_host_and_port(write: Any) -> None:
    # IPv6 brackets are removed for binding.
    settings = load_settings(write(with_section('[metrics]\nlisten = "[::1]:9308"\n')), ENVIRON)
    assert settings.metrics is not None and (settings.metrics.host, settings.metrics.port) == ("::1", 9308)


def test_templates_and_ca_file_are_resolved_next_to_the_config(write: Any, tmp_path: Path) -> None:
    # Relative paths are relative to the config file's folder.
    (tmp_path / "templates").mkdir()
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    text = '[service]\ntemplates = "templates"\n' + MINIMAL.replace('password_env', 'ca_file = "ca.pem"\n  password_env')
    settings = load_settings(write(text), ENVIRON)
    assert settings.service.templates == tmp_path / "templates"
    assert settings.mailboxes[0].imap.ca_file == tmp_path / "ca.pem"


def test_default_config_path_honours_the_environment() -> None:
    # $MAILWATCH_CONFIG wins; an empty value counts as unset.
    assert default_config_path({"MAILWATCH_CONFIG": "/srv/mw.toml"}) == Path("/srv/mw.toml")
    assert default_config_path({"MAILWATCH_CONFIG": ""}) == Path("/etc/mailwatch/mailwatch.toml")
    assert default_config_path({}) == Path("/etc/mailwatch/mailwatch.toml")


# --- one test per kind of mistake -------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("colour = 'red'\n", "colour"),
        ("[service]\ncolour = 'red'\n", "service.colour"),
        ("[smtpp]\nhost = 'x'\n", "smtpp"),
    ],
    ids=["top-level", "section", "misspelt-section"],
)
def test_unknown_key_is_named(write: Any, extra: str, key: str) -> None:
    # A misspelt key is an error, not silence.
    assert problems_in(write(extra + MINIMAL)) == [f"mailwatch.toml: {key}: unknown key"]


def test_unknown_key_in_mailbox_is_named(write: Any) -> None:
    # Keys in [[mailbox]] are checked too, and located by index.
    text = MINIMAL.replace('name = "support"', 'name = "support"\npoll_intervall = "5m"')
    assert problems_in(write(text)) == ["mailwatch.toml: mailbox[0].poll_intervall: unknown key"]


def test_unknown_key_in_mailbox_imap_is_named(write: Any) -> None:
    # ...and so are keys in [mailbox.imap].
    text = MINIMAL.replace('host = "imap.acme.example"', 'host = "imap.acme.example"\n  hostname = "x"')
    assert problems_in(write(text)) == ["mailwatch.toml: mailbox[0].imap.hostname: unknown key"]


def test_python_field_names_are_not_toml_keys(write: Any) -> None:
    # The file uses [[mailbox]] and from; the attribute names are not accepted there.
    text = "source = 'x'\n" + MINIMAL.replace("from =", "from_ =")
    assert problems_in(write(text)) == [
        "mailwatch.toml: source: unknown key",
        "mailwatch.toml: smtp.from: required",
        "mailwatch.toml: smtp.from_: unknown key",
    ]
    text = MINIMAL.replace("[[mailbox]]", "[[mailboxes]]").replace("[mailbox.imap]", "[mailboxes.imap]")
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox: at least one [[mailbox]] is required",
        "mailwatch.toml: mailboxes: unknown key",
    ]


def test_wrong_type_names_key_and_types(write: Any) -> None:
    # A quoted number is a string in TOML, and is refused.
    text = MINIMAL.replace('host = "imap.acme.example"', 'host = "imap.acme.example"\n  port = "993"')
    assert problems_in(write(text)) == ["mailwatch.toml: mailbox[0].imap.port: expected an integer, got a string"]


def test_single_mailbox_table_gets_a_hint(write: Any) -> None:
    # [mailbox] instead of [[mailbox]] is the usual mistake.
    text = MINIMAL.replace("[[mailbox]]", "[mailbox]")
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox: expected an array, got a table (write [[mailbox]], not [mailbox])"
    ]


def test_missing_required_key_is_named(write: Any) -> None:
    # address has no default.
    text = MINIMAL.replace('address = "support@acme.example"', "")
    assert "mailwatch.toml: mailbox[0].address: required" in problems_in(write(text))


def test_bad_duration_is_explained(write: Any) -> None:
    # The message shows the value and how to write one.
    text = with_section("""
        [[escalation]]
        after = "20h"
        to = ["leads@acme.example"]

        [[escalation]]
        after = "20x"
        to = ["boss@acme.example"]
    """)
    assert problems_in(write(text)) == [
        "mailwatch.toml: escalation[1].after: not a duration: '20x' (use e.g. 90s, 15m, 20h, 2d)"
    ]


def test_zero_duration_is_refused(write: Any) -> None:
    # An interval of zero would spin the loop.
    text = with_section("[sla]\nsweep_interval = 0\n")
    assert problems_in(write(text)) == ["mailwatch.toml: sla.sweep_interval: must be positive, got 0s"]


def test_negative_duration_is_called_negative_not_unreadable(write: Any) -> None:
    # "-24h" is a duration with the wrong sign: say so, rather than "not a duration".
    text = with_section('[sla]\nfirst_response = "-24h"\n')
    assert problems_in(write(text)) == ["mailwatch.toml: sla.first_response: must be positive, got '-24h'"]


def test_bad_timezone_is_named(write: Any) -> None:
    # Time zones are IANA names.
    text = '[service]\ntimezone = "Mars/Olympus"\n' + MINIMAL
    assert problems_in(write(text)) == [
        "mailwatch.toml: service.timezone: unknown time zone: 'Mars/Olympus' (use an IANA name, e.g. Europe/Berlin or UTC)"
    ]


def test_bad_choice_lists_the_choices(write: Any) -> None:
    # Fixed choices are spelled out.
    assert problems_in(write(with_section('[logging]\nlevel = "verbose"\n'))) == [
        "mailwatch.toml: logging.level: must be 'debug', 'info', 'warning' or 'error'"
    ]


def test_unsupported_database_is_refused_without_echoing_the_url(write: Any) -> None:
    # The URL may hold a password, so the message does not repeat it.
    (problem,) = problems_in(write(f'[service]\ndatabase = "mysql://u:{PASSWORD}@h/db"\n' + MINIMAL))
    assert problem.startswith("mailwatch.toml: service.database: must start with sqlite: or postgresql")
    assert PASSWORD not in problem


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://mw:Db/Pa55@db/mw", "postgresql+psycopg://db/mw?password=Db/Pa55&sslmode=require",
    "postgresql+psycopg://mw:Db%2FPa55@db/mw?password=Db/Pa55",
])
def test_database_password_is_masked_by_sqlalchemys_renderer(write: Any, url: str) -> None:
    # Slashes in the password and ?password= are hidden too: the URL is parsed as SQLAlchemy parses it.
    settings = load_settings(write(f'[service]\ndatabase = "{url}"\n' + MINIMAL), ENVIRON)
    shown = repr(settings) + str(settings.model_dump()) + settings.model_dump_json()
    assert "Pa55" not in shown and "db/mw" in shown


def test_unescaped_at_in_database_password_is_a_config_error(write: Any) -> None:
    # "mw:p@ss@db" would connect to host "ss@db": refused at load, saying how to write it, not echoing it.
    (problem,) = problems_in(write('[service]\ndatabase = "postgresql+psycopg://mw:Se@cret@db/mw"\n' + MINIMAL))
    assert problem.startswith("mailwatch.toml: service.database: an @ in the password")
    assert "%40" in problem and "Se@cret" not in problem and "cret" not in problem


def test_database_password_is_masked_in_repr_and_dump(write: Any) -> None:
    # The database URL is used as given, but never shown with its password.
    settings = load_settings(write(f'[service]\ndatabase = "postgresql+psycopg://mw:{PASSWORD}@db/mw"\n' + MINIMAL), ENVIRON)
    assert settings.service.database == f"postgresql+psycopg://mw:{PASSWORD}@db/mw"
    assert PASSWORD not in repr(settings) + str(settings.model_dump()) + settings.model_dump_json()


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ('staff = ["bob"]', "service.staff[0]", "not an address or @domain: 'bob'"),
        ('ticket_prefix = "[T"', "service.ticket_prefix", "must be non-empty, without spaces or brackets: '[T'"),
        ('alerts_to = ["ops"]', "service.alerts_to[0]", "not an email address: 'ops'"),
    ],
    ids=["staff", "ticket-prefix", "alerts-to"],
)
def test_bad_service_values_are_named(write: Any, line: str, key: str, reason: str) -> None:
    # Values with a shape are checked at load.
    assert problems_in(write(f"[service]\n{line}\n" + MINIMAL)) == [f"mailwatch.toml: {key}: {reason}"]


def test_numbers_out_of_range_are_named(write: Any) -> None:
    # Limits are stated in the message.
    text = with_section("[acknowledgment]\nmax_per_hour = 0\n").replace("[smtp]", "[smtp]\nport = 70000")
    assert problems_in(write(text)) == [
        "mailwatch.toml: acknowledgment.max_per_hour: must be greater than 0",
        "mailwatch.toml: smtp.port: must be less than or equal to 65535",
    ]


def test_missing_templates_directory_is_named(write: Any, tmp_path: Path) -> None:
    # A templates override that is not there would silently use the defaults.
    assert problems_in(write('[service]\ntemplates = "nope"\n' + MINIMAL)) == [
        f"mailwatch.toml: service.templates: not a directory: {tmp_path / 'nope'}"
    ]


def test_missing_ca_file_is_named(write: Any, tmp_path: Path) -> None:
    # A CA bundle is checked at load, not at the first TLS handshake.
    text = MINIMAL.replace('from =', 'ca_file = "/nonexistent/ca.pem"\nfrom =')
    assert problems_in(write(text)) == ["mailwatch.toml: smtp.ca_file: no such file: /nonexistent/ca.pem"]


def test_bad_mailbox_name_and_address_are_named(write: Any) -> None:
    # Names key database rows, so they are restricted; addresses need a domain.
    text = MINIMAL.replace('name = "support"', 'name = "Support Desk"').replace('"support@acme.example"', '"support"')
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox[0].name: use only a-z, 0-9, _ and -: 'Support Desk'",
        "mailwatch.toml: mailbox[0].address: not an email address: 'support'",
    ]


def test_missing_password_file_is_named(write: Any, tmp_path: Path) -> None:
    # The message names the key and the file.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_file = "/nonexistent/imap"')
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox[0].imap.password_file: cannot read /nonexistent/imap: No such file or directory"
    ]


def test_unreadable_password_file_is_named(write: Any, tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root.
    (tmp_path / "imap").mkdir()
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_file = "imap"')
    assert problems_in(write(text)) == [
        f"mailwatch.toml: mailbox[0].imap.password_file: cannot read {tmp_path / 'imap'}: Is a directory"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_password_file_without_permission_is_named(write: Any, tmp_path: Path) -> None:
    # Mode 000 is the usual mistake when a credential file is created by hand.
    secret = tmp_path / "imap"
    secret.write_text(PASSWORD)
    secret.chmod(0)
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_file = "imap"')
    assert problems_in(write(text)) == [
        f"mailwatch.toml: mailbox[0].imap.password_file: cannot read {secret}: Permission denied"
    ]


def test_empty_password_file_is_named(write: Any, tmp_path: Path) -> None:
    # A lone newline is an empty password.
    (tmp_path / "imap").write_text("\n")
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_file = "imap"')
    assert problems_in(write(text)) == [f"mailwatch.toml: mailbox[0].imap.password_file: {tmp_path / 'imap'} is empty"]


def test_unset_password_env_is_named(write: Any) -> None:
    # An unset or empty variable is reported by name.
    assert problems_in(write(MINIMAL), {"IMAP_PASSWORD": ""}) == [
        "mailwatch.toml: mailbox[0].imap.password_env: environment variable IMAP_PASSWORD is not set or empty"
    ]


def test_credential_without_credentials_directory_is_named(write: Any) -> None:
    # Outside systemd (or without LoadCredential=) there is no credentials directory.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_credential = "imap"')
    assert problems_in(write(text), {}) == [
        "mailwatch.toml: mailbox[0].imap.password_credential: "
        "$CREDENTIALS_DIRECTORY is not set (needs LoadCredential= in the systemd unit)"
    ]


def test_missing_credential_file_is_named(write: Any, tmp_path: Path) -> None:
    # The credential name must match the unit's LoadCredential= name.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_credential = "imap"')
    assert problems_in(write(text), {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == [
        f"mailwatch.toml: mailbox[0].imap.password_credential: cannot read {tmp_path / 'imap'}: No such file or directory"
    ]


def test_two_password_sources_are_refused(write: Any) -> None:
    # Which one would win is not obvious, so neither does.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', 'password_env = "IMAP_PASSWORD"\n  password = "x"')
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox[0].imap.password_env: conflicts with password: give only one password source"
    ]


def test_imap_without_password_is_refused(write: Any) -> None:
    # IMAP always logs in.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', "")
    assert problems_in(write(text)) == [
        "mailwatch.toml: mailbox[0].imap.password: required: give one of "
        "password, password_file, password_env, password_credential"
    ]


def test_smtp_username_and_password_go_together(write: Any) -> None:
    # A username means AUTH, which needs a password; a password needs a username.
    text = MINIMAL.replace("from =", 'username = "u"\nfrom =')
    assert problems_in(write(text)) == [
        "mailwatch.toml: smtp.password: required: give one of "
        "password, password_file, password_env, password_credential"
    ]
    text = MINIMAL.replace("from =", 'password_env = "IMAP_PASSWORD"\nfrom =')
    assert problems_in(write(text)) == ["mailwatch.toml: smtp.username: required when a password is given"]


def test_no_mailbox_is_refused(write: Any) -> None:
    # Watching nothing is a configuration mistake.
    text = MINIMAL.split("[[mailbox]]")[0] + "[smtp]" + MINIMAL.split("[smtp]")[1]
    assert problems_in(write(text)) == ["mailwatch.toml: mailbox: at least one [[mailbox]] is required"]


@pytest.mark.parametrize("section", ["imap", "smtp"])
def test_security_none_is_refused_on_a_remote_host(write: Any, section: str) -> None:
    # Clear text over the network would expose the password.
    if section == "imap":
        text, key = MINIMAL.replace('"imap.acme.example"', '"imap.acme.example"\n  security = "none"'), "mailbox[0].imap"
    else:
        text, key = MINIMAL.replace("from =", 'security = "none"\nfrom ='), "smtp"
    (problem,) = problems_in(write(text))
    assert problem.startswith(f"mailwatch.toml: {key}.security: 'none' sends the password in clear text")


def test_duplicate_mailbox_names_are_refused(write: Any) -> None:
    # Names key database rows, so they must be unique.
    mailbox = MINIMAL.split("[smtp]")[0]
    assert problems_in(write(MINIMAL + mailbox)) == [
        "mailwatch.toml: mailbox[1].name: duplicate mailbox name 'support' (also mailbox[0])"
    ]


def test_escalation_steps_out_of_order_are_refused(write: Any) -> None:
    # Steps fire in order, so each must come strictly later than the one before.
    text = with_section("""
        [[escalation]]
        after = "20h"
        to = ["leads@acme.example"]

        [[escalation]]
        after = "1200m"
        to = ["boss@acme.example"]
    """)
    assert problems_in(write(text)) == [
        "mailwatch.toml: escalation[1].after: must be later than escalation[0].after (20h): steps run in order"
    ]


def test_escalation_without_recipients_is_refused(write: Any) -> None:
    # A step that mails nobody is a mistake.
    text = with_section('[[escalation]]\nafter = "20h"\nto = []\n')
    assert problems_in(write(text)) == ["mailwatch.toml: escalation[0].to: must not be empty"]


def test_smtp_missing_with_acknowledgments_is_refused(write: Any) -> None:
    # Acknowledgments are on by default and need a server to send them.
    text = MINIMAL.split("[smtp]")[0]
    assert problems_in(write(text)) == [
        "mailwatch.toml: smtp: required when acknowledgments or escalations are enabled"
    ]


def test_smtp_missing_with_escalations_is_refused(write: Any) -> None:
    # Escalations are emails too.
    text = MINIMAL.split("[smtp]")[0] + '[acknowledgment]\nenabled = false\n[[escalation]]\nafter = "1h"\nto = ["a@b.example"]\n'
    assert problems_in(write(text)) == [
        "mailwatch.toml: smtp: required when acknowledgments or escalations are enabled"
    ]


def test_bad_smtp_from_is_refused(write: Any) -> None:
    # Exactly one address, with or without a display name.
    text = MINIMAL.replace("Acme Support <support@acme.example>", "a@b.example, c@d.example")
    (problem,) = problems_in(write(text))
    assert problem.startswith("mailwatch.toml: smtp.from: not one address like")


def test_bad_metrics_port_is_refused(write: Any) -> None:
    # The port must be one a socket can bind.
    assert problems_in(write(with_section('[metrics]\nlisten = "127.0.0.1:99999"\n'))) == [
        "mailwatch.toml: metrics.listen: not host:port with a port from 1 to 65535: '127.0.0.1:99999'"
    ]


def test_bad_faq_entry_is_named(write: Any) -> None:
    # Each entry is checked and located by its index.
    text = with_section('[faq]\nentries = [{ question = "Refunds?", url = "acme.example/refunds" }]\n')
    assert problems_in(write(text)) == [
        "mailwatch.toml: faq.entries[0].url: not an http(s) URL: 'acme.example/refunds'"
    ]
    assert FaqEntry(question="q", url="https://x.example").keywords == ()


def test_toml_syntax_error_gives_the_line(write: Any) -> None:
    # A syntax error stops parsing, so it is the only problem.
    (problem,) = problems_in(write("[service]\nname = 'x'\nphone = +1 800\n"))
    assert problem.startswith("mailwatch.toml: line 3: ")


def test_missing_config_file_is_reported(write: Any) -> None:
    # The path is named as given.
    assert problems_in(Path("absent.toml")) == ["absent.toml: cannot read: No such file or directory"]


def test_several_problems_are_reported_together(write: Any) -> None:
    # One run shows every mistake, section by section.
    text = "bogus = true\n" + with_section("""
        [service]
        timezone = "Nowhere/Special"
        [sla]
        first_response = "soon"
        [logging]
        format = "xml"
    """).replace('password_env = "IMAP_PASSWORD"', 'password_env = "UNSET_VAR"')
    assert problems_in(write(text)) == [
        "mailwatch.toml: service.timezone: unknown time zone: 'Nowhere/Special' (use an IANA name, e.g. Europe/Berlin or UTC)",
        "mailwatch.toml: mailbox[0].imap.password_env: environment variable UNSET_VAR is not set or empty",
        "mailwatch.toml: sla.first_response: not a duration: 'soon' (use e.g. 90s, 15m, 20h, 2d)",
        "mailwatch.toml: logging.format: must be 'json' or 'console'",
        "mailwatch.toml: bogus: unknown key",
    ]


# --- secrets never show -----------------------------------------------------


def test_plain_password_is_accepted_with_a_warning(write: Any) -> None:
    # check prints the warning; the service still starts.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', f'password = "{PASSWORD}"')
    settings = load_settings(write(text), {})
    assert settings.mailboxes[0].imap.password == Secret(PASSWORD)
    assert settings.warnings == (
        "mailwatch.toml: mailbox[0].imap.password: a plain password in the config file; "
        "prefer password_file, password_env or password_credential",
    )
    assert PASSWORD not in " ".join(settings.warnings)


def test_loaded_settings_never_show_the_password(write: Any) -> None:
    # repr, str and dumps print a mask instead.
    text = MINIMAL.replace("from =", f'username = "u"\npassword = "{PASSWORD}"\nfrom =')
    settings = load_settings(write(text), ENVIRON)
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    assert all(PASSWORD not in text for text in shown)
    assert "Secret('**********')" in repr(settings)


def test_failed_validation_never_shows_the_password(write: Any) -> None:
    # Neither the message nor the traceback carries a password from the file.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', f'password = "{PASSWORD}"\n  port = "x"\n  passwd = "{PASSWORD}"')
    text = text.replace("from =", f'password = "{PASSWORD}"\nfrom =')
    with pytest.raises(ConfigError) as caught:
        load_settings(write(text), {})
    shown = str(caught.value) + repr(caught.value) + "".join(traceback.format_exception(caught.value))
    assert PASSWORD not in shown
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert "mailwatch.toml: mailbox[0].imap.passwd: unknown key" in caught.value.problems


def test_password_of_the_wrong_type_is_not_echoed(write: Any) -> None:
    # A numeric password is refused without repeating it.
    text = MINIMAL.replace('password_env = "IMAP_PASSWORD"', "password = 918273645")
    assert problems_in(write(text)) == ["mailwatch.toml: mailbox[0].imap.password: expected a string, got an integer"]


def test_secret_hides_its_value() -> None:
    # Only reveal() gives the value away.
    secret = Secret(PASSWORD)
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('**********')"
    assert secret.reveal() == PASSWORD
    assert secret == Secret(PASSWORD) and secret != Secret("other")


# --- durations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("20h", timedelta(hours=20)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1d 2h 3m 4.5s", timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
        ("0.5s", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        ("20H", timedelta(hours=20)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
    ],
)
def test_parse_duration_reads_the_documented_forms(text: str | float, expected: timedelta) -> None:
    # Units d, h, m, s, combined largest first; bare numbers are seconds.
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "20x", "h", "1m30m", "30m1h", "-5s", "1,5h", "1 h x", True, None, float("inf"), "9" * 30 + "d"])
def test_parse_duration_refuses_everything_else(text: Any) -> None:
    # Each unit once, largest first; no signs, no garbage, nothing unbounded.
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(hours=20), "20h"),
        (timedelta(minutes=90), "1h 30m"),
        (timedelta(days=2, hours=4), "2d 4h"),
        (timedelta(seconds=90), "1m 30s"),
        (timedelta(milliseconds=500), "0.5s"),
        (timedelta(0), "0s"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_format_duration_writes_for_people(duration: timedelta, text: str) -> None:
    # Largest units first, zero parts left out.
    assert format_duration(duration) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_format_then_parse_round_trips(duration: timedelta) -> None:
    # Whatever we print, we can read back exactly.
    assert parse_duration(format_duration(duration)) == duration


@given(
    st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999_999),
    st.sampled_from(["", " "]),
)
def test_parse_adds_up_the_parts(days: int, hours: int, minutes: int, seconds: int, micros: int, gap: str) -> None:
    # Each part contributes its own unit, with or without spaces between.
    text = gap.join([f"{days}d", f"{hours}h", f"{minutes}m", f"{seconds}.{micros:06d}s"])
    expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=micros)
    assert parse_duration(text) == expected


@given(st.text(max_size=20))
def test_parse_duration_fails_only_with_value_error(text: str) -> None:
    # Arbitrary input either parses or raises ValueError, never anything else.
    try:
        assert parse_duration(text) >= timedelta(0)
    except ValueError:
        pass


@pytest.mark.parametrize(("listen", "warned"), [("127.0.0.1:9308", False), ("[::1]:9308", False),
                                                ("localhost:9308", False), ("0.0.0.0:9308", True),
                                                ("192.0.2.7:9308", True), ("metrics.example:9308", True)])
def test_check_warns_when_metrics_listen_beyond_loopback(write: Any, listen: str, warned: bool) -> None:
    # /metrics and /healthz reveal mailbox names and errors: listening beyond loopback is said out loud.
    settings = load_settings(write(MINIMAL + f'\n[metrics]\nlisten = "{listen}"\n'), ENVIRON)
    assert any("metrics.listen" in w for w in settings.warnings) == warned


def test_report_every_names_a_weekday_and_a_time(write: Any) -> None:
    # "monday 08:00" reads as a schedule; "mondays at 8" is a mistake, not a silent default.
    settings = load_settings(write(with_section('[report]\nto = ["lead@acme.example"]\nevery = "Friday 17:30"\n')), ENVIRON)
    assert (settings.report.weekday, settings.report.at_hour_minute) == (4, (17, 30))
    assert problems_in(write(with_section('[report]\nevery = "mondays at 8"\n'))) == [
        "mailwatch.toml: report.every: not a weekday and a time such as \"monday 08:00\": 'mondays at 8'"
    ]


def test_smtp_missing_with_a_weekly_report_is_refused(write: Any) -> None:
    # The weekly report is an email too.
    text = MINIMAL.split("[smtp]")[0] + '[acknowledgment]\nenabled = false\n[report]\nto = ["lead@acme.example"]\n'
    assert problems_in(write(text)) == [
        "mailwatch.toml: smtp: required when [report] to names recipients of the weekly report"
    ]
