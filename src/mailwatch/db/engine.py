"""Engine and sessions, SQLite pragmas, and the schema's version check and upgrade."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailwatch.errors import SchemaError, TransientError
from mailwatch.resources import packaged_dir

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

log = structlog.get_logger(__name__)

SQLITE_MODE = 0o600  # a new database file: mailwatch's user only
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers never block the writer
    "PRAGMA synchronous=NORMAL",  # durable at each checkpoint; safe with WAL
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",  # wait for `mailwatch threads` etc. instead of failing
    "PRAGMA journal_size_limit=1048576",  # a checkpointed WAL shrinks back to 1 MiB: room on a small disk
)
# The newest migration. The stored revision is read with one SELECT, so a start on a
# database already at this schema (nearly every start) never imports alembic, a tenth
# of a second of every `mailwatch poll`: the module's alembic imports are local for that
# reason. tests/integration/test_schema.py holds it equal to alembic's own head.
SCHEMA_HEAD = "0010"
VERSION_TABLE = "alembic_version"  # alembic's default: where it records the revision
# SQLite's primary result codes that mean the disk, not the statement, failed.
_DISK_FAULTS = ("SQLITE_FULL", "SQLITE_IOERR")


def _apply_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _is_disk_fault(exc: OperationalError) -> bool:
    name = getattr(exc.orig, "sqlite_errorname", "") or ""
    return name.startswith(_DISK_FAULTS) or "disk is full" in str(exc.orig) or "disk I/O error" in str(exc.orig)


def create_db_engine(url: str) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL with mailwatch's settings."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _apply_sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _alembic_config(engine_connection) -> "AlembicConfig":
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(packaged_dir("migrations")))
    config.attributes["connection"] = engine_connection
    return config


def _scripts(engine_connection) -> "ScriptDirectory":
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine_connection))


def create_private_file(path: Path) -> None:
    """Create an empty database file 0600 unless it exists: it holds every customer's mail metadata.

    SQLite would create it with the umask's mode (often 0644, readable by every local user);
    its -wal and -shm files copy the database file's mode.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, SQLITE_MODE))
    except FileExistsError:
        pass


class Database:
    """The database mailwatch logs to: sessions plus schema management."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            if _is_disk_fault(exc):
                self.checkpoint()  # give the disk back what the WAL holds, so the retry can fit
            raise

    def checkpoint(self) -> bool:
        """Copy the SQLite WAL into the database and truncate it; False if that could not be done now."""
        if self.engine.dialect.name != "sqlite":
            return True
        try:
            with self.engine.connect() as connection:
                busy, wal_pages, moved = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        except SQLAlchemyError as exc:
            log.warning("wal_checkpoint_failed", error=str(getattr(exc, "orig", exc))[:200])
            return False
        if busy:
            log.info("wal_checkpoint_busy", wal_pages=wal_pages, moved=moved)  # a reader: next time
        return not busy

    def _make_sqlite_folder(self) -> None:
        # SQLite creates the file but not its folder; done on first use, not at import.
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            create_private_file(Path(database))

    def schema_revision(self) -> str | None:
        """The revision the database is at, or None for an empty database; read without alembic."""
        self._make_sqlite_folder()
        with self.engine.connect() as connection:
            if not connection.dialect.has_table(connection, VERSION_TABLE):
                return None
            stored = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(stored) > 1:
            raise SchemaError(f"the database records several schema revisions ({', '.join(sorted(stored))}); "
                              "mailwatch's migrations are one line: point it at another database")
        return stored[0] if stored else None

    def head_revision(self) -> str:
        with self.engine.connect() as connection:
            return _scripts(connection).get_current_head()

    def upgrade(self) -> None:
        """Apply every migration up to this version's head."""
        from alembic import command

        self._make_sqlite_folder()
        with self.engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "head")

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; refuse one that does not match."""
        current = self.schema_revision()
        if current == SCHEMA_HEAD:
            return  # nearly every start: alembic is not even imported
        head = self.head_revision()
        if current == head:
            return
        if current is None:
            log.info("schema_created", revision=head)
            self.upgrade()
            return
        with self.engine.connect() as connection:
            known = {rev.revision for rev in _scripts(connection).walk_revisions()}
        if current not in known:
            raise SchemaError(
                f"the database schema ({current}) is newer than this mailwatch knows "
                f"(head {head}); upgrade mailwatch or point it at another database"
            )
        raise SchemaError(
            f"the database schema ({current}) is older than this mailwatch ({head}); "
            "run `mailwatch db upgrade` first"
        )

    def ping(self) -> None:
        """Reach the database, or raise TransientError saying why not."""
        self._make_sqlite_folder()
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            raise TransientError(f"database unreachable: {exc.__class__.__name__}") from exc

    def dispose(self) -> None:
        self.engine.dispose()
