"""The token store: OAuth2 sign-ins in the database, so that every instance shares them.

Each write is its own short transaction (never held open across an HTTP request).
A refresh writes with compare-and-set on `version`: if another instance refreshed
meanwhile, its newer tokens stay and the caller uses them instead.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from mailwatch.config.secrets import Secret
from mailwatch.db.engine import Database
from mailwatch.db.models import OAuth2Token
from mailwatch.oauth2.client import TokenGrant


@dataclass(frozen=True)
class StoredSignIn:
    """A snapshot of one row; tokens as Secrets so that nothing prints them."""

    key: str
    version: int
    provider: str
    client_id: str
    flow: str
    account: str
    refresh_token: Secret | None
    access_token: Secret | None
    access_expires_at: datetime | None
    signed_in_at: datetime
    refreshed_at: datetime | None
    failed_at: datetime | None
    failure: str | None


def _snapshot(row: OAuth2Token) -> StoredSignIn:
    return StoredSignIn(
        key=row.key, version=row.version, provider=row.provider, client_id=row.client_id, flow=row.flow,
        account=row.account,
        refresh_token=Secret(row.refresh_token) if row.refresh_token else None,
        access_token=Secret(row.access_token) if row.access_token else None,
        access_expires_at=row.access_expires_at, signed_in_at=row.signed_in_at,
        refreshed_at=row.refreshed_at, failed_at=row.failed_at, failure=row.failure,
    )


class TokenStore:
    """Reads and writes oauth2_tokens rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, key: str) -> StoredSignIn | None:
        with self.db.session() as session:
            row = session.get(OAuth2Token, key)
            return _snapshot(row) if row is not None else None

    def all(self) -> list[StoredSignIn]:
        with self.db.session() as session:
            return [_snapshot(row) for row in session.scalars(select(OAuth2Token).order_by(OAuth2Token.key))]

    def signed_in(self, key: str, identity: tuple[str, str, str], grant: TokenGrant, now: datetime) -> None:
        """A new sign-in (login, or an app-only token): replaces whatever was there, and any failure."""
        provider, client_id, flow = identity
        with self.db.session() as session:
            row = session.get(OAuth2Token, key, with_for_update=True)
            if row is None:
                row = OAuth2Token(key=key, version=0)
                session.add(row)
            row.version += 1
            row.provider, row.client_id, row.flow = provider, client_id, flow
            row.signed_in_at, row.refreshed_at = now, now
            row.failed_at, row.failure = None, None
            _put_grant(row, grant)

    def refreshed(self, seen: StoredSignIn, grant: TokenGrant, now: datetime) -> bool:
        """Store a refresh's tokens if the row is still at `seen.version`; False if another instance won."""
        # Google keeps the refresh token and sends none back; Microsoft rotates it.
        refresh = grant.refresh_token or seen.refresh_token
        values = {
            "version": seen.version + 1,
            "refresh_token": refresh.reveal() if refresh else None,
            "access_token": grant.access_token.reveal(),
            "access_expires_at": grant.expires_at,
            "refreshed_at": now,
            "failed_at": None,
            "failure": None,
        }
        if grant.account:
            values["account"] = grant.account
        statement = (update(OAuth2Token)
                     .where(OAuth2Token.key == seen.key, OAuth2Token.version == seen.version)
                     .values(**values))
        with self.db.session() as session:
            return session.execute(statement).rowcount == 1

    def failed(self, seen: StoredSignIn, failure: str, now: datetime) -> None:
        """Remember why the sign-in stopped working, unless a newer sign-in replaced it meanwhile."""
        statement = (update(OAuth2Token)
                     .where(OAuth2Token.key == seen.key, OAuth2Token.version == seen.version)
                     .values(failed_at=now, failure=failure[:500]))
        with self.db.session() as session:
            session.execute(statement)


def _put_grant(row: OAuth2Token, grant: TokenGrant) -> None:
    row.refresh_token = grant.refresh_token.reveal() if grant.refresh_token else None
    row.access_token = grant.access_token.reveal()
    row.access_expires_at = grant.expires_at
    row.account = grant.account or row.account or ""
    row.scopes = grant.scopes
