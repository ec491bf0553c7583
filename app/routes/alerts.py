"""``/api/v1/alerts``: alert episodes (read), webhook endpoints, deliveries and redelivery (admin).

- ``GET /api/v1/alerts`` (read): episodes, newest first; filters ``state`` (open, cleared,
  all), ``rule``, ``team``, ``condition``, ``source``.
- ``GET /api/v1/alerts/{id}`` (read): one episode and its messages.
- ``GET /api/v1/alerts/webhooks`` (admin): every configured webhook with its health (disabled,
  failing since, last success) and message counts. URLs are shown as ``scheme://host`` only:
  Slack and Teams URLs are secrets.
- ``GET /api/v1/alerts/webhooks/{name}/deliveries`` (admin): messages with every attempt.
- ``POST /api/v1/alerts/webhooks/{name}/redeliver`` (admin): queue messages again with their
  original ``webhook-id`` (listed ids, or every failed one since a time).
- ``POST /api/v1/alerts/webhooks/{name}/enable`` (admin): enable a disabled endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, func, select

from app.alert_settings import WebhookSettings
from app.delivery import enable_endpoint, redeliver
from app.deps import AdminAccess, ConnectionDep, EngineDep, ReadAccess, SettingsDep
from app.errors import NotFoundError
from app.warehouse.alerts_schema import (
    AlertAttempt,
    AlertEpisode,
    OutboxMessage,
    WebhookEndpoint,
)

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


class AlertRead(BaseModel):
    id: int
    rule: str
    condition: str
    source: str | None
    subject: str
    team: str | None
    priority: int | None
    state: Literal["open", "cleared"]
    opened_at: datetime
    since: datetime | None
    last_seen_at: datetime
    cleared_at: datetime | None
    reminders: int
    notified: bool
    details: dict[str, Any]


class AlertPage(BaseModel):
    items: list[AlertRead]
    total: int
    limit: int
    offset: int


class AttemptRead(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None
    response_body: str | None


class MessageRead(BaseModel):
    message_id: str
    """the ``webhook-id``: the same on every attempt"""
    webhook: str
    kind: str
    event_type: str
    episode_id: int | None
    team: str | None
    status: str
    created_at: datetime
    next_attempt_at: datetime | None
    held_until: datetime | None
    attempts: int
    delivered_at: datetime | None
    last_error: str | None
    attempt_log: list[AttemptRead] = Field(default_factory=list)


class AlertDetail(AlertRead):
    messages: list[MessageRead]


class MessagePage(BaseModel):
    items: list[MessageRead]
    total: int
    limit: int
    offset: int


class WebhookRead(BaseModel):
    name: str
    format: str
    target: str | None
    """scheme://host[:port] only"""
    configured_enabled: bool
    disabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    consecutive_failures: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    messages: dict[str, int]
    """message counts by status"""


class RedeliverRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message_ids: list[str] | None = Field(default=None, max_length=1000)
    since: datetime | None = None
    """with no ``message_ids``: every failed or cancelled message raised at or after this"""
    include_delivered: bool = False


class RedeliverResult(BaseModel):
    queued: int


class EnableResult(BaseModel):
    enabled: bool


def _alert(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule,
        "condition": row.condition,
        "source": None if row.source == "*" else row.source,
        "subject": row.subject,
        "team": row.team,
        "priority": row.priority,
        "state": "open" if row.cleared_at is None else "cleared",
        "opened_at": row.opened_at,
        "since": row.since,
        "last_seen_at": row.last_seen_at,
        "cleared_at": row.cleared_at,
        "reminders": row.reminders,
        "notified": bool(row.notified),
        "details": row.details or {},
    }


def _message(row: Any, attempts: list[Any] | None = None) -> MessageRead:
    fields = {k: getattr(row, k) for k in MessageRead.model_fields if k != "attempt_log"}
    log = [AttemptRead.model_validate(a, from_attributes=True) for a in attempts or []]
    return MessageRead(**fields, attempt_log=log)


def _hook(settings: Any, name: str) -> WebhookSettings:
    hook: WebhookSettings | None = settings.alerts.webhook(name)
    if hook is None:
        raise NotFoundError(f"webhook `{name}`")
    return hook


def _target(hook: WebhookSettings) -> str | None:
    try:
        parts = urlsplit(hook.target())
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


@router.get("", response_model=AlertPage, summary="Alert episodes")
def list_alerts(
    _caller: ReadAccess,
    conn: ConnectionDep,
    state: Literal["open", "cleared", "all"] = "all",
    rule: str | None = None,
    team: str | None = None,
    condition: str | None = None,
    source: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlertPage:
    """Episodes of alert conditions, newest first."""
    cond: list[ColumnElement[bool]] = []
    if state == "open":
        cond.append(AlertEpisode.cleared_at.is_(None))
    elif state == "cleared":
        cond.append(AlertEpisode.cleared_at.is_not(None))
    for column, value in (
        (AlertEpisode.rule, rule),
        (AlertEpisode.team, team),
        (AlertEpisode.condition, condition),
        (AlertEpisode.source, source),
    ):
        if value is not None:
            cond.append(column == value)
    total = conn.execute(select(func.count()).select_from(AlertEpisode).where(*cond)).scalar_one()
    rows = conn.execute(
        select(AlertEpisode)
        .where(*cond)
        .order_by(AlertEpisode.opened_at.desc(), AlertEpisode.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return AlertPage(
        items=[AlertRead(**_alert(r)) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/webhooks", response_model=list[WebhookRead], summary="Webhook endpoints")
def list_webhooks(
    _caller: AdminAccess, conn: ConnectionDep, settings: SettingsDep
) -> list[WebhookRead]:
    """Every configured webhook: health, disabled state and message counts."""
    states = {r.name: r for r in conn.execute(select(WebhookEndpoint)).all()}
    counts: dict[str, dict[str, int]] = {}
    for name, status, n in conn.execute(
        select(OutboxMessage.webhook, OutboxMessage.status, func.count()).group_by(
            OutboxMessage.webhook, OutboxMessage.status
        )
    ).all():
        counts.setdefault(name, {})[status] = n
    out = []
    for hook in settings.alerts.webhooks:
        st = states.get(hook.name)
        out.append(
            WebhookRead(
                name=hook.name,
                format=hook.format,
                target=_target(hook),
                configured_enabled=hook.enabled,
                disabled=st is not None and st.disabled_at is not None,
                disabled_at=st.disabled_at if st else None,
                disabled_reason=st.disabled_reason if st else None,
                failing_since=st.failing_since if st else None,
                consecutive_failures=st.consecutive_failures if st else 0,
                last_success_at=st.last_success_at if st else None,
                last_failure_at=st.last_failure_at if st else None,
                last_error=st.last_error if st else None,
                messages=counts.get(hook.name, {}),
            )
        )
    return out


@router.get(
    "/webhooks/{name}/deliveries", response_model=MessagePage, summary="Deliveries of a webhook"
)
def list_deliveries(
    _caller: AdminAccess,
    conn: ConnectionDep,
    settings: SettingsDep,
    name: str,
    status: Literal["pending", "delivered", "failed", "cancelled"] | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MessagePage:
    """Messages to one webhook, newest first, each with every attempt."""
    _hook(settings, name)
    cond: list[ColumnElement[bool]] = [OutboxMessage.webhook == name]
    if status is not None:
        cond.append(OutboxMessage.status == status)
    total = conn.execute(select(func.count()).select_from(OutboxMessage).where(*cond)).scalar_one()
    rows = conn.execute(
        select(OutboxMessage)
        .where(*cond)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    attempts: dict[str, list[Any]] = {}
    if rows:
        for a in conn.execute(
            select(AlertAttempt)
            .where(AlertAttempt.message_id.in_([r.message_id for r in rows]))
            .order_by(AlertAttempt.id)
        ).all():
            attempts.setdefault(a.message_id, []).append(a)
    return MessagePage(
        items=[_message(r, attempts.get(r.message_id)) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/webhooks/{name}/redeliver", response_model=RedeliverResult, summary="Redeliver messages"
)
def redeliver_messages(
    _caller: AdminAccess,
    engine: EngineDep,
    settings: SettingsDep,
    name: str,
    body: RedeliverRequest,
) -> RedeliverResult:
    """Queue messages again with their original ``webhook-id``."""
    _hook(settings, name)
    queued = redeliver(
        engine,
        webhook=name,
        now=datetime.now(UTC),
        message_ids=body.message_ids,
        since=body.since,
        include_delivered=body.include_delivered,
    )
    return RedeliverResult(queued=queued)


@router.post("/webhooks/{name}/enable", response_model=EnableResult, summary="Enable a webhook")
def enable_webhook(
    _caller: AdminAccess, engine: EngineDep, settings: SettingsDep, name: str
) -> EnableResult:
    """Enable an endpoint that was disabled after persistent failure (or a 410)."""
    _hook(settings, name)
    return EnableResult(enabled=enable_endpoint(engine, webhook=name, now=datetime.now(UTC)))


@router.get("/{episode_id}", response_model=AlertDetail, summary="One alert episode")
def get_alert(_caller: ReadAccess, conn: ConnectionDep, episode_id: int) -> AlertDetail:
    """One episode with its messages (status per webhook)."""
    row = conn.execute(select(AlertEpisode).where(AlertEpisode.id == episode_id)).first()
    if row is None:
        raise NotFoundError(f"alert {episode_id}")
    messages = conn.execute(
        select(OutboxMessage)
        .where(OutboxMessage.episode_id == episode_id)
        .order_by(OutboxMessage.id)
    ).all()
    return AlertDetail(**_alert(row), messages=[_message(m) for m in messages])
