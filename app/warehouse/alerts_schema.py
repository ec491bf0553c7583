"""Tables of the alerts: episodes, the outbox, delivery attempts, endpoint state, scheduler runs.

They share ``app.warehouse.schema.metadata``, so the migration-drift test covers them too.

- ``alert_episodes``: one row per episode of a condition on a subject (a ticket, or an operator
  for ``overloaded``/``absent``) under a rule. At most one *open* episode per
  (rule, source, subject, condition): ``open_key`` is ``'open'`` while it lasts and NULL once
  cleared, and (rule, source, subject, condition, open_key) is unique (NULLs never collide).
- ``alert_outbox``: one row per message to one webhook, written in the transaction that
  opened, reminded or cleared the episode. ``message_id`` is the ``webhook-id``: unique and the
  same on every attempt.
- ``alert_attempts``: every HTTP attempt of a message, with its outcome.
- ``webhook_endpoints``: per configured webhook, whether it is disabled and its failure streak.
- ``scheduler_runs``: each periodic run (who ran it, from when to when, how it went).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.warehouse.schema import Base
from app.warehouse.types import JSONType, UTCDateTime

__all__ = ["AlertAttempt", "AlertEpisode", "OutboxMessage", "SchedulerRun", "WebhookEndpoint"]

_ID = BigInteger().with_variant(Integer, "sqlite")
MESSAGE_KINDS = ("opened", "reminder", "cleared", "summary", "digest")
MESSAGE_STATUSES = ("pending", "delivered", "failed", "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AlertEpisode(Base):
    """One condition on one subject under one rule, from when it started until it ended."""

    __tablename__ = "alert_episodes"
    __table_args__ = (
        UniqueConstraint("rule", "source", "subject", "condition", "open_key"),
        CheckConstraint("open_key IS NULL OR open_key = 'open'", name="open_key"),
        Index(None, "cleared_at"),
        Index(None, "team"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(100))
    """the ticket's source; ``*`` for operator conditions"""
    subject: Mapped[str] = mapped_column(String(200))
    """the ticket id, or the operator for operator conditions"""
    condition: Mapped[str] = mapped_column(String(40))
    open_key: Mapped[str | None] = mapped_column(String(4))
    team: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """when the condition began according to the analytics (may predate ``opened_at``)"""
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notified: Mapped[int] = mapped_column(Integer, default=1)
    """1: its opening was sent as its own message; 0: folded into a summary (then its reminders
    and clearing stay silent too)"""
    details: Mapped[Any] = mapped_column(JSONType())
    """the latest reason, number, title, link, assignee"""


class OutboxMessage(Base):
    """One message for one webhook; delivered at least once, with one ``message_id``."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("message_id"),
        CheckConstraint(_in("kind", MESSAGE_KINDS), name="kind"),
        CheckConstraint(_in("status", MESSAGE_STATUSES), name="status"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "webhook", "created_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(100))
    webhook: Mapped[str] = mapped_column(String(100))
    episode_id: Mapped[int | None] = mapped_column(
        _ID, ForeignKey("alert_episodes.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(100))
    team: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[Any] = mapped_column(JSONType())
    """the event (Standard Webhooks ``{type, timestamp, data}``); rendered per format on send"""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """when the worker may try next (also the end of a claim, or of quiet hours)"""
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """end of the quiet hours it was raised in, if any"""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertAttempt(Base):
    """One HTTP attempt to deliver one message."""

    __tablename__ = "alert_attempts"
    __table_args__ = (Index(None, "message_id", "attempt"), Index(None, "webhook", "started_at"))

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(
        String(100), ForeignKey("alert_outbox.message_id", ondelete="CASCADE")
    )
    webhook: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30))
    """delivered, http_error, redirect, timeout, connect_error, refused (SSRF), error"""
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)
    """the first 1 KiB of the receiver's answer"""
    worker: Mapped[str | None] = mapped_column(String(200))


class WebhookEndpoint(Base):
    """The delivery state of one configured webhook."""

    __tablename__ = "webhook_endpoints"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """first failed attempt since the last success (None while healthy)"""
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class SchedulerRun(Base):
    """One run of a periodic job by the scheduler that held the leader lock."""

    __tablename__ = "scheduler_runs"
    __table_args__ = (Index(None, "job", "started_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(120))
    """``sync:<source>``, ``alerts``, ``digest``"""
    holder: Mapped[str] = mapped_column(String(200))
    """host:pid of the scheduler that ran it"""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    """running, ok, error"""
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[Any] = mapped_column(JSONType(), nullable=True)
