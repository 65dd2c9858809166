"""SQL pieces that SQLite and PostgreSQL spell differently: time buckets, differences, ranks."""

from sqlalchemy import BigInteger, Float, Integer, case, cast, func, literal_column
from sqlalchemy.sql import ColumnElement

BUCKET_S = 900  # 15 minutes: every real time zone's offset is a multiple, so buckets fold into local hours
# SQLite: julianday() is the cheapest date function; day 2440587.5 is 1970-01-01, 96 buckets a day.
_JULIAN_EPOCH_BUCKETS = 234_296_400  # 2440587.5 * 96
_BOUNDARY_NUDGE = 1e-6  # a bucket's first instant must not round down into the one before (< 1 ms)


def bucket(dialect: str, column) -> ColumnElement:
    """The 15-minute bucket number of a timestamp (epoch seconds // BUCKET_S)."""
    if dialect == "sqlite":
        # Constants inline, not bound: GROUP BY then repeats the very same expression and it is computed once.
        per_day = literal_column(str(86400 // BUCKET_S))
        buckets = cast(func.julianday(column) * per_day + literal_column(repr(_BOUNDARY_NUDGE)), Integer)
        return buckets - literal_column(str(_JULIAN_EPOCH_BUCKETS))
    return cast(func.floor(func.extract("epoch", column) / literal_column(str(BUCKET_S))), BigInteger)


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

