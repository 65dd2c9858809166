"""`mailwatch login`: the device authorization grant (RFC 8628), from user code to stored tokens."""

from collections.abc import Callable
from datetime import datetime

import structlog

from mailwatch.errors import MailwatchError, SignInRequired
from mailwatch.oauth2.client import DeviceCode, ProviderError, TokenGrant
from mailwatch.oauth2.tokens import SignIn

log = structlog.get_logger(__name__)

MIN_POLL_S = 0.1  # never spin, whatever interval a server names
SLOW_DOWN_S = 5.0  # RFC 8628, section 3.5: each slow_down adds five seconds
# What the person did at the verification page, in each provider's words.
_DENIED = frozenset({"access_denied", "authorization_declined"})
_EXPIRED = frozenset({"expired_token", "code_expired"})
_PENDING = "authorization_pending"


class DeviceFlowEnded(MailwatchError):
    """The sign-in did not happen: `outcome` is "denied" or "expired"."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        super().__init__(message)


def device_login(sign_in: SignIn, show: Callable[[DeviceCode], None], clock: Callable[[], datetime],
                 sleep: Callable[[float], None]) -> TokenGrant:
    """Show the code, poll until the person approved, store the tokens and return them."""
    try:
        device = sign_in.client.start_device_flow(clock())
    except ProviderError as exc:
        raise _refused(sign_in, exc) from None
    show(device)
    grant = _poll(sign_in, device, clock, sleep)
    now = clock()
    sign_in.store.signed_in(sign_in.key, sign_in.identity, grant, now)
    log.info("oauth2_signed_in", sign_in=sign_in.key, account=grant.account,
             expires_at=grant.expires_at.isoformat(), refresh_token=grant.refresh_token is not None)
    return grant


def _poll(sign_in: SignIn, device: DeviceCode, clock: Callable[[], datetime],
          sleep: Callable[[float], None]) -> TokenGrant:
    interval_s = max(device.interval_s, MIN_POLL_S)
    while True:
        sleep(interval_s)
        if clock() >= device.expires_at:
            raise DeviceFlowEnded("expired", f"{sign_in.label}: the code {device.user_code} expired before "
                                             "anyone signed in; run the command again")
        try:
            return sign_in.client.poll_device_flow(device, clock())
        except ProviderError as exc:
            if exc.error == _PENDING:
                continue
            if exc.error == "slow_down":
                interval_s += SLOW_DOWN_S
                continue
            if exc.error in _DENIED:
                raise DeviceFlowEnded("denied", f"{sign_in.label}: the sign-in was declined ({exc.code})") from None
            if exc.error in _EXPIRED:
                raise DeviceFlowEnded("expired", f"{sign_in.label}: the code {device.user_code} expired "
                                                 f"({exc.code}); run the command again") from None
            raise _refused(sign_in, exc) from None


def _refused(sign_in: SignIn, exc: ProviderError) -> SignInRequired:
    detail = f"{exc.code}: {exc.description.splitlines()[0]}" if exc.description else exc.code
    return SignInRequired(f"{sign_in.label}: {sign_in.provider_name} refused the sign-in ({detail})",
                          code=exc.code, remedy=sign_in.remedy)
