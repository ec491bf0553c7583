"""The alerts API: episodes (read scope), webhooks, deliveries and redelivery (admin scope)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.alert_settings import AlertRuleSettings, AlertSettings, WebhookSettings
from app.delivery import deliver_due, make_client
from app.outbox import evaluate_alerts
from app.warehouse import make_engine
from tests.app.test_api_support import ADMIN, BOTH, READ, client_for, key_env, settings_for
from tests.app.test_delivery import _conditions
from tests.fakes.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()
SLACK_URL = "https://hooks.slack.example/services/T000/B000/very-secret-token"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    key_env(monkeypatch)
    monkeypatch.setenv("TF_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("TF_TEST_SLACK_URL", SLACK_URL)
    receiver = Receiver(secret=SECRET, mode="status:500").start()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    alerts = AlertSettings(
        webhooks=[
            WebhookSettings(name="ops", url=receiver.url, secret_env="TF_TEST_HOOK_SECRET"),
            WebhookSettings(name="chat", format="slack", url_env="TF_TEST_SLACK_URL"),
        ],
        rules=[AlertRuleSettings(name="desk", conditions=["stale"], webhooks=["ops"])],
        allow_networks=[ipaddress.ip_network("127.0.0.0/8")],
    )
    now = datetime.now(UTC) - timedelta(minutes=5)
    evaluate_alerts(engine, alerts, now=now, conditions=_conditions(range(3)))
    evaluate_alerts(engine, alerts, now=now, conditions=_conditions(range(1, 3)))  # T0 clears
    with make_client(alerts) as http:
        deliver_due(engine, alerts, client=http, now=now)
    settings = settings_for(url).model_copy(update={"alerts": alerts})
    with client_for(settings, engine) as c:
        yield c
    receiver.stop()
    engine.dispose()


def test_episodes_are_listed_and_filtered_with_the_read_scope(client: TestClient) -> None:
    assert client.get("/api/v1/alerts").status_code == 401
    page = client.get("/api/v1/alerts", headers=READ).json()
    assert page["total"] == 3
    open_ = client.get("/api/v1/alerts", params={"state": "open"}, headers=READ).json()
    assert sorted(i["subject"] for i in open_["items"]) == ["T1", "T2"]
    cleared = client.get("/api/v1/alerts", params={"state": "cleared"}, headers=READ).json()
    (item,) = cleared["items"]
    assert item["subject"] == "T0" and item["cleared_at"] and item["rule"] == "desk"
    detail = client.get(f"/api/v1/alerts/{item['id']}", headers=READ).json()
    assert [m["kind"] for m in detail["messages"]] == ["opened", "cleared"]
    assert client.get("/api/v1/alerts/999999", headers=READ).status_code == 404


def test_webhooks_deliveries_and_redelivery_need_the_admin_scope(client: TestClient) -> None:
    assert client.get("/api/v1/alerts/webhooks", headers=READ).status_code == 403
    hooks = {h["name"]: h for h in client.get("/api/v1/alerts/webhooks", headers=ADMIN).json()}
    assert hooks["chat"]["target"] == "https://hooks.slack.example"
    assert hooks["ops"]["consecutive_failures"] == 4 and hooks["ops"]["failing_since"]
    assert hooks["ops"]["messages"] == {"pending": 4} and not hooks["ops"]["disabled"]
    deliveries = client.get("/api/v1/alerts/webhooks/ops/deliveries", headers=ADMIN).json()
    assert deliveries["total"] == 4
    log = deliveries["items"][0]["attempt_log"]
    assert [(a["outcome"], a["status_code"]) for a in log] == [("http_error", 500)]
    assert log[0]["response_body"] == "receiver says no"
    assert client.get("/api/v1/alerts/webhooks/nope/deliveries", headers=ADMIN).status_code == 404
    mid = deliveries["items"][0]["message_id"]
    pending = client.post(
        "/api/v1/alerts/webhooks/ops/redeliver", json={"message_ids": [mid]}, headers=ADMIN
    )
    assert pending.json() == {"queued": 0}  # still pending: nothing to requeue
    again = client.post("/api/v1/alerts/webhooks/ops/redeliver", json={}, headers=BOTH)
    assert again.status_code == 200 and again.json() == {"queued": 0}
    assert (
        client.post("/api/v1/alerts/webhooks/ops/redeliver", json={}, headers=READ).status_code
        == 403
    )
    enabled = client.post("/api/v1/alerts/webhooks/ops/enable", headers=ADMIN)
    assert enabled.json() == {"enabled": False}  # it was not disabled


def test_no_webhook_secret_or_secret_url_in_any_answer(client: TestClient) -> None:
    bodies = [
        client.get(path, headers=BOTH).text
        for path in (
            "/api/v1/alerts",
            "/api/v1/alerts/webhooks",
            "/api/v1/alerts/webhooks/ops/deliveries",
            "/api/v1/alerts/webhooks/chat/deliveries",
            "/api/v1/openapi.json",
        )
    ]
    for body in bodies:
        assert SECRET not in body and "very-secret-token" not in body
