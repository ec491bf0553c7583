"""Delivery: outages with a restart, retry horizon, status handling, claims, slow receivers.

Time is simulated: the worker is called with ``now`` set to the next due attempt, so three days
of retries take a fraction of a second. The receiver is a real HTTP server on loopback (allowed
through ``allow_networks``) that verifies every signature with the official library.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from app.alert_settings import AlertRuleSettings, AlertSettings, WebhookSettings
from app.alerts import CONDITION_COLUMNS
from app.delivery import (
    RetryPolicy,
    _send,
    deliver_due,
    enable_endpoint,
    make_client,
    redeliver,
)
from app.outbox import evaluate_alerts
from app.warehouse import make_engine
from app.warehouse.alerts_schema import AlertAttempt, OutboxMessage, WebhookEndpoint
from tests.fakes.receiver import Receiver

T0 = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """For behaviour that does not depend on the database (HTTP handling)."""
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def receiver(clock: Clock) -> Iterator[Receiver]:
    r = Receiver(secret=SECRET, clock=clock).start()
    yield r
    r.stop()


def _settings(monkeypatch: pytest.MonkeyPatch, *hooks: WebhookSettings, **kw: Any) -> AlertSettings:
    monkeypatch.setenv("TF_TEST_HOOK_SECRET", SECRET)
    names = [h.name for h in hooks]
    rule = AlertRuleSettings(name="r", conditions=["stale"], webhooks=names)
    return AlertSettings(
        webhooks=list(hooks),
        rules=[rule],
        allow_networks=[ipaddress.ip_network("127.0.0.0/8")],
        **kw,
    )


def _hook(url: str, name: str = "hook", **kw: Any) -> WebhookSettings:
    return WebhookSettings(name=name, url=url, secret_env="TF_TEST_HOOK_SECRET", **kw)


def _conditions(subjects: range | list[int]) -> pd.DataFrame:
    rows = [
        {
            **dict.fromkeys(CONDITION_COLUMNS),
            "condition": "stale",
            "source": "desk",
            "subject": f"T{s}",
            "team": "Desk",
            "priority": 3,
            "reason": "old",
        }
        for s in subjects
    ]
    return pd.DataFrame(rows, columns=list(CONDITION_COLUMNS))


def _messages(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(OutboxMessage).order_by(OutboxMessage.id)).all())


def _next_due(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.status == "pending")
        ).scalar()


def _attempts(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(AlertAttempt).order_by(AlertAttempt.id)).all())


def test_retry_schedule_spans_about_three_days_with_backoff_and_jitter() -> None:
    policy = RetryPolicy.from_settings(AlertSettings())
    schedule = policy.schedule(random.Random(1))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(schedule)]
    assert 14 <= len(schedule) <= 20
    assert timedelta(hours=64) <= schedule[-1] <= timedelta(hours=72)
    assert 4 <= gaps[0] <= 6 and gaps[1] > 3 * gaps[0] and max(gaps) <= 8 * 3600 * 1.2
    assert schedule != policy.schedule(random.Random(2))  # jittered


def test_long_outage_with_a_restart_delivers_every_alert_exactly_once(
    warehouse_url: str, receiver: Receiver, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Receiver refuses (503, then connection refused) for 60 simulated hours; the service is
    restarted in the middle and raises more alerts meanwhile; nothing is lost or doubled."""
    settings = _settings(monkeypatch, _hook(receiver.url))
    engine = make_engine(warehouse_url)
    client = make_client(settings)
    rng = random.Random(7)
    evaluate_alerts(engine, settings, now=clock.now, conditions=_conditions(range(8)))
    receiver.mode = "status:503"
    outage_ends = T0 + timedelta(hours=60)
    restarted = raised_during_outage = False
    rounds = 0
    while (due := _next_due(engine)) is not None:
        rounds += 1
        assert rounds < 2000
        clock.now = max(clock.now, due)
        if clock.now >= T0 + timedelta(hours=20) and receiver.mode == "status:503":
            receiver.stop()  # now connections are refused
            receiver.mode = "ok"
        if clock.now >= T0 + timedelta(hours=30) and not restarted:
            # the service restarts: new engine, new client, new worker identity
            client.close()
            engine.dispose()
            engine = make_engine(warehouse_url)
            client = make_client(settings)
            restarted = True
        if restarted and not raised_during_outage:
            evaluate_alerts(engine, settings, now=clock.now, conditions=_conditions(range(12)))
            raised_during_outage = True
        if clock.now >= outage_ends and receiver._server is None:
            receiver.start()
        deliver_due(engine, settings, client=client, now=clock.now, worker=f"w{restarted}", rng=rng)
    client.close()
    messages = _messages(engine)
    assert len(messages) == 12 and {m.status for m in messages} == {"delivered"}
    ids = {m.message_id for m in messages}
    assert set(receiver.delivered) == ids
    assert set(receiver.delivered.values()) == {1}  # exactly once per webhook-id
    assert all(r.verified for r in receiver.requests)
    attempts = _attempts(engine)
    outcomes = {a.outcome for a in attempts}
    assert {"http_error", "connect_error", "delivered"} <= outcomes
    first = messages[0]
    tries = [r for r in receiver.requests if r.headers["webhook-id"] == first.message_id]
    assert len(tries) >= 5 and len({r.headers["webhook-timestamp"] for r in tries}) == len(tries)
    assert first.delivered_at >= outage_ends and first.attempts > len(tries)  # refused ones too
    with engine.connect() as conn:
        endpoint = conn.execute(select(WebhookEndpoint)).one()
    assert endpoint.disabled_at is None and endpoint.consecutive_failures == 0
    engine.dispose()


def test_a_crash_after_sending_resends_with_the_same_id(
    engine: Engine, receiver: Receiver, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, _hook(receiver.url))
    evaluate_alerts(engine, settings, now=T0, conditions=_conditions([1]))
    (message,) = _messages(engine)
    with make_client(settings) as client:
        # the worker claims the message and posts it, then dies before recording anything
        from app.delivery import _claim

        (claimed,) = _claim(engine, webhooks=settings.webhooks, now=T0, worker="dead", limit=10)
        assert _send(client, settings.webhooks[0], claimed, now=T0).ok
        assert deliver_due(engine, settings, client=client, now=T0).attempted == 0  # leased
        later = T0 + timedelta(seconds=settings.webhooks[0].timeout_seconds + 61)
        clock.now = later
        assert deliver_due(engine, settings, client=client, now=later).delivered == 1
    assert receiver.ids() == [message.message_id] * 2  # at least once, one id: receiver dedupes
    assert [m.status for m in _messages(engine)] == ["delivered"]


def test_past_the_horizon_messages_fail_the_endpoint_is_disabled_and_replay_works(
    engine: Engine, receiver: Receiver, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, _hook(receiver.url), disable_after_hours=100)
    client = make_client(settings)
    receiver.mode = "status:500"
    for day in range(6):  # a new alert every day, the receiver broken for 6 days
        clock.now = T0 + timedelta(days=day)
        evaluate_alerts(engine, settings, now=clock.now, conditions=_conditions(range(day + 1)))
        while (due := _next_due(engine)) is not None and due <= T0 + timedelta(days=day + 1):
            clock.now = max(clock.now, due)
            if not deliver_due(engine, settings, client=client, now=clock.now).attempted:
                break  # disabled: its messages wait
    messages = _messages(engine)
    failed = [m for m in messages if m.status == "failed"]
    assert failed and all("retries exhausted" in m.last_error for m in failed)
    assert all(m.last_attempt_at - m.created_at <= timedelta(hours=72) for m in failed)
    with engine.connect() as conn:
        endpoint = conn.execute(select(WebhookEndpoint)).one()
    assert endpoint.disabled_at is not None and "every attempt failed" in endpoint.disabled_reason
    pending = [m for m in messages if m.status == "pending"]
    assert pending  # waits for the endpoint
    assert deliver_due(engine, settings, client=client, now=clock.now).attempted == 0
    receiver.mode = "ok"
    assert enable_endpoint(engine, webhook="hook", now=clock.now)
    replayed = redeliver(engine, webhook="hook", now=clock.now, since=T0)
    assert replayed == len(failed)
    deliver_due(engine, settings, client=client, now=clock.now)
    client.close()
    assert {m.status for m in _messages(engine)} == {"delivered"}
    assert set(receiver.delivered) == {m.message_id for m in messages}  # original ids


def test_status_handling_redirect_gone_and_retry_after(
    sqlite_engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Receiver(secret=SECRET, clock=clock).start()
    redirecting = Receiver(secret=SECRET, clock=clock, mode=f"redirect:{target.url}").start()
    gone = Receiver(secret=SECRET, clock=clock, mode="status:410").start()
    busy = Receiver(secret=SECRET, clock=clock, mode="retry_after:429:7200").start()
    hooks = [
        _hook(r.url, name=n) for n, r in (("redirect", redirecting), ("gone", gone), ("busy", busy))
    ]
    settings = _settings(monkeypatch, *hooks)
    evaluate_alerts(sqlite_engine, settings, now=T0, conditions=_conditions(range(2)))
    with make_client(settings) as client:
        stats = deliver_due(sqlite_engine, settings, client=client, now=T0)
    for r in (target, redirecting, gone, busy):
        r.stop()
    assert target.requests == []  # the redirect was not followed
    assert stats.disabled == ["gone"] and len(gone.requests) == 1
    by_hook = {(a.webhook, a.outcome, a.status_code) for a in _attempts(sqlite_engine)}
    assert ("redirect", "redirect", 302) in by_hook and ("busy", "http_error", 429) in by_hook
    busy_next = {m.next_attempt_at for m in _messages(sqlite_engine) if m.webhook == "busy"}
    assert min(busy_next) >= T0 + timedelta(seconds=3600)  # Retry-After honoured, capped at 1 h
    redirect_next = {m.next_attempt_at for m in _messages(sqlite_engine) if m.webhook == "redirect"}
    assert max(redirect_next) <= T0 + timedelta(seconds=7)
    gone_msgs = [m for m in _messages(sqlite_engine) if m.webhook == "gone"]
    assert [m.status for m in gone_msgs] == ["pending", "pending"]


def test_a_hanging_receiver_only_delays_itself(
    sqlite_engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = Receiver(secret=SECRET, clock=clock, mode="hang:4").start()
    fast = [Receiver(secret=SECRET, clock=clock).start() for _ in range(5)]
    hooks = [_hook(slow.url, name="slow", timeout_seconds=1)]
    hooks += [_hook(r.url, name=f"fast{i}") for i, r in enumerate(fast)]
    settings = _settings(monkeypatch, *hooks)
    evaluate_alerts(sqlite_engine, settings, now=T0, conditions=_conditions(range(2)))
    started = time.monotonic()
    with make_client(settings) as client:
        stats = deliver_due(sqlite_engine, settings, client=client, now=T0)
    took = time.monotonic() - started
    for r in (slow, *fast):
        r.stop()
    assert stats.delivered == 10 and stats.failed_attempts == 2
    assert all(len(r.delivered) == 2 for r in fast)
    slow_attempts = [a for a in _attempts(sqlite_engine) if a.webhook == "slow"]
    assert {a.outcome for a in slow_attempts} == {"timeout"}
    assert all(900 <= a.duration_ms < 3500 for a in slow_attempts)
    assert took < 2 * 4  # the slow endpoint's timeouts bound the round, not its hangs


def test_housekeeping_drops_old_attempts_and_finished_messages(
    sqlite_engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.delivery import prune

    settings = _settings(monkeypatch, _hook(receiver.url))
    evaluate_alerts(sqlite_engine, settings, now=T0, conditions=_conditions(range(2)))
    with make_client(settings) as client:
        deliver_due(sqlite_engine, settings, client=client, now=T0)
    evaluate_alerts(sqlite_engine, settings, now=T0, conditions=_conditions(range(3)))
    assert prune(sqlite_engine, now=T0 + timedelta(days=29), keep_days=30) == 0
    assert prune(sqlite_engine, now=T0 + timedelta(days=31), keep_days=30) == 4
    assert [m.status for m in _messages(sqlite_engine)] == ["pending"]
    assert _attempts(sqlite_engine) == []
