"""Shared fixtures: a fresh warehouse on SQLite and on PostgreSQL, and the real event logs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from app.warehouse import make_engine

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TICKETFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
PG_URL = os.environ.get(
    "TICKETFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

_pg_reason: list[str] = []


def _pg_unavailable() -> str | None:
    """Why PostgreSQL tests must skip, or None when the server answers (checked once)."""
    if not _pg_reason:
        try:
            probe = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
            _pg_reason.append("")
        except Exception as e:  # any failure to connect means: no server here
            _pg_reason.append(f"no PostgreSQL server answers at {PG_URL}: {type(e).__name__}")
    return _pg_reason[0] or None


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped after the test."""
    reason = _pg_unavailable()
    if reason:
        pytest.skip(reason)
    schema = f"tf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """A URL of an empty warehouse, once on SQLite and once on PostgreSQL."""
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    """A migrated, empty warehouse engine on each backend."""
    eng = make_engine(warehouse_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real event logs beside the project; skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real event logs not found at {SHARED_DATA} (set TICKETFLOW_SHARED_DATA)")
    return SHARED_DATA
