"""Engines, transactions and schema migrations for the warehouse."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

from app.errors import WarehouseError

__all__ = [
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "transaction",
    "upgrade",
]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, *, ensure: bool = True) -> Engine:
    """An engine for the warehouse at ``url``; an empty database is migrated on first use.

    Args:
        url: a SQLAlchemy URL, ``sqlite:///path.db`` or ``postgresql+psycopg://...``
            (``postgresql://`` is taken to mean psycopg 3).
        ensure: create the schema in an empty database and refuse an outdated one.

    Raises:
        WarehouseError: the database is outdated, foreign, or cannot be reached.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    if ensure:
        ensure_schema(engine)
    return engine


SQLITE_CACHE_KIB = 65_536
"""page cache per SQLite connection (SQLite's default is 2 MiB; grows only as pages are used)"""
SQLITE_PAGE_SIZE = 65_536
"""page size of a new SQLite warehouse. An existing file keeps the size it was created with; to
convert one, stop ticketflow and run ``PRAGMA page_size=65536; VACUUM INTO 'new.db'`` in the
``sqlite3`` shell, then point ``[warehouse] url`` at the new file."""


def _sqlite_pragmas(engine: Engine) -> None:
    """Real transactions (BEGIN on begin, DDL included), WAL, foreign keys, bulk-write sizing.

    A bulk upsert inserts into the (source, external_id) key index at random places, so every
    batch dirties pages all over that index, and a commit writes each dirty page whole to the
    WAL. With SQLite's default 2 MiB cache nearly every insert re-read an index page from the
    OS; with 4 KiB pages the three ticket indexes split often and every commit wrote many small
    pages. 64 KiB pages (SQLite's largest) and a 64 MiB cache: at 1,000,000 tickets SQLite's
    CPU per ticket is about 40 % below the 4 KiB default, and 64 KiB upserts 13-26 % more
    tickets per second than 16 KiB, with the API's filtered and key lookups unchanged
    (docs/benchmarks.md). Temporary b-trees (sorts, ``IN`` lists) stay in memory.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # before WAL fixes it
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back on any error."""
    with engine.begin() as conn:
        yield conn


def _alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, None when it has none."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)
    log.info("warehouse at revision %s", current_revision(engine))


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to ``revision`` in one transaction."""
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)
    log.info("warehouse at revision %s", current_revision(engine))


def ensure_schema(engine: Engine) -> None:
    """Migrate an empty database; refuse one that is behind or not ours."""
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except Exception as e:  # connection refused, bad credentials, missing driver
        raise WarehouseError(f"cannot open warehouse {engine.url!r}: {e}") from e
    if not tables:
        log.info("empty warehouse: creating the schema")
        upgrade(engine)
        return
    if "alembic_version" not in tables:
        raise WarehouseError(
            f"{engine.url!r} holds tables but no ticketflow schema version; "
            "point [warehouse] url at an empty or ticketflow database"
        )
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise WarehouseError(
            f"warehouse schema is at {current}, this version needs {head}: "
            "run `ticketflow db upgrade`"
        )
