"""The alert outbox: evaluate the rules and write episodes plus messages in ONE transaction.

``evaluate_alerts`` reads the warehouse, computes the conditions (``app.alerts``, pure), then in
a single transaction takes the evaluation lock, reads the open episodes, applies
``build_alerts`` and inserts the outbox messages of what opened, reminded or cleared. Either
the episode changes and their messages both commit, or neither does: a crash can neither lose
an alert (the next run raises it again) nor send one twice (the episode already exists).

Duplicates across runs, restarts and replicas are excluded three times over: the evaluation
lock (``pg_advisory_xact_lock`` on PostgreSQL, SQLite's write lock taken first), the unique
open episode per (rule, source, subject, condition), and unique message ids derived from the
episode (``INSERT ... ON CONFLICT DO NOTHING``).

``queue_digests`` writes the daily digest of each team once per local day (its id is derived
from team, day and webhook).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.alert_formats import alert_event, digest_event, message_id, summary_event
from app.alert_settings import WEEKDAYS, AlertSettings
from app.alerts import (
    Alert,
    EpisodeState,
    build_alerts,
    collect_conditions,
    match_rules,
    quiet_until,
)
from app.warehouse.alerts_schema import AlertEpisode, OutboxMessage
from app.warehouse.reads import read_events_frame, read_tickets_frame

__all__ = [
    "EvaluationResult",
    "evaluate_alerts",
    "evaluation_lock",
    "insert_message",
    "open_episodes",
    "queue_digests",
]

log = logging.getLogger(__name__)
DIGEST_GRACE = timedelta(hours=12)
"""a digest missed at its time (scheduler down) is still sent this long afterwards"""


@dataclass
class EvaluationResult:
    conditions: int = 0
    opened: int = 0
    reminders: int = 0
    cleared: int = 0
    messages: int = 0
    held: int = 0
    """messages held for quiet hours"""
    cancelled: int = 0
    """held openings cancelled because the episode cleared before they were sent"""
    by_kind: dict[str, int] = field(default_factory=dict)


def _lock_key(conn: Connection, name: str) -> int:
    schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
    digest = hashlib.blake2b(f"ticketflow:{name}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def evaluation_lock(conn: Connection) -> None:
    """Serialise alert evaluations: held until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(conn, "alerts")})
    else:
        # a write statement takes SQLite's RESERVED lock now, before anything is read
        conn.execute(text("DELETE FROM scheduler_runs WHERE 1 = 0"))


def open_episodes(conn: Connection) -> list[EpisodeState]:
    rows = conn.execute(select(AlertEpisode).where(AlertEpisode.cleared_at.is_(None))).all()
    return [
        EpisodeState(
            id=e.id,
            rule=e.rule,
            source=e.source,
            subject=e.subject,
            condition=e.condition,
            opened_at=e.opened_at,
            reminders=e.reminders,
            reminded_at=e.reminded_at,
            notified=bool(e.notified),
        )
        for e in rows
    ]


def insert_message(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert one outbox row unless its ``message_id`` exists; True when inserted."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(OutboxMessage).values(**values).on_conflict_do_nothing(index_elements=["message_id"])
    )
    return bool(conn.execute(stmt).rowcount)


def _details(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("team", "assignee", "priority", "state", "reason", "since", "number", "title", "url")
    out = {}
    for k in keep:
        v = row.get(k)
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out


def _priority(row: dict[str, Any]) -> int | None:
    p = row.get("priority")
    return int(p) if isinstance(p, int | float) and not pd.isna(p) else None


class _Writer:
    """Applies one run's alerts inside the caller's transaction."""

    def __init__(self, conn: Connection, settings: AlertSettings, now: datetime) -> None:
        self.conn = conn
        self.settings = settings
        self.now = now
        self.rules = {r.name: r for r in settings.rules}
        self.result = EvaluationResult()

    def _webhooks(self, rule: str) -> list[str]:
        out = []
        for name in self.rules[rule].webhooks:
            hook = self.settings.webhook(name)
            if hook is not None and hook.enabled:
                out.append(name)
        return out

    def _queue(
        self,
        *,
        rule: str,
        kind: str,
        event: dict[str, Any],
        episode_id: int | None,
        team: str | None,
        priority: int | None,
        id_parts: tuple[object, ...],
    ) -> None:
        held = quiet_until(self.settings.quiet_hours, team=team, priority=priority, now=self.now)
        for hook in self._webhooks(rule):
            inserted = insert_message(
                self.conn,
                {
                    "message_id": message_id(*id_parts, hook),
                    "webhook": hook,
                    "episode_id": episode_id,
                    "kind": kind,
                    "event_type": event["type"],
                    "team": team,
                    "payload": event,
                    "created_at": self.now,
                    "status": "pending",
                    "next_attempt_at": held or self.now,
                    "held_until": held,
                    "attempts": 0,
                },
            )
            if inserted:
                self.result.messages += 1
                self.result.held += held is not None
                self.result.by_kind[kind] = self.result.by_kind.get(kind, 0) + 1

    def apply(self, alert: Alert) -> None:
        if alert.kind == "summary":
            event = summary_event(
                alert.rule, alert.folded, now=self.now, public_url=self.settings.public_url
            )
            self._queue(
                rule=alert.rule,
                kind="summary",
                event=event,
                episode_id=None,
                team=None,
                priority=None,
                id_parts=(alert.rule, "summary", self.now.isoformat()),
            )
            return
        row = dict(alert.row)
        if alert.kind == "opened":
            self._open(alert, row)
        elif alert.kind in ("seen", "reminder"):
            values: dict[str, Any] = {"last_seen_at": self.now, "details": _details(row)}
            values["team"], values["priority"] = row.get("team"), _priority(row)
            if alert.kind == "reminder":
                values["reminders"] = alert.reminder
                values["reminded_at"] = self.now
                self.result.reminders += 1
            self.conn.execute(
                update(AlertEpisode).where(AlertEpisode.id == alert.episode_id).values(**values)
            )
            if alert.kind == "reminder" and alert.notify:
                self._episode_message(alert, row, kind="reminder", n=alert.reminder)
        elif alert.kind == "cleared":
            self._clear(alert)

    def _open(self, alert: Alert, row: dict[str, Any]) -> None:
        assert alert.key is not None
        rule, source, subject, condition = alert.key
        since = row.get("since")
        episode_id = self.conn.execute(
            sa_insert(AlertEpisode)
            .values(
                rule=rule,
                source=source,
                subject=subject,
                condition=condition,
                open_key="open",
                team=row.get("team"),
                priority=_priority(row),
                opened_at=self.now,
                since=since if isinstance(since, datetime) else None,
                last_seen_at=self.now,
                reminders=0,
                notified=int(alert.notify),
                details=_details(row),
            )
            .returning(AlertEpisode.id)
        ).scalar_one()
        self.result.opened += 1
        if alert.notify:
            alert = Alert(alert.kind, alert.rule, alert.key, alert.row, episode_id=episode_id)
            self._episode_message(alert, row, kind="opened", n=0, opened_at=self.now)

    def _episode_message(
        self,
        alert: Alert,
        row: dict[str, Any],
        *,
        kind: str,
        n: int,
        opened_at: datetime | None = None,
    ) -> None:
        assert alert.episode_id is not None
        if opened_at is None:
            opened_at = self.conn.execute(
                select(AlertEpisode.opened_at).where(AlertEpisode.id == alert.episode_id)
            ).scalar_one()
        event = alert_event(
            alert,
            episode_id=alert.episode_id,
            opened_at=opened_at,
            now=self.now,
            row=row,
            public_url=self.settings.public_url,
        )
        self._queue(
            rule=alert.rule,
            kind=kind,
            event=event,
            episode_id=alert.episode_id,
            team=row.get("team"),
            priority=_priority(row),
            id_parts=(alert.episode_id, kind, n),
        )

    def _clear(self, alert: Alert) -> None:
        episode = self.conn.execute(
            select(AlertEpisode).where(AlertEpisode.id == alert.episode_id)
        ).one()
        changed = self.conn.execute(
            update(AlertEpisode)
            .where(AlertEpisode.id == alert.episode_id, AlertEpisode.cleared_at.is_(None))
            .values(cleared_at=self.now, open_key=None)
        ).rowcount
        if not changed:
            return
        self.result.cleared += 1
        if not alert.notify or alert.rule not in self.rules:
            return
        # an opening still held for quiet hours (never sent) is cancelled with the clearing:
        # nobody needs to hear at 07:00 about a problem that came and went overnight
        cancelled = self.conn.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.episode_id == episode.id,
                OutboxMessage.status == "pending",
                OutboxMessage.attempts == 0,
                OutboxMessage.held_until.is_not(None),
                OutboxMessage.held_until > self.now,
            )
            .values(status="cancelled", last_error="cleared before the quiet hours ended")
        ).rowcount
        self.result.cancelled += cancelled
        row = dict(episode.details or {})
        row["priority"] = episode.priority
        row["team"] = episode.team
        opened_sent = self.conn.execute(
            select(OutboxMessage.id).where(
                OutboxMessage.episode_id == episode.id,
                OutboxMessage.kind == "opened",
                OutboxMessage.status != "cancelled",
            )
        ).first()
        if opened_sent is None:
            return
        self._episode_message(alert, row, kind="cleared", n=0, opened_at=episode.opened_at)


def evaluate_alerts(
    engine: Engine,
    settings: AlertSettings,
    *,
    now: datetime,
    conditions: pd.DataFrame | None = None,
) -> EvaluationResult:
    """One evaluation: conditions from the warehouse (or given), episodes and outbox written
    in one transaction.

    Args:
        engine: the warehouse.
        settings: the ``[alerts]`` block.
        now: the evaluation instant (tests pass a controlled clock).
        conditions: precomputed ``collect_conditions`` output (tests and the scheduler's
            shared analytics); read from the warehouse when None.
    """
    if not settings.rules:
        # no rules (any more): close what is still open, silently, without reading anything
        conditions = collect_conditions(pd.DataFrame(), pd.DataFrame(), now=now)
    if conditions is None:
        with engine.connect() as conn:
            tickets = read_tickets_frame(conn, raw=False)
            events = read_events_frame(conn)
        conditions = collect_conditions(tickets, events, now=now)
    matched = match_rules(conditions, settings.rules)
    with engine.begin() as conn:
        evaluation_lock(conn)
        episodes = open_episodes(conn)
        alerts = build_alerts(matched, episodes, settings.rules, now=now)
        writer = _Writer(conn, settings, now)
        for alert in alerts:
            writer.apply(alert)
    result = writer.result
    result.conditions = len(conditions)
    log.info(
        "alerts evaluated: %d conditions, %d opened, %d reminders, %d cleared, %d messages",
        len(conditions),
        result.opened,
        result.reminders,
        result.cleared,
        result.messages,
        extra={"opened": result.opened, "cleared": result.cleared, "messages": result.messages},
    )
    return result


def _digest_day(at: Any, zone: ZoneInfo, days: Sequence[str], now: datetime) -> Any:
    """The local day whose digest is due at ``now`` (within the grace), or None."""
    local = now.astimezone(zone)
    for back in (0, 1):
        day = (local - timedelta(days=back)).date()
        if WEEKDAYS[day.weekday()] not in days:
            continue
        due = datetime.combine(day, at, tzinfo=zone)
        if due <= local < due + DIGEST_GRACE:
            return day
    return None


def queue_digests(engine: Engine, settings: AlertSettings, *, now: datetime) -> int:
    """Write each due daily digest (once per team, day and webhook); returns how many."""
    written = 0
    for digest in settings.digests:
        hook = settings.webhook(digest.webhook)
        if hook is None or not hook.enabled:
            continue
        day = _digest_day(digest.at, ZoneInfo(digest.timezone), digest.days, now)
        if day is None:
            continue
        mid = message_id("digest", digest.team, day.isoformat(), digest.webhook)
        with engine.begin() as conn:
            exists = conn.execute(
                select(OutboxMessage.id).where(OutboxMessage.message_id == mid)
            ).first()
            if exists:
                continue
            rows = conn.execute(
                select(AlertEpisode).where(
                    AlertEpisode.cleared_at.is_(None), AlertEpisode.team == digest.team
                )
            ).all()
            seen: dict[tuple[str, str, str], dict[str, Any]] = {}
            for e in rows:
                item = {"condition": e.condition, "source": e.source, "subject": e.subject}
                item.update({k: v for k, v in (e.details or {}).items() if k not in item})
                item["since"] = e.since or e.opened_at
                seen.setdefault((e.condition, e.source, e.subject), item)
            event = digest_event(
                digest.team,
                list(seen.values()),
                day=day,
                now=now,
                public_url=settings.public_url,
            )
            written += insert_message(
                conn,
                {
                    "message_id": mid,
                    "webhook": digest.webhook,
                    "episode_id": None,
                    "kind": "digest",
                    "event_type": event["type"],
                    "team": digest.team,
                    "payload": event,
                    "created_at": now,
                    "status": "pending",
                    "next_attempt_at": now,
                    "held_until": None,
                    "attempts": 0,
                },
            )
    return written
