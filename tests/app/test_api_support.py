"""Builders the API, security and chart tests share: a small warehouse, keys, an app, a client.

(No tests here; the module name keeps it among the API test files.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from app.settings import Settings, load_settings
from app.warehouse import insert_events, make_engine, save_sync_state, upsert_tickets
from connectors.base import (
    EventField,
    EventOrigin,
    EventRecord,
    LifecycleState,
    TicketRecord,
    events_frame,
    tickets_frame,
)

READ_KEY = "read-key-" + "r" * 40
ADMIN_KEY = "admin-key-" + "a" * 40
BOTH_KEY = "both-key-" + "b" * 40
EMBED_KEY = "embed-signing-key-" + "e" * 40
SECRETS = (READ_KEY, ADMIN_KEY, BOTH_KEY, EMBED_KEY)
# relative to the real clock: the app computes analytics for the current instant
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
XSS_TITLE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_TEST_READ_KEY", READ_KEY)
    monkeypatch.setenv("TF_TEST_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("TF_TEST_BOTH_KEY", BOTH_KEY)
    monkeypatch.setenv("TF_TEST_EMBED_KEY", EMBED_KEY)


def settings_for(url: str, **api: Any) -> Settings:
    """Settings with a read key, an admin key, a key with both scopes and an embed key."""
    block: dict[str, Any] = {
        "keys": [
            {"name": "reader", "scopes": ["read"], "key_env": "TF_TEST_READ_KEY"},
            {"name": "operator", "scopes": ["admin"], "key_env": "TF_TEST_ADMIN_KEY"},
            {"name": "both", "scopes": ["read", "admin"], "key_env": "TF_TEST_BOTH_KEY"},
        ],
        "embed_key_env": "TF_TEST_EMBED_KEY",
        "cache_seconds": 300,
        "change_check_seconds": 0,
    }
    block.update(api)
    return load_settings(None, warehouse={"url": url}, api=block)


def _ticket(n: int, **overrides: Any) -> TicketRecord:
    created = NOW - timedelta(days=30 - n)
    values: dict[str, Any] = {
        "source": "desk",
        "external_id": f"T{n}",
        "number": f"INC{n:04d}",
        "title": f"Printer {n} jammed",
        "state": LifecycleState.IN_PROGRESS,
        "raw_status": "In progress",
        "created_at": created,
        "updated_at": created + timedelta(hours=5),
        "priority": 1 + n % 4,
        "priority_raw": f"P{1 + n % 4}",
        "team": ("Service Desk", "Network", "Workplace")[n % 3],
        "assignee": ("ann", "bob", "cem", None)[n % 4],
        "requester": f"user{n}@example.org",
        "category": "hardware",
        "url": f"https://desk.example.org/ticket/T{n}",
        "raw": {"secret_field": "vendor payload"},
    }
    values.update(overrides)
    return TicketRecord(**values)


def sample_tickets() -> list[TicketRecord]:
    """20 tickets in two sources, three teams, open and closed, one with a hostile title."""
    tickets = [_ticket(n) for n in range(1, 16)]
    for n in (3, 6, 9, 12):
        resolved = NOW - timedelta(days=30 - n) + timedelta(days=2)
        tickets[n - 1] = _ticket(
            n,
            state=LifecycleState.RESOLVED,
            raw_status="Resolved",
            resolved_at=resolved,
            updated_at=resolved,
        )
    tickets[4] = _ticket(5, title=XSS_TITLE, url="javascript:alert(3)")
    tickets[6] = _ticket(7, title='=HYPERLINK("http://evil")', state=LifecycleState.NEW)
    tickets += [
        _ticket(
            n,
            source="ops",
            external_id=f"OPS-{n}",
            number=f"OPS-{n}",
            state=LifecycleState.WAITING_CUSTOMER,
            team="Network",
        )
        for n in range(16, 21)
    ]
    return tickets


def sample_events() -> list[EventRecord]:
    """A short history for desk/T1 and desk/T3 (given out of order on purpose)."""
    t0 = NOW - timedelta(days=29)

    def ev(ticket: str, hours: float, field: EventField, old: str | None, new: str) -> EventRecord:
        return EventRecord(
            source="desk",
            ticket_id=ticket,
            occurred_at=t0 + timedelta(hours=hours),
            field=field,
            old_value=old,
            new_value=new,
            origin=EventOrigin.HISTORY,
            actor="ann",
        )

    return [
        ev("T1", 3, EventField.STATE, "new", "in_progress"),
        ev("T1", 0, EventField.TEAM, None, "Network"),
        ev("T1", 2, EventField.ASSIGNEE, None, "ann"),
        ev("T3", 1, EventField.STATE, "new", "in_progress"),
        ev("T3", 50, EventField.STATE, "in_progress", "resolved"),
    ]


def fill_warehouse(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_tickets(conn, tickets_frame(sample_tickets()), now=NOW)
        insert_events(conn, events_frame(sample_events()), now=NOW)
        save_sync_state(conn, source="desk", kind="topdesk", now=NOW, tickets_seen=15)


def warehouse(url: str) -> Engine:
    engine = make_engine(url)
    fill_warehouse(engine)
    return engine


@contextmanager
def client_for(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        yield client


def app_for(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings, engine=engine)


READ = {"X-API-Key": READ_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
BOTH = {"X-API-Key": BOTH_KEY}
