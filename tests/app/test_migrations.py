"""The migrations create exactly the tables the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from app.warehouse import current_revision, head_revision, make_engine, upgrade
from app.warehouse.schema import metadata


def test_migrated_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_upgrade_is_repeatable(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_explicit_upgrade_of_an_empty_database(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, ensure=False)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
