"""Alerts: conditions from the analytics, episodes (open, remind, clear, come back), the outbox
written with the evaluation, quiet hours, digests and the message formats."""

from __future__ import annotations

import base64
import json
import random
import threading
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd
import pytest
import standardwebhooks
from sqlalchemy import Engine, func, select

from app.alert_formats import alert_event, render, sign, signature_headers
from app.alert_settings import (
    CONDITIONS,
    AlertRuleSettings,
    AlertSettings,
    DigestSettings,
    QuietHoursSettings,
    WebhookSettings,
)
from app.alerts import (
    CONDITION_COLUMNS,
    Alert,
    EpisodeState,
    build_alerts,
    collect_conditions,
    match_rules,
    quiet_until,
)
from app.outbox import evaluate_alerts, queue_digests
from app.warehouse.alerts_schema import AlertEpisode, OutboxMessage
from tests.analytics.builders import NOW, make_events, make_tickets, states

T0 = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _rule(**kw: Any) -> AlertRuleSettings:
    base: dict[str, Any] = {"name": "r", "conditions": ["stale"], "webhooks": ["hook"]}
    return AlertRuleSettings(**{**base, **kw})


def _settings(
    monkeypatch: pytest.MonkeyPatch, *rules: AlertRuleSettings, **kw: Any
) -> AlertSettings:
    monkeypatch.setenv("TF_TEST_HOOK_SECRET", SECRET)
    hooks = kw.pop(
        "webhooks",
        [
            WebhookSettings(
                name="hook", url="http://127.0.0.1:9/h", secret_env="TF_TEST_HOOK_SECRET"
            )
        ],
    )
    return AlertSettings(webhooks=hooks, rules=list(rules or [_rule()]), **kw)


def _conditions(*rows: dict[str, Any]) -> pd.DataFrame:
    base: dict[str, Any] = dict.fromkeys(CONDITION_COLUMNS)
    base.update(condition="stale", source="desk", team="Desk", priority=3, reason="old")
    return pd.DataFrame([{**base, **r} for r in rows], columns=list(CONDITION_COLUMNS))


def _messages(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(OutboxMessage).order_by(OutboxMessage.id)).all())


# conditions from the analytics


def _scenario() -> tuple[pd.DataFrame, pd.DataFrame]:
    desk = {"team": "Desk", "state": "in_progress", "priority": 3}
    rows: list[dict[str, Any]] = [
        {"external_id": "T1", **desk, "priority": 2, "assignee": "ann", "number": "I-1"},
        {
            "external_id": "T2",
            "team": "Desk",
            "state": "new",
            "priority": 1,
            "created_at": "2024-03-15T08:00:00Z",
            "due_at": "2024-03-15T13:00:00Z",
        },
        {
            "external_id": "T3",
            "team": "Net",
            "state": "waiting_customer",
            "assignee": "bob",
            "created_at": "2024-03-10T09:00:00Z",
        },
        {"external_id": "T7", **desk, "created_at": "2024-03-11T09:00:00Z"},
        {"external_id": "T8", **desk, "assignee": "ann", "due_at": "2024-03-10T09:00:00Z"},
        {"external_id": "T9", "team": "Net", "state": "waiting_supplier", "assignee": "bob"},
        {"external_id": "T10", "team": "Net", "state": "waiting_other", "assignee": "bob"},
    ]
    rows += [{"external_id": f"A{i}", **desk, "assignee": "ann"} for i in range(3)]
    rows += [{"external_id": f"O{i}", **desk, "assignee": f"op{i}"} for i in range(6)]
    events = [
        *states("T1", ("2024-03-01T09:00:00Z", "new"), ("2024-03-01T10:00:00Z", "in_progress")),
        ("T1", "2024-03-01T10:00:00Z", "assignee", "ann", "ann"),
        *[
            ("T3", f"2024-03-1{d}T09:00:00Z", "team", t, "x")
            for d, t in ((0, "Desk"), (1, "Net"), (2, "Desk"), (3, "Net"))
        ],
        *states(
            "T3", ("2024-03-10T09:00:00Z", "new"), ("2024-03-13T11:00:00Z", "waiting_customer")
        ),
        *states("T7", ("2024-03-11T09:00:00Z", "in_progress")),
        ("T7", "2024-03-11T09:00:00Z", "assignee", "zed", "zed"),
        ("T7", "2024-03-11T10:00:00Z", "assignee", None, "zed"),
        *[(f"O{i}", "2024-03-15T11:00:00Z", "assignee", f"op{i}", f"op{i}") for i in range(6)],
        ("A0", "2024-03-15T11:00:00Z", "assignee", "ann", "ann"),
    ]
    return make_tickets(*rows), make_events(*events)


def test_every_configurable_condition_comes_from_the_analytics() -> None:
    tickets, events = _scenario()
    found = collect_conditions(tickets, events, now=NOW.to_pydatetime())
    assert set(found["condition"]) == set(CONDITIONS)
    assert not found.duplicated(["condition", "source", "subject"]).any()
    absent = found[found["condition"] == "absent"]
    assert list(absent["subject"]) == ["bob"] and set(absent["source"]) == {"*"}
    over = found[found["condition"] == "overloaded"]
    assert list(over["subject"]) == ["ann"] and "open tickets" in over["reason"].iloc[0]
    t1 = found[(found["subject"] == "T1") & (found["condition"] == "stale")].iloc[0]
    assert t1["number"] == "I-1" and t1["team"] == "Desk" and "no real activity" in t1["reason"]


def test_an_empty_warehouse_has_no_conditions() -> None:
    tickets, events = _scenario()
    empty = collect_conditions(tickets.iloc[:0], events.iloc[:0], now=T0)
    assert list(empty.columns) == list(CONDITION_COLUMNS) and empty.empty


def test_rules_filter_by_condition_team_priority_and_source() -> None:
    conds = _conditions(
        {"subject": "a", "priority": 1},
        {"subject": "b", "priority": 4},
        {"subject": "c", "team": "Net", "priority": 1},
        {"subject": "d", "condition": "sla_risk", "priority": 1},
        {"subject": "e", "source": "other", "priority": 1},
        {"subject": "ann", "source": "*", "condition": "overloaded", "priority": None},
    )
    rule = _rule(
        conditions=["stale", "overloaded"], teams=["Desk"], priorities=[1, 2], sources=["desk"]
    )
    assert sorted(match_rules(conds, [rule])["subject"]) == ["a", "ann"]


# episodes: pure decisions


def _ep(**kw: Any) -> EpisodeState:
    base: dict[str, Any] = {
        "id": 1,
        "rule": "r",
        "source": "desk",
        "subject": "a",
        "condition": "stale",
        "opened_at": T0,
    }
    return EpisodeState(**{**base, **kw})


def test_build_alerts_opens_remembers_reminds_and_clears() -> None:
    rule = _rule(reminder_hours=8)
    matched = match_rules(_conditions({"subject": "a"}), [rule])

    def kinds(alerts: list[Alert]) -> list[tuple[str, bool]]:
        return [(a.kind, a.notify) for a in alerts]

    assert kinds(build_alerts(matched, [], [rule], now=T0)) == [("opened", True)]
    ep = _ep()
    later = T0 + timedelta(hours=7, minutes=59)
    assert kinds(build_alerts(matched, [ep], [rule], now=later)) == [("seen", False)]
    due = build_alerts(matched, [ep], [rule], now=T0 + timedelta(hours=8))
    assert kinds(due) == [("reminder", True)] and due[0].reminder == 1
    reminded = _ep(reminders=1, reminded_at=T0 + timedelta(hours=8))
    assert kinds(build_alerts(matched, [reminded], [rule], now=T0 + timedelta(days=9))) == [
        ("seen", False)
    ]
    gone = build_alerts(matched.iloc[:0], [ep], [rule], now=T0 + timedelta(hours=1))
    assert kinds(gone) == [("cleared", True)] and gone[0].episode_id == 1


def test_a_storm_of_new_episodes_is_folded_into_one_summary() -> None:
    rule = _rule(max_opened_per_run=3)
    conds = _conditions(*({"subject": f"t{i}", "priority": 1 + i % 5} for i in range(10)))
    alerts = build_alerts(match_rules(conds, [rule]), [], [rule], now=T0)
    sent = [a for a in alerts if a.kind == "opened" and a.notify]
    assert len(sent) == 3 and all(a.row["priority"] == 1 for a in sent[:2])
    (summary,) = [a for a in alerts if a.kind == "summary"]
    assert len(summary.folded) == 7
    folded = _ep(notified=False)
    cleared = build_alerts(match_rules(conds.iloc[:0], [rule]), [folded], [rule], now=T0)
    assert [(a.kind, a.notify) for a in cleared] == [("cleared", False)]


def test_quiet_hours_over_midnight_per_team_with_urgent_priorities() -> None:
    quiet = [
        QuietHoursSettings(
            team="Desk",
            start=time(19),
            end=time(7),
            timezone="Europe/Amsterdam",
            except_priorities=[1],
        ),
        QuietHoursSettings(team="*", start=time(0), end=time(1)),
    ]
    night = datetime(2024, 3, 15, 22, 0, tzinfo=UTC)  # 23:00 in Amsterdam
    end = quiet_until(quiet, team="Desk", priority=3, now=night)
    assert end == datetime(2024, 3, 16, 6, 0, tzinfo=UTC)
    assert quiet_until(quiet, team="Desk", priority=1, now=night) is None
    assert quiet_until(quiet, team="Desk", priority=3, now=T0) is None
    assert quiet_until(quiet, team="Net", priority=3, now=night) is None
    assert quiet_until(quiet, team="Net", priority=3, now=night + timedelta(hours=2, minutes=30))


# episodes and outbox in the warehouse


def test_episode_lifecycle_one_alert_reminder_clear_and_a_new_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, _rule(reminder_hours=8, max_reminders=1))
    on = _conditions({"subject": "T1", "number": "I-1", "title": "Mail down"})
    off = on.iloc[:0]

    def run(conds: pd.DataFrame, hours: float) -> list[str]:
        before = len(_messages(engine))
        evaluate_alerts(engine, settings, now=T0 + timedelta(hours=hours), conditions=conds)
        return [m.kind for m in _messages(engine)[before:]]

    assert run(on, 0) == ["opened"]
    assert run(on, 0) == []  # the same run again (a retry, a second replica): nothing
    assert [run(on, h) for h in (1, 5, 7.9)] == [[], [], []]
    assert run(on, 8) == ["reminder"]
    assert [run(on, h) for h in (9, 16, 30)] == [[], [], []]  # one reminder configured
    assert run(off, 31) == ["cleared"]
    assert run(off, 32) == []
    assert run(on, 40) == ["opened"]  # it came back: a new episode, a new alert
    msgs = _messages(engine)
    assert len({m.message_id for m in msgs}) == len(msgs) == 4
    assert [m.payload["type"] for m in msgs] == [
        "ticketflow.alert.opened",
        "ticketflow.alert.reminder",
        "ticketflow.alert.cleared",
        "ticketflow.alert.opened",
    ]
    first, second = msgs[0].payload["data"]["episode"]["id"], msgs[3].payload["data"]["episode"]
    assert first != second["id"]
    with engine.connect() as conn:
        episodes = conn.execute(select(AlertEpisode).order_by(AlertEpisode.id)).all()
    assert [(e.cleared_at is None, e.reminders) for e in episodes] == [(False, 1), (True, 0)]


def test_concurrent_evaluations_raise_one_alert(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch)
    conds = _conditions(*({"subject": f"T{i}"} for i in range(20)))
    errors: list[BaseException] = []

    def go() -> None:
        try:
            evaluate_alerts(engine, settings, now=T0, conditions=conds)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_messages(engine)) == 20
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AlertEpisode)).scalar() == 20


def test_each_webhook_of_a_rule_gets_its_own_message(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_TEST_SLACK_URL", "https://hooks.slack.example/T/B/x")
    hooks = [
        WebhookSettings(name="hook", url="http://127.0.0.1:9/h", secret_env="TF_TEST_HOOK_SECRET"),
        WebhookSettings(name="chat", format="slack", url_env="TF_TEST_SLACK_URL"),
        WebhookSettings(name="off", format="slack", url_env="TF_TEST_SLACK_URL", enabled=False),
    ]
    settings = _settings(monkeypatch, _rule(webhooks=["hook", "chat", "off"]), webhooks=hooks)
    evaluate_alerts(engine, settings, now=T0, conditions=_conditions({"subject": "T1"}))
    assert sorted(m.webhook for m in _messages(engine)) == ["chat", "hook"]


def test_quiet_hours_hold_messages_and_a_cleared_episode_cancels_its_held_opening(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = [QuietHoursSettings(team="Desk", start=time(19), end=time(7))]
    settings = _settings(monkeypatch, quiet_hours=quiet)
    night = datetime(2024, 3, 15, 22, tzinfo=UTC)
    on = _conditions({"subject": "T1"}, {"subject": "T2"})
    evaluate_alerts(engine, settings, now=night, conditions=on)
    held = _messages(engine)
    morning = datetime(2024, 3, 16, 7, tzinfo=UTC)
    assert [(m.held_until, m.next_attempt_at) for m in held] == [(morning, morning)] * 2
    evaluate_alerts(engine, settings, now=night + timedelta(hours=2), conditions=on.iloc[1:])
    msgs = _messages(engine)
    assert [(m.kind, m.status) for m in msgs] == [("opened", "cancelled"), ("opened", "pending")]


def test_daily_digest_once_per_team_and_day(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = [DigestSettings(team="Desk", webhook="hook", at=time(8), days=["fri", "sat"])]
    settings = _settings(monkeypatch, _rule(conditions=["stale", "queued"]), digests=digests)
    conds = _conditions(
        {"subject": "T1"},
        {"subject": "T1", "condition": "queued"},
        {"subject": "T2", "team": "Net"},
    )
    evaluate_alerts(engine, settings, now=T0 - timedelta(hours=6), conditions=conds)
    assert queue_digests(engine, settings, now=datetime(2024, 3, 15, 7, 59, tzinfo=UTC)) == 0
    assert queue_digests(engine, settings, now=datetime(2024, 3, 15, 8, 0, tzinfo=UTC)) == 1
    assert queue_digests(engine, settings, now=datetime(2024, 3, 15, 9, 0, tzinfo=UTC)) == 0
    assert queue_digests(engine, settings, now=datetime(2024, 3, 16, 8, 5, tzinfo=UTC)) == 1
    digest = [m for m in _messages(engine) if m.kind == "digest"]
    assert len(digest) == 2
    data = digest[0].payload["data"]
    assert data["team"] == "Desk" and data["open"] == 2 and data["date"] == "2024-03-15"
    assert data["by_condition"] == {"queued": 1, "stale": 1}


# formats and signatures


def _event(**row: Any) -> dict[str, Any]:
    alert = Alert("opened", "r", ("r", "desk", "T1", "stale"), {})
    base = {"team": "Desk", "priority": 2, "reason": "no activity", "number": "I-1"}
    return alert_event(
        alert,
        episode_id=7,
        opened_at=T0,
        now=T0,
        row={**base, **row},
        public_url="https://tf.example",
    )


def test_slack_and_teams_payloads_escape_helpdesk_text() -> None:
    event = _event(title="<script>alert(1)</script> *bold* [x](javascript:y)", url=None)
    slack = json.loads(render("slack", event))
    assert slack["text"] == "Stale call — ticket I-1"
    body = json.dumps(slack)
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert slack["blocks"][-1]["elements"][0]["text"] == "<https://tf.example/api/v1/alerts/7|Open>"
    teams = json.loads(render("teams", event))
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = [b["text"] for b in card["content"]["body"]]
    assert texts[0] == "Stale call — ticket I\\-1" or texts[0].startswith("Stale call")
    assert "\\[x\\]\\(javascript:y\\)" in texts[1] and "\\*bold\\*" in texts[1]
    assert card["content"]["actions"][0]["url"] == "https://tf.example/api/v1/alerts/7"
    assert len(render("standard", _event(title="x" * 100_000, reason="y" * 100_000))) < 20_000


def test_signatures_verify_with_the_official_library() -> None:
    rng = random.Random(20241127)
    alphabet = 'aé€😀\u200b\t\n "\\{}<>' + "".join(map(chr, range(32, 127)))
    now = datetime.now(UTC)
    wh = standardwebhooks.Webhook(SECRET)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    sizes = [0, 1, 20_000] + [rng.randint(0, 2000) for _ in range(1500)]
    for i, size in enumerate(sizes):
        text = "".join(rng.choice(alphabet) for _ in range(size))
        body = json.dumps({"text": text}, ensure_ascii=False).encode()
        headers = signature_headers(
            [key], msg_id=f"msg_{i}", timestamp=int(now.timestamp()), body=body
        )
        assert wh.verify(body, headers) == {"text": text}
        assert headers["webhook-signature"] == wh.sign(f"msg_{i}", now, body.decode())
    good = signature_headers([key], msg_id="msg_1", timestamp=int(now.timestamp()), body=b"{}")
    tampered = [
        (b'{"a":1}', good),
        (b"{}", {**good, "webhook-id": "msg_2"}),
        (b"{}", {**good, "webhook-timestamp": str(int(now.timestamp()) - 1)}),
        (b"{}", {**good, "webhook-timestamp": str(int(now.timestamp()) - 600)}),
        (
            b"{}",
            signature_headers(
                [b"x" * 32], msg_id="msg_1", timestamp=int(now.timestamp()), body=b"{}"
            ),
        ),
    ]
    for body, headers in tampered:
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            wh.verify(body, headers)


def test_rotation_signs_with_every_secret() -> None:
    old, new = b"o" * 32, b"n" * 32
    headers = signature_headers(
        [old, new], msg_id="msg_1", timestamp=int(T0.timestamp()), body=b"{}"
    )
    sigs = headers["webhook-signature"].split(" ")
    assert sigs == [
        sign(s, msg_id="msg_1", timestamp=int(T0.timestamp()), body=b"{}") for s in (old, new)
    ]
    now = datetime.now(UTC)
    headers = signature_headers([old, new], msg_id="m", timestamp=int(now.timestamp()), body=b"1")
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(b"1", headers)


# configuration


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"webhooks": [{"name": "h", "url": "https://x.example/h", "secret": "whsec_abc"}]},
            "`secret` must not be written",
        ),
        ({"webhooks": [{"name": "h", "url": "https://x.example/h"}]}, "signed"),
        (
            {"webhooks": [{"name": "h", "format": "slack", "url": "https://hooks.slack.com/x"}]},
            "url_env or url_file",
        ),
        (
            {"rules": [{"name": "r", "conditions": ["stale"], "webhooks": ["nope"]}]},
            "unknown webhooks nope",
        ),
        ({"rules": [{"name": "r", "conditions": ["nonsense"], "webhooks": []}]}, "conditions"),
        (
            {
                "quiet_hours": [
                    {"team": "x", "start": "19:00", "end": "07:00", "timezone": "Mars/Base"}
                ]
            },
            "unknown time zone",
        ),
    ],
)
def test_invalid_alert_settings_name_the_problem(block: dict[str, Any], message: str) -> None:
    from app.errors import ConfigError
    from app.settings import load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(None, alerts=block)


def test_schedule_settings_take_an_interval_or_a_valid_cron() -> None:
    from app.errors import ConfigError
    from app.settings import load_settings

    ok = load_settings(None, schedule={"sources": [{"source": "a", "cron": "*/5 * * * mon-fri"}]})
    assert ok.schedule.sources[0].cron == "*/5 * * * mon-fri"
    for bad in (
        {"source": "a"},
        {"source": "a", "cron": "61 * * * *"},
        {"source": "a", "cron": "* * *"},
        {"source": "a", "cron": "* * * * *", "interval_minutes": 5},
        {"source": "a", "cron": "0 3 * * 1-5"},  # numbered weekdays: dialects disagree
        {"source": "a", "interval_minutes": 5, "full_cron": "0 3 * * 0"},
    ):
        with pytest.raises(ConfigError, match="schedule"):
            load_settings(None, schedule={"sources": [bad]})


def test_webhook_secrets_are_read_from_env_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = WebhookSettings(name="h", url="https://x.example/h", secret_env="TF_TEST_ROT")
    monkeypatch.setenv("TF_TEST_ROT", f"{SECRET} whsec_" + base64.b64encode(b"n" * 32).decode())
    assert [len(k) for k in hook.secrets()] == [32, 32]
    assert SECRET not in repr(hook) and SECRET not in repr(hook.secret_values())
    monkeypatch.setenv("TF_TEST_ROT", "whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="24 bytes"):
        hook.secrets()
    monkeypatch.delenv("TF_TEST_ROT")
    with pytest.raises(ValueError, match="TF_TEST_ROT"):
        hook.secrets()


def test_episodes_of_a_removed_rule_close_silently(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, _rule(name="old"), _rule(name="kept"))
    on = _conditions({"subject": "T1"})
    evaluate_alerts(engine, settings, now=T0, conditions=on)
    for remaining in ([_rule(name="kept")], []):
        changed = settings.model_copy(update={"rules": remaining})
        evaluate_alerts(engine, changed, now=T0 + timedelta(hours=1), conditions=on)
    with engine.connect() as conn:
        episodes = conn.execute(select(AlertEpisode).order_by(AlertEpisode.id)).all()
    assert [(e.rule, e.cleared_at is not None) for e in episodes] == [("old", True), ("kept", True)]
    assert [m.kind for m in _messages(engine)] == ["opened", "opened"]  # no "cleared" for them
