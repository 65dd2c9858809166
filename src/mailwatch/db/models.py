"""The tables: mailbox sync state, the message log, threads and the outbox."""

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from mailwatch.sla import ThreadStatus, snoozed_on_clock

# Constraint names are spelled out so that Alembic batch mode on SQLite can find them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: mailwatch stores aware UTC times only")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EnumText(TypeDecorator[StrEnum]):
    """A StrEnum stored as its value (a driver may otherwise dump an enum by its name)."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: StrEnum | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


class OutboxKind(StrEnum):
    """What an outbox mail is."""

    ACK = "ack"
    ESCALATION = "escalation"
    ALERT = "alert"
    REPORT = "report"  # the weekly report email to team leads


class OutboxStatus(StrEnum):
    """Where an outbox mail stands."""

    PENDING = "pending"  # due at next_attempt_at
    HELD = "held"  # an ack over the hourly cap or its domain's share: waits for budget
    EXPIRED = "expired"  # a held ack that waited past acknowledgment.max_age: never sent
    SENT = "sent"  # the SMTP server accepted it
    FAILED = "failed"  # given up: a 5xx answer or give_up_after passed


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FolderState(Base):
    """How far one folder of one mailbox has been read."""

    __tablename__ = "folder_state"
    __table_args__ = (UniqueConstraint("mailbox", "folder"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    highest_modseq: Mapped[int | None] = mapped_column(BigInteger)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Thread(Base):
    """A conversation with one customer; its id is the ticket number."""

    __tablename__ = "threads"
    __table_args__ = (
        Index(
            "ix_threads_open_deadline",
            "deadline_at",
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        # The sweep reads only threads whose next step is due: an index range, not a scan.
        Index(
            "ix_threads_open_next_escalation",
            "next_escalation_at",
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        # Reports select threads by when they started.
        Index("ix_threads_first_received_at", "first_received_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text, default="")
    customer_address: Mapped[str] = mapped_column(String(320), index=True)
    customer_name: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ThreadStatus] = mapped_column(EnumText(ThreadStatus, 16), default=ThreadStatus.OPEN)
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_customer_at: Mapped[datetime] = mapped_column(UTCDateTime)
    clock: Mapped[int] = mapped_column(Integer, default=1)
    clock_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_via: Mapped[str | None] = mapped_column(String(32))
    answered_by: Mapped[str | None] = mapped_column(String(320))
    answered_auth: Mapped[str | None] = mapped_column(String(32))  # how the answer was authenticated
    # The first answer of clock 1, kept when the thread is reopened: the report's first response.
    first_answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_answered_via: Mapped[str | None] = mapped_column(String(32))
    first_answered_by: Mapped[str | None] = mapped_column(String(320))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # "I'll take it" holds for one clock: a new customer message starts a clock nobody has taken.
    taken_by: Mapped[str | None] = mapped_column(String(320))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    taken_clock: Mapped[int | None] = mapped_column(Integer)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_clock: Mapped[int | None] = mapped_column(Integer)
    # Seconds the running clock's deadline and steps were moved by snoozes; clock_started_at stays put.
    snooze_shift_s: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    def taken_now(self) -> tuple[str, datetime] | None:
        """Who took the running clock and when, if anyone did."""
        if self.taken_clock != self.clock or self.taken_by is None or self.taken_at is None:
            return None
        return self.taken_by, self.taken_at

    def snoozed_now(self) -> datetime | None:
        """Until when the running clock is snoozed, if it is."""
        return snoozed_on_clock(self)


class Message(Base):
    """One message as it sits in a watched folder, logged exactly once."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
        # The same mail seen again under a new UIDVALIDITY is recognised by these.
        UniqueConstraint("mailbox", "folder", "message_id", "received_at"),
        # "Is this Message-ID already in the thread?" in one descent, not a read of the thread.
        Index("ix_messages_thread_id_message_id", "thread_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(500), index=True)
    message_id_synthesised: Mapped[bool] = mapped_column(Boolean, default=False)
    from_address: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(Text, default="")
    from_all: Mapped[str] = mapped_column(Text, default="")
    reply_to: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[str] = mapped_column(Text, default="")
    cc_addrs: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    date_header: Mapped[str | None] = mapped_column(Text)
    date_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str] = mapped_column(Text, default="")
    flags: Mapped[str] = mapped_column(Text, default="")
    snippet: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(32))
    category_reason: Mapped[str] = mapped_column(Text, default="")
    ack_outcome: Mapped[str | None] = mapped_column(String(40))
    ack_reason: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"), index=True)
    thread: Mapped["Thread | None"] = relationship(lazy="raise")  # set before its ticket number exists
    parse_error: Mapped[str | None] = mapped_column(Text)
    header_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))



class OutboxMail(Base):
    """One email to send, queued in the same transaction as what caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[OutboxKind] = mapped_column(EnumText(OutboxKind, 16))
    # "ack:1042" can exist only once, on any instance; escalations are kept single by
    # the escalations table instead, and alerts by their incident.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(255))
    recipient: Mapped[str] = mapped_column(String(320))
    # The recipient normalised for rate limits (case, "+detail" dropped); acks only.
    recipient_key: Mapped[str | None] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    # An ack to unauthenticated mail: its source domain, held to acknowledgment.max_share_per_domain.
    source_domain: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[bytes] = mapped_column(LargeBinary)  # the exact bytes to send
    status: Mapped[OutboxStatus] = mapped_column(EnumText(OutboxStatus, 16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # whose claim: renewing keeps it
    # Written before the SMTP transaction: after a crash, only such a row may be delivered already.
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # queued to send (a held ack: held since)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Reports count a period's messages by time, kind and mailbox, and acks by outcome, from this index alone.
Index("ix_messages_report", Message.received_at, Message.category, Message.mailbox, Message.folder,
      Message.ack_outcome)
Index("ix_outbox_kind_recipient_created", OutboxMail.kind, OutboxMail.recipient, OutboxMail.created_at)
Index("ix_outbox_kind_created", OutboxMail.kind, OutboxMail.created_at)  # the hourly cap's count
# The per-sender limit and a domain's hourly share: index ranges, not scans, even in a flood.
Index("ix_outbox_kind_recipient_key_created", OutboxMail.kind, OutboxMail.recipient_key, OutboxMail.created_at)
Index("ix_outbox_kind_source_domain_status", OutboxMail.kind, OutboxMail.source_domain, OutboxMail.status)
Index("ix_outbox_kind_status_created", OutboxMail.kind, OutboxMail.status, OutboxMail.created_at)


class Escalation(Base):
    """One escalation step sent for one thread and clock: never twice, on any instance."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("thread_id", "clock", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"))
    clock: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ThreadAction(Base):
    """One action a person took on a thread (from a link or the CLI), kept for the record."""

    __tablename__ = "thread_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"), index=True)
    clock: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ServiceState(Base):
    """Small facts the service keeps between runs, e.g. the escalation steps in force."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class OAuth2Token(Base):
    """One OAuth2 sign-in's tokens, shared by every instance using this database.

    `version` grows with each write; a refresh writes only if the version is still the
    one it read (compare-and-set), so two instances never overwrite a newer token.
    """

    __tablename__ = "oauth2_tokens"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # "mailbox:support", "smtp"
    version: Mapped[int] = mapped_column(Integer, default=1)
    provider: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(255))
    flow: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(320), default="")  # who signed in, for people
    scopes: Mapped[str] = mapped_column(Text, default="")
    refresh_token: Mapped[str | None] = mapped_column(Text)
    access_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signed_in_at: Mapped[datetime] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(Text)  # the provider's error code and words, never a token

    def __repr__(self) -> str:
        return f"OAuth2Token({self.key!r}, version={self.version}, account={self.account!r})"
