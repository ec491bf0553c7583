"""Alembic environment: runs on the connection ``app.warehouse.engine`` hands in."""

from __future__ import annotations

from alembic import context

from app.warehouse.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `ticketflow db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # our SQLite connections BEGIN explicitly (app.warehouse.engine), so DDL is transactional
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
