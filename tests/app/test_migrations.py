"""The migrations create exactly the tables the code declares, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from app.warehouse import current_revision, head_revision, make_engine, upgrade
from app.warehouse.engine import downgrade
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


def _check_definitions(engine: Engine) -> dict[str, str]:
    """The CHECK constraints of tickets and events as the database states them."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE name IN ('tickets', 'events')"
            )
            return {str(name): str(sql) for name, sql in rows}
        rows = conn.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'c' AND conrelid IN ('tickets'::regclass, 'events'::regclass)"
        )
        return {str(name): str(sql) for name, sql in rows}


def _value_lists(engine: Engine) -> bool:
    """Whether a CHECK tests a list of values (IN; PostgreSQL shows it as = ANY (ARRAY[...]))."""
    return any(" IN (" in d or "ANY (" in d for d in _check_definitions(engine).values())


def _ticket_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT external_id FROM tickets ORDER BY external_id")
        return [str(r[0]) for r in rows]


def _event_ids(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, ticket_id FROM events ORDER BY id")
        return [(int(r[0]), str(r[1])) for r in rows]


def test_0003_rewrites_the_checks_and_keeps_every_row(warehouse_url: str) -> None:
    engine = make_engine(warehouse_url, ensure=False)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            for ext in ("a", "b"):
                conn.exec_driver_sql(
                    "INSERT INTO tickets (source, external_id, type, state, raw, loaded_at) "
                    f"VALUES ('desk', '{ext}', 'incident', 'new', '{{}}', {_LOADED})"
                )
            for id_, ext, key in ((5, "a", "k1"), (9, "a", "k2"), (12, "b", "k3")):
                conn.exec_driver_sql(
                    "INSERT INTO events (id, source, ticket_id, event_key, occurred_at, seq, "
                    f"field, origin, loaded_at) VALUES ({id_}, 'desk', '{ext}', '{key}', "
                    f"{_LOADED}, 0, 'team', 'history', {_LOADED})"
                )
        assert _value_lists(engine)

        upgrade(engine)
        checks = " ".join(_check_definitions(engine).values())
        assert not _value_lists(engine)
        assert "'waiting_supplier'" in checks and "'internal_update'" in checks
        assert _ticket_ids(engine) == ["a", "b"]
        assert _event_ids(engine) == [(5, "a"), (9, "a"), (12, "b")]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tickets (source, external_id, type, state, raw, loaded_at) "
                f"VALUES ('desk', 'c', 'incident', 'not-a-state', '{{}}', {_LOADED})"
            )
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the foreign key holds
            conn.exec_driver_sql(
                "INSERT INTO events (source, ticket_id, event_key, occurred_at, seq, field, "
                f"origin, loaded_at) VALUES ('desk', 'nope', 'k9', {_LOADED}, 0, 'team', "
                f"'history', {_LOADED})"
            )
        with engine.begin() as conn:  # and still cascades
            conn.exec_driver_sql("DELETE FROM tickets WHERE external_id = 'b'")
        assert _event_ids(engine) == [(5, "a"), (9, "a")]

        downgrade(engine, "0002")
        assert _value_lists(engine)
        assert _ticket_ids(engine) == ["a"]
        assert _event_ids(engine) == [(5, "a"), (9, "a")]
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


_LOADED = "'2026-01-01T00:00:00.000000+00:00'"


def test_0004_adds_deleted_at_and_keeps_every_row(warehouse_url: str) -> None:
    engine = make_engine(warehouse_url, ensure=False)
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tickets (source, external_id, type, state, raw, loaded_at) "
                f"VALUES ('desk', 'a', 'incident', 'new', '{{}}', {_LOADED})"
            )
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT deleted_at FROM tickets").all() == [(None,)]
            conn.exec_driver_sql(f"UPDATE tickets SET deleted_at = {_LOADED}")
        downgrade(engine, "0003")
        assert _ticket_ids(engine) == ["a"]
        with pytest.raises(Exception, match="deleted_at"), engine.connect() as conn:
            conn.exec_driver_sql("SELECT deleted_at FROM tickets")
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _ticket_ids(engine) == ["a"]
    finally:
        engine.dispose()
