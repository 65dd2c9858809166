"""Passwords: the `Secret` type that never prints itself, and where a password comes from.

A password is given by exactly one of `password`, `password_file`, `password_env` or
`password_credential` (systemd's LoadCredential=); after loading, `password` holds it.
An OAuth2 `client_secret` comes from the same four kinds of source.
"""

from pathlib import Path
from typing import Any

from pydantic import ValidationInfo
from pydantic_core import core_schema
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailwatch.config.types import context_of, problem, resolve_path, toml_type

# Set by systemd for units with LoadCredential=; password_credential looks here.
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
# What a Secret, and every redacted log value, prints instead of itself.
MASK = "**********"
# The keys that can supply a password, in the order their errors are reported.
PASSWORD_KEYS = ("password", "password_file", "password_env", "password_credential")


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
        raise problem(f"expected a string, got {toml_type(value)}")
    if not value:
        raise problem("must not be empty")
    return Secret(value)


def _read_secret_file(path: Path, key: str) -> Secret:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise problem(f"cannot read {path}: {exc.strerror or type(exc).__name__}", key) from None
    except UnicodeDecodeError:
        # The decoder's message quotes bytes of the file: say only where it failed.
        raise problem(f"{path} is not UTF-8 text", key) from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise problem(f"{path} is empty", key)
    return Secret(secret)


def _secret_from(section: Any, key: str, info: ValidationInfo) -> Secret:
    environ, _ = context_of(info)
    value = getattr(section, key)
    if key.endswith("_file"):
        return _read_secret_file(resolve_path(value, info), key)
    if key.endswith("_env"):
        if not environ.get(value):
            raise problem(f"environment variable {value} is not set or empty", key)
        return Secret(environ[value])
    if not key.endswith("_credential"):
        return value
    directory = environ.get(CREDENTIALS_DIRECTORY_ENV)
    if not directory:
        reason = f"${CREDENTIALS_DIRECTORY_ENV} is not set (needs LoadCredential= in the systemd unit)"
        raise problem(reason, key)
    return _read_secret_file(Path(directory) / value, key)


def resolve_password(section: Any, info: ValidationInfo, *, required: bool) -> None:
    """Check that at most one source is given, read it, and store it as section.password."""
    resolve_secret(section, info, PASSWORD_KEYS, required=required)


def resolve_secret(section: Any, info: ValidationInfo, keys: tuple[str, ...], *, required: bool) -> None:
    """The same for any secret: `keys` are the plain key first, then _file, _env, _credential."""
    given = [key for key in keys if getattr(section, key) is not None]
    if len(given) > 1:
        raise problem(f"conflicts with {given[0]}: give only one {keys[0].replace('_', ' ')} source", given[1])
    if not given:
        if required:
            raise problem("required: give one of " + ", ".join(keys), keys[0])
        return
    # The model is frozen; this is its own validator finishing construction.
    object.__setattr__(section, keys[0], _secret_from(section, given[0], info))


def mask_url_password(url: str) -> str:
    """The URL as SQLAlchemy renders it, every password hidden: the userinfo and any ?password=."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "(an unparsable database URL)"  # whatever it holds could be the secret
    hidden = {key: MASK for key in parsed.query if "password" in key.lower()}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)
