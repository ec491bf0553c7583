"""Alerts, the pure part: which conditions hold now, and what that means for each episode.

No I/O here. ``collect_conditions`` turns the warehouse frames into one row per condition on a
subject (a ticket, or an operator for ``overloaded``/``absent``) using the ``analytics``
package; ``match_rules`` pairs them with the configured rules; ``build_alerts`` compares them
with the episodes still open and says what to do:

- a condition that holds and has no open episode -> ``opened`` (a new episode);
- one that holds and has an open episode -> ``seen`` (no message), or ``reminder`` once the
  rule's ``reminder_hours`` have passed since the start (or the last reminder), at most
  ``max_reminders`` times;
- an open episode whose condition no longer holds -> ``cleared`` (a message if the rule
  sends them). When the condition comes back later, that is a new episode and a new alert.
- more than ``max_opened_per_run`` new episodes of one rule in one run: the first ones get their
  own message, the rest are folded into one ``summary`` (and stay silent later).

The episode key is (rule, source, subject, condition); ``app.warehouse.alerts_store`` writes
the plan and its outbox messages in one transaction, under a unique constraint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd

from analytics import (
    BlockerSettings,
    Calendars,
    StaleSettings,
    flow_blockers,
    operator_load,
    prepare_log,
    stale_calls,
)
from app.alert_settings import WEEKDAYS, AlertRuleSettings, QuietHoursSettings

__all__ = [
    "CONDITION_COLUMNS",
    "OPERATOR_SOURCE",
    "Alert",
    "EpisodeState",
    "build_alerts",
    "collect_conditions",
    "match_rules",
    "quiet_until",
]

OPERATOR_SOURCE = "*"
"""the ``source`` of operator conditions (an operator can hold tickets of several sources)"""
CONDITION_COLUMNS = (
    "condition",
    "source",
    "subject",
    "team",
    "assignee",
    "priority",
    "state",
    "reason",
    "since",
    "number",
    "title",
    "url",
)
TICKET_BLOCKERS = frozenset(
    {
        "sla_breached",
        "sla_risk",
        "queued",
        "unassigned",
        "ping_pong",
        "waiting_customer",
        "waiting_supplier",
        "waiting_other",
        "customer_not_updated",
    }
)
AlertKind = Literal["opened", "seen", "reminder", "cleared", "summary"]
Key = tuple[str, str, str, str]
"""(rule, source, subject, condition)"""


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CONDITION_COLUMNS})


def collect_conditions(
    tickets: pd.DataFrame,
    events: pd.DataFrame,
    *,
    now: datetime,
    stale: StaleSettings | None = None,
    blockers: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> pd.DataFrame:
    """Every condition that holds at ``now``: one row per (condition, source, subject).

    Uses ``analytics.stale.stale_calls`` (``stale``, reason says ``dead?`` for very old ones),
    ``analytics.blockers.flow_blockers`` (SLA, queue, waiting, ping-pong, customer updates) and
    ``analytics.workload.operator_load`` (``overloaded``, ``absent``). Columns:
    ``CONDITION_COLUMNS``; ``since`` is when the condition began per the analytics.
    """
    if tickets.empty:
        return _empty()
    log = prepare_log(tickets, events)
    parts: list[pd.DataFrame] = []

    st = stale_calls(log, now=now, settings=stale, calendars=calendars).frame
    if len(st):
        parts.append(
            pd.DataFrame(
                {
                    "condition": "stale",
                    "source": st["source"],
                    "subject": st["ticket_id"],
                    "team": st["team"],
                    "assignee": st["assignee"],
                    "priority": st["priority"],
                    "state": st["state"],
                    "reason": st["reason"],
                    "since": st["last_activity_at"],
                }
            )
        )
    fb = flow_blockers(log, now=now, settings=blockers, calendars=calendars).frame
    if len(fb):
        fb = fb[fb["blocker"].isin(TICKET_BLOCKERS)]
        parts.append(
            pd.DataFrame(
                {
                    "condition": fb["blocker"],
                    "source": fb["source"],
                    "subject": fb["ticket_id"],
                    "team": fb["team"],
                    "assignee": fb["assignee"],
                    "priority": fb["priority"],
                    "state": fb["state"],
                    "reason": fb["reason"],
                    "since": fb["since"],
                }
            )
        )
    ops = operator_load(log, now=now, settings=blockers, calendars=calendars).frame
    for flag in ("overloaded", "absent"):
        hit = ops[ops[flag].fillna(False).astype(bool)] if len(ops) else ops
        if len(hit):
            parts.append(
                pd.DataFrame(
                    {
                        "condition": flag,
                        "source": OPERATOR_SOURCE,
                        "subject": hit["assignee"],
                        "team": hit["team"],
                        "assignee": hit["assignee"],
                        "priority": pd.NA,
                        "state": None,
                        "reason": hit["reason"],
                        "since": hit["last_activity_at"] if flag == "absent" else pd.NaT,
                    }
                )
            )
    if not parts:
        return _empty()
    frame = pd.concat([p.astype(object) for p in parts], ignore_index=True)
    info = tickets[["source", "external_id", "number", "title", "url"]].rename(
        columns={"external_id": "subject"}
    )
    frame = frame.merge(info, on=["source", "subject"], how="left")
    frame = frame.drop_duplicates(["condition", "source", "subject"], keep="first")
    return frame.loc[:, list(CONDITION_COLUMNS)].reset_index(drop=True)


def _matches(values: Sequence[Any], value: Any) -> bool:
    return not values or (value is not None and not pd.isna(value) and value in values)


def match_rules(conditions: pd.DataFrame, rules: Sequence[AlertRuleSettings]) -> pd.DataFrame:
    """The conditions each rule watches: the rows of ``conditions`` with a ``rule`` column
    (a row appears once per rule that takes it)."""
    out = []
    for rule in rules:
        mask = conditions["condition"].isin(rule.conditions)
        if rule.sources:
            mask &= conditions["source"].isin([*rule.sources, OPERATOR_SOURCE])
        if rule.teams:
            mask &= conditions["team"].isin(rule.teams)
        if rule.priorities:
            operator = conditions["source"] == OPERATOR_SOURCE
            prio = pd.to_numeric(conditions["priority"], errors="coerce")
            mask &= operator | prio.isin(rule.priorities)
        picked = conditions[mask]
        if len(picked):
            out.append(picked.assign(rule=rule.name))
    if not out:
        return _empty().assign(rule=pd.Series(dtype=object))
    return pd.concat(out, ignore_index=True)


@dataclass(frozen=True)
class EpisodeState:
    """An open episode as stored."""

    id: int
    rule: str
    source: str
    subject: str
    condition: str
    opened_at: datetime
    reminders: int = 0
    reminded_at: datetime | None = None
    notified: bool = True

    @property
    def key(self) -> Key:
        return (self.rule, self.source, self.subject, self.condition)


@dataclass(frozen=True)
class Alert:
    """One decision of ``build_alerts``."""

    kind: AlertKind
    rule: str
    key: Key | None
    """None for a summary"""
    row: Mapping[str, Any] = field(default_factory=dict)
    """the condition's current values (empty when it cleared)"""
    episode_id: int | None = None
    """the open episode it concerns (None for ``opened`` and ``summary``)"""
    notify: bool = True
    """whether a message goes out (False: recorded only)"""
    reminder: int = 0
    """for reminders: which one (1, 2, ...)"""
    folded: tuple[Mapping[str, Any], ...] = ()
    """for a summary: the episodes it stands for"""


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v is None or (not isinstance(v, str | list | dict) and pd.isna(v)):
            out[k] = None
        elif isinstance(v, pd.Timestamp):
            out[k] = v.to_pydatetime()
        elif hasattr(v, "item"):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def build_alerts(
    matched: pd.DataFrame,
    open_episodes: Iterable[EpisodeState],
    rules: Sequence[AlertRuleSettings],
    *,
    now: datetime,
) -> list[Alert]:
    """What this run means for every episode (see the module docstring)."""
    by_rule = {r.name: r for r in rules}
    episodes = {e.key: e for e in open_episodes}
    rows: dict[Key, dict[str, Any]] = {}
    for rec in matched.to_dict("records"):
        row = _clean({str(k): v for k, v in rec.items()})
        rows[(row["rule"], row["source"], str(row["subject"]), row["condition"])] = row
    alerts: list[Alert] = []
    new: dict[str, list[tuple[Key, dict[str, Any]]]] = {}
    for key, row in rows.items():
        ep = episodes.get(key)
        if ep is None:
            new.setdefault(key[0], []).append((key, row))
            continue
        rule = by_rule[key[0]]
        due = (
            rule.reminder_hours is not None
            and ep.reminders < rule.max_reminders
            and now - (ep.reminded_at or ep.opened_at) >= timedelta(hours=rule.reminder_hours)
        )
        kind: AlertKind = "reminder" if due else "seen"
        alerts.append(
            Alert(
                kind,
                key[0],
                key,
                row,
                episode_id=ep.id,
                notify=due and ep.notified,
                reminder=ep.reminders + 1 if due else 0,
            )
        )
    for key, ep in episodes.items():
        if key in rows:
            continue
        cleared_rule = by_rule.get(key[0])
        notify = cleared_rule is not None and cleared_rule.send_cleared and ep.notified
        alerts.append(Alert("cleared", key[0], key, {}, episode_id=ep.id, notify=notify))
    for name, items in new.items():
        cap = by_rule[name].max_opened_per_run
        items.sort(key=lambda kr: (_prio(kr[1]), str(kr[1].get("since") or ""), kr[0]))
        for i, (key, row) in enumerate(items):
            alerts.append(Alert("opened", name, key, row, notify=i < cap))
        if len(items) > cap:
            folded = tuple(row for _, row in items[cap:])
            alerts.append(Alert("summary", name, None, {}, folded=folded))
    return alerts


def _prio(row: Mapping[str, Any]) -> int:
    p = row.get("priority")
    return int(p) if isinstance(p, int | float) and not pd.isna(p) else 9


def _quiet_window(q: QuietHoursSettings, now: datetime) -> datetime | None:
    """The end of the quiet time of ``q`` that ``now`` falls in, None when not in one."""
    zone = ZoneInfo(q.timezone)
    local = now.astimezone(zone)
    for back in (0, 1):
        day = (local - timedelta(days=back)).date()
        if WEEKDAYS[day.weekday()] not in q.days:
            continue
        start = datetime.combine(day, q.start, tzinfo=zone)
        end_day = day if q.end > q.start else day + timedelta(days=1)
        end = datetime.combine(end_day, q.end, tzinfo=zone)
        if start <= local < end:
            return end.astimezone(now.tzinfo)
    return None


def quiet_until(
    quiet_hours: Sequence[QuietHoursSettings],
    *,
    team: str | None,
    priority: int | None,
    now: datetime,
) -> datetime | None:
    """When the quiet time ``now`` falls in ends for ``team`` (None: not quiet, send now).

    A team's own entries apply; a ``*`` entry applies to teams without one. Priorities listed
    in ``except_priorities`` are never held.
    """
    own = [q for q in quiet_hours if q.team == team]
    applicable = own or [q for q in quiet_hours if q.team == "*"]
    ends = []
    for q in applicable:
        if priority is not None and priority in q.except_priorities:
            continue
        end = _quiet_window(q, now)
        if end is not None:
            ends.append(end)
    return max(ends) if ends else None
