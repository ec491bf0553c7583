"""The demo's webhook inbox: receives the alert webhooks, checks their signatures, lists them.

- ``POST /demo/inbox/hooks``: the receiver the demo's ``[[alerts.webhooks]]`` entry points at.
  Each message is checked the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``
  within 5 minutes, ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``) and
  kept in memory (the last ``KEEP``), verified or not. Answers 204, or 400 when the signature
  does not verify (the delivery worker then retries, as it would against a real receiver).
- ``GET /demo/inbox``: the messages as a page (newest first, reloads itself every 5 s);
  ``GET /demo/inbox.json`` the same as JSON. Both need read access, like the dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.deps import BearerHeader, KeyHeader, chart_access
from app.security import DASHBOARD

__all__ = ["KEEP", "Inbox", "InboxMessage", "inbox_router", "verify_signature"]

KEEP = 500
TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class InboxMessage:
    received_at: str
    webhook_id: str
    type: str
    verified: bool
    problem: str | None
    summary: str
    data: dict[str, Any]


def verify_signature(
    secrets: Sequence[bytes], headers: dict[str, str], body: bytes, *, now: datetime
) -> str | None:
    """Why the message does not verify under any of ``secrets``; None when it does."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent = int(stamp)
    except ValueError:
        return "webhook-timestamp is not a number"
    if abs(now.timestamp() - sent) > TOLERANCE_SECONDS:
        return "webhook-timestamp is more than 5 minutes off"
    signed = f"{msg_id}.{sent}.".encode() + body
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest())
        for candidate in signatures.split():
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return None
    return "no signature matches"


class Inbox:
    """The received messages (thread-safe; newest last)."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self.secrets = list(secrets)
        self._messages: deque[InboxMessage] = deque(maxlen=KEEP)
        self._lock = threading.Lock()
        self.received = 0

    def receive(self, headers: dict[str, str], body: bytes, *, now: datetime) -> InboxMessage:
        problem = verify_signature(self.secrets, headers, body, now=now)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        if not isinstance(event, dict):
            event = {}
        found = event.get("data")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        message = InboxMessage(
            received_at=now.isoformat(timespec="seconds"),
            webhook_id=headers.get("webhook-id", ""),
            type=str(event.get("type", "?")),
            verified=problem is None,
            problem=problem,
            summary=_summary(event),
            data=data,
        )
        with self._lock:
            self._messages.append(message)
            self.received += 1
        return message

    def messages(self) -> list[InboxMessage]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._messages))


def _summary(event: dict[str, Any]) -> str:
    data = event.get("data")
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("by_condition"), dict):  # a summary of many new episodes
        counts = ", ".join(f"{k} {v}" for k, v in data["by_condition"].items())
        return f"rule {data.get('rule')}: {data.get('opened')} new episodes ({counts})"
    found = data.get("ticket")
    ticket: dict[str, Any] = found if isinstance(found, dict) else {}
    parts = [
        str(v)
        for v in (
            data.get("condition_text") or data.get("condition"),
            ticket.get("number"),
            ticket.get("title"),
            data.get("team"),
            data.get("assignee") or (data.get("subject") if not ticket else None),
        )
        if v
    ]
    return " · ".join(parts)[:300]


_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def inbox_router(inbox: Inbox) -> APIRouter:
    """The inbox routes for one ``Inbox``."""
    router = APIRouter(tags=["demo"])

    @router.post("/demo/inbox/hooks", include_in_schema=False)
    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        message = inbox.receive(headers, body, now=datetime.now(UTC))
        if not message.verified:
            return JSONResponse({"detail": message.problem}, status_code=400)
        return Response(status_code=204)

    @router.get("/demo/inbox.json", summary="The demo's received webhooks")
    def inbox_json(
        request: Request, key: KeyHeader, bearer: BearerHeader, token: str | None = None
    ) -> dict[str, Any]:
        chart_access(request, DASHBOARD, token=token, key=key, bearer=bearer)
        items = inbox.messages()
        return {"received": inbox.received, "items": [asdict(m) for m in items]}

    @router.get("/demo/inbox", response_class=HTMLResponse, include_in_schema=False)
    def inbox_page(
        request: Request, key: KeyHeader, bearer: BearerHeader, token: str | None = None
    ) -> HTMLResponse:
        chart_access(request, DASHBOARD, token=token, key=key, bearer=bearer)
        return HTMLResponse(
            _page(inbox), headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"}
        )

    return router


def _page(inbox: Inbox) -> str:
    rows = []
    for m in inbox.messages():
        mark = "✔ verified" if m.verified else f"✘ {escape(m.problem or '')}"
        rows.append(
            f"<tr><td>{escape(m.received_at)}</td><td>{escape(m.type)}</td>"
            f"<td>{escape(m.summary)}</td><td class='{'ok' if m.verified else 'bad'}'>{mark}</td>"
            f"<td><code>{escape(m.webhook_id)}</code></td></tr>"
        )
    body = (
        "<table><thead><tr><th>received (UTC)</th><th>type</th><th>what</th>"
        "<th>signature</th><th>webhook-id</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else "<p>No alert has arrived yet: the first evaluation runs right after the first "
        "sync.</p>"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='5'><title>ticketflow demo · webhook inbox</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}"
        "table{border-collapse:collapse;width:100%;font-size:.9rem}"
        "td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}"
        ".ok{color:#17803d}.bad{color:#b42318}code{font-size:.8rem}</style></head><body>"
        f"<h1>Webhook inbox</h1><p>{inbox.received} alert webhooks received "
        "(Standard Webhooks, signature checked here). <a href='/'>Dashboard</a></p>"
        f"{body}</body></html>"
    )
