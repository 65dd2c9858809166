"""SQL pieces that SQLite and PostgreSQL spell differently: epoch seconds, differences, ranks."""

from sqlalchemy import BigInteger, Float, Integer, case, cast, func
from sqlalchemy.sql import ColumnElement

BUCKET_S = 900  # 15 minutes: every real time zone's offset is a multiple, so buckets fold into local hours


def epoch_s(dialect: str, column) -> ColumnElement:
    """Whole seconds since 1970 of a UTC timestamp column."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def bucket(dialect: str, column) -> ColumnElement:
    """The 15-minute bucket number of a timestamp (epoch seconds // BUCKET_S)."""
    if dialect == "sqlite":
        return epoch_s(dialect, column) // BUCKET_S
    return cast(func.floor(func.extract("epoch", column) / BUCKET_S), BigInteger)


def seconds_between(dialect: str, start, end) -> ColumnElement:
    """`end - start` in seconds, rounded to the second."""
    if dialect == "sqlite":
        return func.round((func.julianday(end) - func.julianday(start)) * 86400.0)
    return func.round(cast(func.extract("epoch", end - start), Float))


def nearest_rank(count: ColumnElement, percent: int) -> ColumnElement:
    """ceil(count * percent / 100) in integers: the nearest-rank position, never past the last value."""
    return (count * percent + 99) // 100


def value_at_rank(rank, count, value, percent: int) -> ColumnElement:
    """Aggregate picking the value whose row number is the nearest rank of `percent`."""
    return func.max(case((rank == nearest_rank(count, percent), value)))


def dialect_of(session) -> str:
    """'sqlite' or 'postgresql'."""
    return session.get_bind().dialect.name

