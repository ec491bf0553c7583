"""Alert messages: the event each alert becomes, its rendering per receiver, and signatures.

Pure functions. An event is stored in the outbox as Standard Webhooks' ``{type, timestamp,
data}``; ``render`` turns it into the exact bytes sent (the same bytes on every attempt):

- ``standard``: the event as compact JSON, signed per the Standard Webhooks spec
  (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>`` of
  ``{id}.{timestamp}.{body}``, one signature per configured secret while rotating);
- ``slack``: an incoming-webhook message (``text`` plus Block Kit sections);
- ``teams``: a message with one Adaptive Card attachment (what Teams' Workflows webhooks take).

Ticket titles and reasons come from the helpdesk, so they are escaped for Slack's mrkdwn and
the cards' markdown, and long ones are cut: an event stays well under 20 KB.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from app.alerts import OPERATOR_SOURCE, Alert

__all__ = [
    "alert_event",
    "digest_event",
    "message_id",
    "render",
    "sign",
    "signature_headers",
    "summary_event",
]

EVENT_TYPES = {
    "opened": "ticketflow.alert.opened",
    "reminder": "ticketflow.alert.reminder",
    "cleared": "ticketflow.alert.cleared",
    "summary": "ticketflow.alert.summary",
    "digest": "ticketflow.digest",
}
CONDITION_TEXT = {
    "stale": "Stale call",
    "sla_breached": "SLA breached",
    "sla_risk": "SLA at risk",
    "queued": "Not picked up",
    "unassigned": "Nobody assigned",
    "ping_pong": "Ping-pong between teams",
    "waiting_customer": "Waiting on the customer",
    "waiting_supplier": "Waiting on a supplier",
    "waiting_other": "Waiting",
    "customer_not_updated": "Customer not updated",
    "overloaded": "Operator overloaded",
    "absent": "Operator absent",
}
_MAX_TEXT = 500
_DIGEST_ITEMS = 50


def message_id(*parts: object) -> str:
    """A ``webhook-id``: stable for the same parts, no ``.``, safe in headers."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f"msg_{digest}"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _cut(value: Any, limit: int = _MAX_TEXT) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(public_url: str | None, path: str) -> str | None:
    return None if public_url is None else public_url.rstrip("/") + path


def alert_event(
    alert: Alert,
    *,
    episode_id: int,
    opened_at: datetime,
    now: datetime,
    row: Mapping[str, Any],
    public_url: str | None = None,
) -> dict[str, Any]:
    """The event of an opened, reminder or cleared alert."""
    assert alert.key is not None
    rule, source, subject, condition = alert.key
    operator = source == OPERATOR_SOURCE
    data: dict[str, Any] = {
        "rule": rule,
        "condition": condition,
        "condition_text": CONDITION_TEXT.get(condition, condition),
        "subject_kind": "operator" if operator else "ticket",
        "source": None if operator else source,
        "subject": subject,
        "team": row.get("team"),
        "assignee": row.get("assignee"),
        "priority": row.get("priority"),
        "state": row.get("state"),
        "reason": _cut(row.get("reason")),
        "since": _iso(row.get("since")),
        "ticket": None
        if operator
        else {
            "id": subject,
            "number": row.get("number"),
            "title": _cut(row.get("title"), 300),
            "url": row.get("url"),
        },
        "episode": {
            "id": episode_id,
            "opened_at": _iso(opened_at),
            "cleared_at": _iso(now) if alert.kind == "cleared" else None,
            "reminder": alert.reminder or None,
        },
        "link": _link(public_url, f"/api/v1/alerts/{episode_id}"),
    }
    return {"type": EVENT_TYPES[alert.kind], "timestamp": _iso(now), "data": data}


def summary_event(
    rule: str, folded: Sequence[Mapping[str, Any]], *, now: datetime, public_url: str | None
) -> dict[str, Any]:
    """One message standing for many episodes opened in one run."""
    counts: dict[str, int] = {}
    for row in folded:
        counts[str(row.get("condition"))] = counts.get(str(row.get("condition")), 0) + 1
    return {
        "type": EVENT_TYPES["summary"],
        "timestamp": _iso(now),
        "data": {
            "rule": rule,
            "opened": len(folded),
            "by_condition": dict(sorted(counts.items())),
            "examples": [
                {
                    "condition": r.get("condition"),
                    "source": r.get("source"),
                    "subject": r.get("subject"),
                    "number": r.get("number"),
                    "title": _cut(r.get("title"), 120),
                }
                for r in folded[:20]
            ],
            "link": _link(public_url, f"/api/v1/alerts?rule={rule}&state=open"),
        },
    }


def digest_event(
    team: str,
    episodes: Sequence[Mapping[str, Any]],
    *,
    day: date,
    now: datetime,
    public_url: str | None,
) -> dict[str, Any]:
    """The daily digest of one team: what is open, by condition, oldest first."""
    counts: dict[str, int] = {}
    for e in episodes:
        counts[str(e["condition"])] = counts.get(str(e["condition"]), 0) + 1
    ordered = sorted(episodes, key=lambda e: (str(e["condition"]), _iso(e.get("since")) or ""))
    return {
        "type": EVENT_TYPES["digest"],
        "timestamp": _iso(now),
        "data": {
            "team": team,
            "date": day.isoformat(),
            "open": len(episodes),
            "by_condition": dict(sorted(counts.items())),
            "items": [
                {
                    "condition": e["condition"],
                    "source": None if e["source"] == OPERATOR_SOURCE else e["source"],
                    "subject": e["subject"],
                    "number": e.get("number"),
                    "title": _cut(e.get("title"), 120),
                    "reason": _cut(e.get("reason"), 200),
                    "since": _iso(e.get("since")),
                }
                for e in ordered[:_DIGEST_ITEMS]
            ],
            "more": max(0, len(episodes) - _DIGEST_ITEMS),
            "link": _link(public_url, f"/api/v1/alerts?team={team}&state=open"),
        },
    }


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def _slack_escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_escape(text: Any) -> str:
    out = str(text)
    for ch in "\\*_[]()<>#`~|":
        out = out.replace(ch, "\\" + ch)
    return out


def _lines(event: Mapping[str, Any]) -> tuple[str, list[str], str | None]:
    """(headline, detail lines, link) of an event, unescaped."""
    d = event["data"]
    kind = str(event["type"]).rsplit(".", 1)[-1]
    if kind == "digest":
        head = f"Daily digest for {d['team']} ({d['date']}): {d['open']} open"
        lines = [f"{CONDITION_TEXT.get(k, k)}: {n}" for k, n in d["by_condition"].items()]
        lines += [
            f"• {CONDITION_TEXT.get(i['condition'], i['condition'])}: "
            f"{i.get('number') or i['subject']} {i.get('title') or ''}".rstrip()
            for i in d["items"][:15]
        ]
        if d["more"] or len(d["items"]) > 15:
            lines.append(f"… and {d['open'] - min(15, len(d['items']))} more")
        return head, lines, d.get("link")
    if kind == "summary":
        head = f"{d['opened']} new alerts for rule {d['rule']}"
        lines = [f"{CONDITION_TEXT.get(k, k)}: {n}" for k, n in d["by_condition"].items()]
        return head, lines, d.get("link")
    what = d["condition_text"]
    who = (
        f"operator {d['subject']}"
        if d["subject_kind"] == "operator"
        else f"ticket {(d['ticket'] or {}).get('number') or d['subject']}"
    )
    verb = {"opened": "", "reminder": "Reminder: ", "cleared": "Cleared: "}[kind]
    head = f"{verb}{what} — {who}"
    lines = []
    title = (d.get("ticket") or {}).get("title")
    if title:
        lines.append(str(title))
    if d.get("reason") and kind != "cleared":
        lines.append(str(d["reason"]))
    facts = [f"{k}: {d[k]}" for k in ("team", "assignee", "priority") if d.get(k) not in (None, "")]
    if facts:
        lines.append(" · ".join(facts))
    link = (d.get("ticket") or {}).get("url") or d.get("link")
    return head, lines, link


def _slack(event: Mapping[str, Any]) -> dict[str, Any]:
    head, lines, link = _lines(event)
    text = _slack_escape(head)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}
    ]
    if lines:
        body = "\n".join(_slack_escape(x) for x in lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
    if link:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open>"}]}
        )
    return {"text": text, "blocks": blocks}


def _teams(event: Mapping[str, Any]) -> dict[str, Any]:
    head, lines, link = _lines(event)
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _md_escape(head), "weight": "Bolder", "wrap": True}
    ]
    body += [{"type": "TextBlock", "text": _md_escape(x), "wrap": True} for x in lines]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def render(fmt: str, event: Mapping[str, Any]) -> bytes:
    """The request body for a receiver of format ``fmt`` (standard, slack, teams)."""
    if fmt == "standard":
        return _compact(event)
    if fmt == "slack":
        return _compact(_slack(event))
    if fmt == "teams":
        return _compact(_teams(event))
    raise ValueError(f"unknown webhook format `{fmt}`")


def sign(secret: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks v1 signature: ``v1,`` + base64 HMAC-SHA256 of id.ts.body."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(
    secrets: Sequence[bytes], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers (one signature per secret, space-separated)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            sign(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets
        ),
    }
