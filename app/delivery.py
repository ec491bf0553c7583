"""The delivery worker: send outbox messages, retry with backoff, record every attempt.

``deliver_due`` claims the messages whose time has come, sends them (``post_webhook``) with one
shared, SSRF-guarded client, and records each attempt. Per endpoint the messages go one after
another in creation order; endpoints are served in parallel threads, so a hanging receiver
only delays itself (its timeout bounds the wait).

Claims: a message is claimed by moving its ``next_attempt_at`` forward by a lease (timeout plus
a margin) with a compare-and-set ``UPDATE``; a worker that dies after claiming leaves the lease
to run out and the message is sent again, with the same ``webhook-id``. So delivery is
at-least-once; receivers dedupe on ``webhook-id`` (kept for the whole retry horizon).

Outcomes (reliability.md section 2):

| answer | result |
| --- | --- |
| 2xx | delivered |
| 3xx | failed attempt, redirect not followed |
| 410 Gone | endpoint disabled at once |
| 429, 503 with ``Retry-After`` | next attempt no earlier than asked (capped) |
| other 4xx/5xx, timeout, refused connection, SSRF refusal | failed attempt |

After a failed attempt the next one is ``retry_base_seconds · retry_factor^(n-1)`` later,
capped at ``retry_cap_hours``, with ±20 % jitter. A message not delivered within
``retry_horizon_hours`` of being raised is marked ``failed`` (redeliverable by hand). An
endpoint all of whose attempts failed for ``disable_after_hours`` (and at least 5 times) is
disabled and shown so in the API; its messages wait until it is enabled again.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, Row, and_, func, or_, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.alert_formats import render, signature_headers
from app.alert_settings import AlertSettings, WebhookSettings
from app.ssrf import EgressPolicy, ForbiddenDestinationError, make_guarded_client
from app.warehouse.alerts_schema import AlertAttempt, OutboxMessage, WebhookEndpoint

__all__ = [
    "AttemptResult",
    "DeliveryStats",
    "RetryPolicy",
    "check_webhooks",
    "deliver_due",
    "enable_endpoint",
    "make_client",
    "post_webhook",
    "prune",
    "redeliver",
    "worker_name",
]

log = logging.getLogger(__name__)
LEASE_MARGIN = timedelta(seconds=60)
BODY_KEEP = 1024
DISABLE_MIN_FAILURES = 5
Clock = Callable[[], datetime]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_client(settings: AlertSettings, **kwargs: Any) -> httpx.Client:
    """The shared delivery client: guarded by the egress policy, no redirects followed."""
    return make_guarded_client(EgressPolicy.from_settings(settings), **kwargs)


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta
    factor: float
    cap: timedelta
    horizon: timedelta
    max_retry_after: timedelta
    disable_after: timedelta

    @classmethod
    def from_settings(cls, s: AlertSettings) -> RetryPolicy:
        return cls(
            base=timedelta(seconds=s.retry_base_seconds),
            factor=s.retry_factor,
            cap=timedelta(hours=s.retry_cap_hours),
            horizon=timedelta(hours=s.retry_horizon_hours),
            max_retry_after=timedelta(seconds=s.max_retry_after_seconds),
            disable_after=timedelta(hours=s.disable_after_hours),
        )

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        """Wait after the ``attempt``-th failed attempt (1-based), jittered ±20 %."""
        raw = self.base.total_seconds() * self.factor ** max(attempt - 1, 0)
        capped = min(raw, self.cap.total_seconds())
        return timedelta(seconds=capped * rng.uniform(0.8, 1.2))

    def schedule(self, rng: random.Random | None = None) -> list[timedelta]:
        """Offsets from the first attempt of every attempt within the horizon."""
        rng = rng or random.Random(0)
        out, at, n = [timedelta(0)], timedelta(0), 1
        while True:
            at += self.delay(n, rng)
            if at > self.horizon:
                return out
            out.append(at)
            n += 1


@dataclass(frozen=True)
class AttemptResult:
    outcome: str
    """delivered, http_error, redirect, gone, timeout, connect_error, refused, error"""
    status_code: int | None = None
    error: str | None = None
    body: str | None = None
    retry_after: timedelta | None = None
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


@dataclass
class DeliveryStats:
    attempted: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    exhausted: int = 0
    disabled: list[str] | None = None


def _retry_after(value: str | None, now: datetime) -> timedelta | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def _send(
    client: httpx.Client,
    hook: WebhookSettings,
    message: Row[Any],
    *,
    now: datetime,
) -> AttemptResult:
    """One HTTP attempt (no database access)."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        url = hook.target()
        body = render(hook.format, message.payload)
        headers = {"content-type": "application/json"}
        if hook.format == "standard":
            headers.update(
                signature_headers(
                    hook.secrets(),
                    msg_id=message.message_id,
                    timestamp=int(now.timestamp()),
                    body=body,
                )
            )
        else:
            headers["webhook-id"] = message.message_id  # harmless for Slack/Teams; aids tracing
    except ValueError as e:
        return AttemptResult("error", error=f"configuration: {e}", duration_ms=took())
    try:
        response = client.post(url, content=body, headers=headers, timeout=hook.timeout_seconds)
    except ForbiddenDestinationError as e:
        return AttemptResult("refused", error=str(e), duration_ms=took())
    except httpx.TimeoutException as e:
        return AttemptResult("timeout", error=f"{type(e).__name__}", duration_ms=took())
    except httpx.TransportError as e:
        return AttemptResult("connect_error", error=f"{type(e).__name__}: {e}", duration_ms=took())
    code = response.status_code
    text = response.text[:BODY_KEEP] if response.content else None
    if 200 <= code < 300:
        return AttemptResult("delivered", code, body=text, duration_ms=took())
    if 300 <= code < 400:
        return AttemptResult(
            "redirect",
            code,
            error=f"HTTP {code} (redirects are not followed)",
            body=text,
            duration_ms=took(),
        )
    if code == 410:
        return AttemptResult("gone", code, error="HTTP 410 Gone", body=text, duration_ms=took())
    retry_after = (
        _retry_after(response.headers.get("retry-after"), now) if code in (429, 503) else None
    )
    return AttemptResult(
        "http_error",
        code,
        error=f"HTTP {code}",
        body=text,
        retry_after=retry_after,
        duration_ms=took(),
    )


def _endpoint_row(conn: Connection, name: str) -> Row[Any]:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(WebhookEndpoint)
        .values(name=name, consecutive_failures=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return conn.execute(select(WebhookEndpoint).where(WebhookEndpoint.name == name)).one()


def post_webhook(
    engine: Engine,
    client: httpx.Client,
    *,
    hook: WebhookSettings,
    message: Row[Any],
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
    worker: str,
) -> AttemptResult:
    """Send one claimed message and record the attempt, its outcome and the endpoint's health
    in one transaction."""
    result = _send(client, hook, message, now=now)
    attempt = message.attempts + 1
    with engine.begin() as conn:
        conn.execute(
            sa_insert(AlertAttempt).values(
                message_id=message.message_id,
                webhook=hook.name,
                attempt=attempt,
                started_at=now,
                duration_ms=result.duration_ms,
                outcome=result.outcome,
                status_code=result.status_code,
                error=result.error,
                response_body=result.body,
                worker=worker,
            )
        )
        endpoint = _endpoint_row(conn, hook.name)
        values: dict[str, Any] = {
            "attempts": attempt,
            "last_attempt_at": now,
            "claimed_by": None,
        }
        ep: dict[str, Any] = {}
        if result.ok:
            values.update(status="delivered", delivered_at=now, last_error=None)
            ep.update(failing_since=None, consecutive_failures=0, last_success_at=now)
        else:
            values["last_error"] = result.error
            wait = policy.delay(attempt, rng)
            if result.retry_after is not None:
                wait = max(wait, min(result.retry_after, policy.max_retry_after))
            start = max(message.created_at, message.held_until or message.created_at)
            if now + wait - start > policy.horizon:
                values.update(status="failed", next_attempt_at=None)
                values["last_error"] = f"retries exhausted after {attempt} attempts: {result.error}"
            else:
                values["next_attempt_at"] = now + wait
            failing_since = endpoint.failing_since or now
            failures = endpoint.consecutive_failures + 1
            ep.update(
                failing_since=failing_since,
                consecutive_failures=failures,
                last_failure_at=now,
                last_error=result.error,
            )
            reason = None
            if result.outcome == "gone":
                reason = "the receiver answered 410 Gone"
            elif failures >= DISABLE_MIN_FAILURES and now - failing_since >= policy.disable_after:
                reason = (
                    f"every attempt failed since {failing_since.isoformat()} ({failures} attempts)"
                )
            if reason is not None and endpoint.disabled_at is None:
                ep.update(disabled_at=now, disabled_reason=reason)
                log.warning(
                    "webhook %s disabled: %s", hook.name, reason, extra={"webhook": hook.name}
                )
        conn.execute(update(OutboxMessage).where(OutboxMessage.id == message.id).values(**values))
        conn.execute(update(WebhookEndpoint).where(WebhookEndpoint.name == hook.name).values(**ep))
    level = logging.INFO if result.ok else logging.WARNING
    log.log(
        level,
        "webhook %s message %s attempt %d: %s%s",
        hook.name,
        message.message_id,
        attempt,
        result.outcome,
        f" ({result.error})" if result.error else "",
        extra={"webhook": hook.name, "message_id": message.message_id, "attempt": attempt},
    )
    return result


def _disabled(conn: Connection) -> set[str]:
    rows = conn.execute(
        select(WebhookEndpoint.name).where(WebhookEndpoint.disabled_at.is_not(None))
    )
    return {r[0] for r in rows}


def _claim(
    engine: Engine,
    *,
    webhooks: Sequence[WebhookSettings],
    now: datetime,
    worker: str,
    limit: int,
) -> list[Row[Any]]:
    names = [w.name for w in webhooks if w.enabled]
    lease = {w.name: timedelta(seconds=w.timeout_seconds) + LEASE_MARGIN for w in webhooks}
    claimed: list[Row[Any]] = []
    with engine.connect() as conn:
        blocked = _disabled(conn)
        candidates = list(
            conn.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at <= now,
                    OutboxMessage.webhook.in_([n for n in names if n not in blocked]),
                )
                .order_by(OutboxMessage.id)
                .limit(limit)
            ).all()
        )
    for m in candidates:
        with engine.begin() as conn:
            won = conn.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == m.id,
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at == m.next_attempt_at,
                )
                .values(next_attempt_at=now + lease[m.webhook], claimed_by=worker)
            ).rowcount
        if won:
            claimed.append(m)
    return claimed


def deliver_due(
    engine: Engine,
    settings: AlertSettings,
    *,
    client: httpx.Client,
    now: datetime,
    worker: str | None = None,
    limit: int = 500,
    rng: random.Random | None = None,
    max_threads: int = 8,
) -> DeliveryStats:
    """Send every message due at ``now`` (at most ``limit``); returns what happened."""
    worker = worker or worker_name()
    rng = rng or random.Random()
    policy = RetryPolicy.from_settings(settings)
    hooks = {w.name: w for w in settings.webhooks}
    claimed = _claim(engine, webhooks=settings.webhooks, now=now, worker=worker, limit=limit)
    stats = DeliveryStats(disabled=[])
    if not claimed:
        return stats
    by_hook: dict[str, list[Row[Any]]] = {}
    for m in claimed:
        by_hook.setdefault(m.webhook, []).append(m)

    def run(name: str) -> list[AttemptResult]:
        results = []
        for m in by_hook[name]:
            r = post_webhook(
                engine,
                client,
                hook=hooks[name],
                message=m,
                policy=policy,
                now=now,
                rng=rng,
                worker=worker,
            )
            results.append(r)
            if r.outcome == "gone":
                break  # the endpoint is disabled now: the rest wait for it to be enabled
        return results

    if len(by_hook) == 1:
        outcomes = [run(next(iter(by_hook)))]
    else:
        with ThreadPoolExecutor(max_workers=min(max_threads, len(by_hook))) as pool:
            outcomes = list(pool.map(run, sorted(by_hook)))
    for results in outcomes:
        for r in results:
            stats.attempted += 1
            stats.delivered += r.ok
            stats.failed_attempts += not r.ok
    # release claims of messages skipped after a 410 (they wait for the endpoint)
    with engine.begin() as conn:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.claimed_by == worker, OutboxMessage.status == "pending")
            .values(claimed_by=None, next_attempt_at=now)
        )
        stats.exhausted = int(
            conn.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.status == "failed",
                    OutboxMessage.last_attempt_at == now,
                    OutboxMessage.id.in_([m.id for m in claimed]),
                )
            ).scalar_one()
        )
        stats.disabled = sorted(_disabled(conn) & set(by_hook))
    return stats


def redeliver(
    engine: Engine,
    *,
    webhook: str,
    now: datetime,
    message_ids: Sequence[str] | None = None,
    since: datetime | None = None,
    include_delivered: bool = False,
) -> int:
    """Queue messages of ``webhook`` again, with their original ``webhook-id``.

    Picks the listed ``message_ids``, or every failed (and, with ``include_delivered``, also
    delivered) message raised at or after ``since``. Each gets a fresh retry horizon.
    """
    statuses = ["failed", "cancelled"] + (["delivered"] if include_delivered else [])
    cond = [OutboxMessage.webhook == webhook]
    if message_ids is not None:
        cond.append(OutboxMessage.message_id.in_(list(message_ids)))
        cond.append(OutboxMessage.status != "pending")
    else:
        cond.append(OutboxMessage.status.in_(statuses))
        if since is not None:
            cond.append(OutboxMessage.created_at >= since)
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(OutboxMessage)
                .where(and_(*cond))
                .values(
                    status="pending",
                    next_attempt_at=now,
                    held_until=now,
                    claimed_by=None,
                    delivered_at=None,
                    last_error=None,
                )
            ).rowcount
        )


def enable_endpoint(engine: Engine, *, webhook: str, now: datetime) -> bool:
    """Enable a disabled endpoint again; its waiting messages go on the next round.

    Returns False when it was not disabled.
    """
    with engine.begin() as conn:
        changed = conn.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.name == webhook, WebhookEndpoint.disabled_at.is_not(None))
            .values(
                disabled_at=None,
                disabled_reason=None,
                failing_since=None,
                consecutive_failures=0,
            )
        ).rowcount
        if changed:
            conn.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.webhook == webhook,
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at > now,
                    or_(OutboxMessage.held_until.is_(None), OutboxMessage.held_until <= now),
                )
                .values(next_attempt_at=now, held_until=now)
            )
    return bool(changed)


def check_webhooks(settings: AlertSettings) -> list[tuple[str, str]]:
    """Problems of the configured webhooks found before any delivery: unreadable URL or secret,
    or a URL the egress policy can never allow (judged without DNS; connecting checks again).

    Returns ``(key, reason)`` pairs for ``ConfigError``; empty when all is well.
    """
    policy = EgressPolicy.from_settings(settings)
    problems = []
    for hook in settings.webhooks:
        key = f"alerts.webhooks[{hook.name}]"
        try:
            url = hook.target()
            hook.secrets()
        except ValueError as e:
            problems.append((key, str(e)))
            continue
        problem = policy.url_problem(url)
        if problem is not None:
            problems.append((key, f"refused by the egress policy: {problem}"))
    return problems


def prune(engine: Engine, *, now: datetime, keep_days: int) -> int:
    """Drop attempts, and finished messages (delivered, failed, cancelled), older than
    ``keep_days``; pending messages and episodes are kept. Returns the rows deleted."""
    cutoff = now - timedelta(days=keep_days)
    with engine.begin() as conn:
        attempts = conn.execute(
            AlertAttempt.__table__.delete().where(AlertAttempt.started_at < cutoff)  # type: ignore[attr-defined]
        ).rowcount
        messages = conn.execute(
            OutboxMessage.__table__.delete().where(  # type: ignore[attr-defined]
                OutboxMessage.status.in_(["delivered", "failed", "cancelled"]),
                OutboxMessage.created_at < cutoff,
            )
        ).rowcount
    return int(attempts) + int(messages)
