"""Access tokens on demand: the stored one while it is fresh, else a refresh or a new app-only token.

The rotated refresh token is in the database before the new access token is handed
out, so a crash right after a refresh never loses it. A sign-in that only a person
can mend (revoked, expired, consent withdrawn, client secret expired) raises
`SignInRequired` naming the provider's error code and what to run; the failure is
remembered, so retries do not hammer the provider until someone signs in again.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from mailwatch.config.oauth2 import OAuth2Settings
from mailwatch.config.secrets import Secret
from mailwatch.errors import SignInRequired, TransientError
from mailwatch.oauth2.client import OAuth2Client, ProviderError, TokenGrant
from mailwatch.oauth2.providers import PROVIDER_NAMES, endpoints
from mailwatch.oauth2.store import StoredSignIn, TokenStore

log = structlog.get_logger(__name__)

# Refresh this long before expiry (or a quarter of a short lifetime), so no command meets a dead token.
REFRESH_AHEAD = timedelta(minutes=5)
# After invalid_grant, how long to look for another instance's refresh (the usual cause with rotation).
RACE_GRACE_POLLS = 10
RACE_GRACE_POLL_S = 0.2
# The server is busy, not refusing: try again later like any network trouble.
_PASSING_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


@dataclass(frozen=True)
class AccessToken:
    """A bearer token to log in with; `value` is a Secret."""

    value: Secret
    expires_at: datetime
    account: str


def refresh_margin(issued_at: datetime, expires_at: datetime) -> timedelta:
    """How long before `expires_at` a token counts as spent."""
    return min(REFRESH_AHEAD, (expires_at - issued_at) / 4)


class SignIn:
    """One configured OAuth2 sign-in (a mailbox's, or SMTP's) and its row in the token store."""

    def __init__(self, key: str, label: str, settings: OAuth2Settings, store: TokenStore, remedy: str) -> None:
        self.key = key  # "mailbox:support" or "smtp"
        self.label = label  # "mailbox support", for people
        self.settings = settings
        self.store = store
        self.remedy = remedy  # "run `mailwatch login support`"
        self.client = OAuth2Client(settings, endpoints(settings))

    def __repr__(self) -> str:
        return f"SignIn({self.key!r}, {self.settings.provider}, {self.settings.flow})"

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.settings.provider or "", self.settings.client_id or "", self.settings.flow)

    @property
    def app_only(self) -> bool:
        return self.settings.flow == "client_credentials"

    @property
    def provider_name(self) -> str:
        return PROVIDER_NAMES[self.settings.provider or "custom"]

    def current(self) -> StoredSignIn | None:
        """The stored sign-in, if it belongs to the configured app and flow."""
        seen = self.store.load(self.key)
        if seen is None or (seen.provider, seen.client_id, seen.flow) != self.identity:
            return None
        return seen

    def access_token(self, now: datetime, refused: AccessToken | None = None) -> AccessToken:
        """A token valid for a while yet; `refused`: the server just turned this one down, get another."""
        seen = self.current()
        if seen is None:
            return self._first_token(now)
        token = usable(seen, now, refused)
        if token is not None:
            return token
        if seen.failure and not self.app_only:
            raise self._required(seen.failure)
        return self._renew(seen, now)

    def _first_token(self, now: datetime) -> AccessToken:
        if not self.app_only:
            raise SignInRequired(f"{self.label}: not signed in to {self.provider_name} yet; {self.remedy}",
                                 code="not_signed_in", remedy=self.remedy)
        try:
            grant = self.client.client_credentials(now)
        except ProviderError as exc:
            return self._after_refusal(exc, None, now)
        self.store.signed_in(self.key, self.identity, grant, now)
        log.info("oauth2_app_token", sign_in=self.key, expires_at=grant.expires_at.isoformat())
        return AccessToken(grant.access_token, grant.expires_at, grant.account)

    def _renew(self, seen: StoredSignIn, now: datetime) -> AccessToken:
        if not self.app_only and seen.refresh_token is None:
            raise self._required("no_refresh_token: none was stored (was offline_access among the scopes?)")
        try:
            grant = self._request(seen, now)
        except ProviderError as exc:
            return self._after_refusal(exc, seen, now)
        if self.store.refreshed(seen, grant, now):
            log.info("oauth2_refreshed", sign_in=self.key, version=seen.version + 1,
                     expires_at=grant.expires_at.isoformat(), rotated=grant.refresh_token is not None)
            return AccessToken(grant.access_token, grant.expires_at, grant.account or seen.account)
        # Another instance refreshed first: its tokens are the newer ones, ours are dropped.
        log.info("oauth2_refresh_lost_race", sign_in=self.key, version=seen.version)
        return self._newer_than(seen, now)

    def _request(self, seen: StoredSignIn, now: datetime) -> TokenGrant:
        if self.app_only:
            return self.client.client_credentials(now)
        return self.client.refresh(seen.refresh_token, now)

    def _after_refusal(self, exc: ProviderError, seen: StoredSignIn | None, now: datetime) -> AccessToken:
        if exc.error in _PASSING_ERRORS:
            raise TransientError(f"{self.label}: {self.provider_name} is busy ({exc.code}); retrying") from None
        token = self._winners_token(seen, now) if exc.error == "invalid_grant" and seen is not None else None
        if token is not None:
            return token
        failure = f"{exc.code}: {_first_sentence(exc.description)}" if exc.description else exc.code
        if seen is not None:
            self.store.failed(seen, failure, now)
        log.error("oauth2_sign_in_refused", sign_in=self.key, code=exc.code, hint=self.remedy)
        raise self._required(failure, exc.code)

    def _winners_token(self, seen: StoredSignIn, now: datetime) -> AccessToken | None:
        """A rotated refresh token is spent once used: if another instance used ours first, take its result.

        Its answer may reach it a moment after ours reached us, so give its write a moment to land.
        """
        for _ in range(RACE_GRACE_POLLS):
            newer = self.current()
            if newer is not None and newer.version != seen.version:
                log.info("oauth2_refresh_lost_race", sign_in=self.key, version=seen.version)
                return usable(newer, now, None)
            time.sleep(RACE_GRACE_POLL_S)
        return None

    def _newer_than(self, seen: StoredSignIn, now: datetime) -> AccessToken:
        newer = self.current()
        token = usable(newer, now, None) if newer is not None else None
        if token is None:
            raise TransientError(f"{self.label}: the sign-in changed while refreshing; retrying")
        return token

    def _required(self, failure: str, code: str | None = None) -> SignInRequired:
        code = code or failure.split(":", 1)[0]
        return SignInRequired(f"{self.label}: {self.provider_name} refused the sign-in ({failure}); {self.remedy}",
                              code=code, remedy=self.remedy)


def usable(seen: StoredSignIn, now: datetime, refused: AccessToken | None) -> AccessToken | None:
    """The stored access token if it is fresh and not the one just refused."""
    if seen.access_token is None or seen.access_expires_at is None:
        return None
    if refused is not None and refused.value == seen.access_token:
        return None
    issued = seen.refreshed_at or seen.signed_in_at
    if now >= seen.access_expires_at - refresh_margin(issued, seen.access_expires_at):
        return None
    return AccessToken(seen.access_token, seen.access_expires_at, seen.account)


def _first_sentence(description: str) -> str:
    # Microsoft appends trace and correlation ids on further lines: useful in its portal, noise here.
    return description.splitlines()[0].strip() if description else ""


class Bearer:
    """A sign-in as the IMAP and SMTP adapters want it: `bearer(refused) -> (token, expires_at)`.

    It remembers the token it handed out, so that "refused" can name the one to replace.
    """

    def __init__(self, sign_in: SignIn, clock: Callable[[], datetime]) -> None:
        self.sign_in = sign_in
        self.clock = clock
        self._given: AccessToken | None = None

    def __repr__(self) -> str:
        return f"Bearer({self.sign_in.key!r})"

    def __call__(self, refused: bool) -> tuple[str, datetime]:
        token = self.sign_in.access_token(self.clock(), self._given if refused else None)
        self._given = token
        return token.value.reveal(), token.expires_at
