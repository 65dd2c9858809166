"""Reading the configuration file: TOML in, `Settings` or one `ConfigError` out.

Every problem is worded for the person editing the file, as `file: dotted.key: reason`;
no message ever quotes a value that might be a password.
"""

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mailwatch.config.models import ImapSettings, Settings, SmtpSettings
from mailwatch.config.types import PROBLEM_TYPE, toml_type
from mailwatch.errors import ConfigError

# Used when neither --config nor $MAILWATCH_CONFIG names a file.
DEFAULT_CONFIG_PATH = Path("/etc/mailwatch/mailwatch.toml")
# The environment variable that overrides DEFAULT_CONFIG_PATH.
CONFIG_PATH_ENV = "MAILWATCH_CONFIG"
# Settings fields that are filled in by load_settings, never by the file.
_NOT_FROM_FILE = ("source", "warnings")


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
# Friendlier wording for the rest of pydantic's messages.
_REWORDED = {
    "Value error, ": "", "Input should be ": "must be ", "List should have": "must have", "Tuple should have": "must have",
}



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
    warnings = (*_plain_password_warnings(settings), *_trust_warnings(settings))
    return settings.model_copy(update={"warnings": warnings})


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
    if kind == PROBLEM_TYPE:
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
    reason = f"expected {_EXPECTED[kind]}, got {toml_type(value)}"
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
    passwords = tuple(
        f"{settings.source}: {key}.password: a plain password in the config file; "
        "prefer password_file, password_env or password_credential"
        for key, section in sections
        if section is not None and section.password_source == "password"
    )
    return passwords + tuple(
        f"{settings.source}: {key}.oauth2.client_secret: a plain client secret in the config file; "
        "prefer client_secret_file, client_secret_env or client_secret_credential"
        for key, section in sections
        if section is not None and section.oauth2 is not None and section.oauth2.client_secret_source == "client_secret"
    )



def _trust_warnings(settings: Settings) -> tuple[str, ...]:
    """Settings that let anyone who can send mail do more than write to support."""
    found: list[str] = []
    if settings.service.trust_unauthenticated_staff:
        found.append(f"{settings.source}: service.trust_unauthenticated_staff: anyone can write a staff From; "
                     "a forged one stops a ticket's clock and its escalation never goes out")
    elif settings.service.staff and not settings.service.authserv_ids:
        found.append(f"{settings.source}: service.authserv_ids is empty: staff replies in the watched folder "
                     "cannot be authenticated and answer nothing (the Sent folder and \\Answered still do)")
    if settings.metrics is not None and not _loopback(settings.metrics.host):
        found.append(f"{settings.source}: metrics.listen: {settings.metrics.listen} is reachable from other hosts; "
                     "/metrics shows mailbox names and volumes, /healthz the errors (prefer 127.0.0.1)")
    return tuple(found)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
