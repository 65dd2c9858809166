"""Every exception mailwatch raises on purpose, named after what the caller should do.

Adapters translate library exceptions into these at their boundary; only `cli`
turns them into exit codes.
"""


class MailwatchError(Exception):
    """Base class for every error mailwatch raises on purpose."""


class ConfigError(MailwatchError):
    """The configuration is unusable: refuse to start (exit code 2)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class NoSuchThread(MailwatchError):
    """The command names a ticket that does not exist: fix the command line (exit code 64)."""


class InstanceLocked(MailwatchError):
    """Another mailwatch process works on the same SQLite database: do not start."""


class SchemaError(MailwatchError):
    """The database schema does not match this version of mailwatch: run `db upgrade`."""


class TransientError(MailwatchError):
    """A server or connection failed in a way that may heal: retry later."""


class AuthenticationError(TransientError):
    """The server refused our credentials: retry slowly, alert the operator."""


class SignInRequired(AuthenticationError):
    """An OAuth2 sign-in is missing, revoked or refused: a person must act (`remedy` says how).

    `code` is the provider's error code (invalid_grant, AADSTS7000222, …); the message
    names the sign-in, the code and the remedy, and never any part of a token.
    """

    def __init__(self, message: str, *, code: str, remedy: str) -> None:
        self.code = code
        self.remedy = remedy
        super().__init__(message)


class SmtpUnavailable(TransientError):
    """The SMTP connection, not the message, failed: defer the rest of the round too."""


class PermanentError(MailwatchError):
    """Retrying cannot help (a rejected recipient, a poison message): record and move on."""


class TemplateProblem(PermanentError):
    """A template does not compile or render: fall back to the packaged one, or report it at `check`.

    Never a ConfigError: a template failing on one customer's data must not read as
    "refuse to start". `problems` name the file and line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
