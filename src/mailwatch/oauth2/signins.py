"""Which OAuth2 sign-ins the configuration names, and what to run when one needs a person."""

from collections.abc import Callable
from datetime import datetime

from mailwatch.config import MailboxSettings, Settings
from mailwatch.oauth2.store import TokenStore
from mailwatch.oauth2.tokens import SignIn

# The remedy of an app-only sign-in: no one can log in for it.
APP_ONLY_REMEDY = "check the app registration's client secret and permissions, then `systemctl reload mailwatch`"


def _remedy(settings, command: str) -> str:
    return APP_ONLY_REMEDY if settings.flow == "client_credentials" else f"run `{command}`"


def imap_sign_in(mailbox: MailboxSettings, store: TokenStore) -> SignIn | None:
    """The sign-in of a mailbox with auth = "oauth2", else None."""
    oauth2 = mailbox.imap.oauth2
    if mailbox.imap.auth != "oauth2" or oauth2 is None:
        return None
    return SignIn(f"mailbox:{mailbox.name}", f"mailbox {mailbox.name}", oauth2, store,
                  _remedy(oauth2, f"mailwatch login {mailbox.name}"))


def smtp_sign_in(settings: Settings, store: TokenStore) -> SignIn | None:
    """The SMTP sign-in: its own, or the mailbox's it reuses; None without auth = "oauth2"."""
    smtp = settings.smtp
    if smtp is None or smtp.auth != "oauth2" or smtp.oauth2 is None:
        return None
    if smtp.oauth2.mailbox is not None:
        return imap_sign_in(settings.mailbox(smtp.oauth2.mailbox), store)
    return SignIn("smtp", "smtp", smtp.oauth2, store, _remedy(smtp.oauth2, "mailwatch login --smtp"))


def all_sign_ins(settings: Settings, store: TokenStore) -> list[SignIn]:
    """Every configured sign-in once (SMTP's last, unless it reuses a mailbox's)."""
    found = [imap_sign_in(mailbox, store) for mailbox in settings.mailboxes]
    found.append(smtp_sign_in(settings, store))
    unique: dict[str, SignIn] = {}
    for sign_in in found:
        if sign_in is not None:
            unique.setdefault(sign_in.key, sign_in)
    return list(unique.values())


def describe(sign_in: SignIn, now: datetime, show_time: Callable[[datetime], str]) -> tuple[bool, str]:
    """(usable, words for people): who is signed in and since when, or what to run."""
    seen = sign_in.current()
    if seen is None:
        if sign_in.app_only:
            return True, f"app-only ({sign_in.provider_name}), no token fetched yet"
        return False, f"not signed in; {sign_in.remedy}"
    if seen.failure:
        return False, f"sign-in failed {show_time(seen.failed_at or now)}: {seen.failure}; {sign_in.remedy}"
    who = seen.account or "(the provider did not say who)"
    refreshed = show_time(seen.refreshed_at or seen.signed_in_at)
    text = f"signed in as {who}, refreshed {refreshed}"
    if seen.access_expires_at is not None:
        text += f", access token valid until {show_time(seen.access_expires_at)}"
    if not sign_in.app_only and seen.refresh_token is None:
        return False, text + f", but no refresh token is stored; {sign_in.remedy}"
    return True, text
