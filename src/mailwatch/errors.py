"""The few exceptions mailwatch raises, named after what the caller should do."""


class MailwatchError(Exception):
    """Base class for every error mailwatch raises on purpose."""


class ConfigError(MailwatchError):
    """The configuration is unusable: refuse to start (exit code 2)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class TransientError(MailwatchError):
    """A server or connection failed in a way that may heal: retry later."""


class AuthenticationError(TransientError):
    """The server refused our credentials: retry slowly, alert the operator."""


class PermanentError(MailwatchError):
    """Retrying cannot help (a rejected recipient, a poison message)."""


class SchemaError(MailwatchError):
    """The database schema does not match this version of mailwatch."""
