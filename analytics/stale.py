"""Stale calls: open tickets nobody has really touched for too long.

Real activity (docs/metrics.md "Stale calls") is an event of one of ``StaleSettings.
activity_fields`` — by default a state or status change, a team or assignee change, or a
customer-visible update — made by an actor not listed in ``system_actors``. Priority changes,
internal notes and system touches do not reset the clock. A ticket without any real activity is
measured from its creation.

A ticket is *stale* when the business time since its last real activity, in the work calendar of
its team (else its source), reaches the threshold of its priority (defaults: P1 4 business hours,
P2 1 business day, P3 3, P4/P5 5). It is *dead?* when the calendar time since then reaches
``dead_after`` (45 days), whatever its priority.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import Calendars
from analytics.frames import FIELDS, NAT, from_ns, td, timestamp_ns
from analytics.log import TicketLog
from analytics.result import Result
from analytics.settings import StaleSettings
from analytics.snapshot import (
    business_text,
    context_frame,
    hours_text,
    open_snapshot,
    priority_text,
    thresholds_ns,
)
from analytics.stats import rows_of

__all__ = ["last_activity", "stale_calls"]

I64 = npt.NDArray[np.int64]

LAST_ACTIVITY_AT = "last_activity_at"
LAST_ACTIVITY = "last_activity"
AGE = "age"
BUSINESS_AGE = "business_age"
THRESHOLD = "threshold"
OVERDUE = "overdue"
DEAD = "dead"
REASON = "reason"
CREATED = "created"
_SINCE_TEXT = {f: f"since the last {f.replace('_', ' ')} change" for f in FIELDS} | {
    "customer_update": "since the last customer update",
    "internal_update": "since the last internal update",
    CREATED: "since creation",
}


def last_activity(
    log: TicketLog,
    *,
    tickets: I64,
    now: int,
    fields: frozenset[str],
    ignore_actors: frozenset[str],
) -> tuple[I64, npt.NDArray[np.object_]]:
    """For each of ``tickets`` (sorted rows): instant and field of its last event of ``fields``
    at or before ``now`` whose actor is not ignored (``NAT`` / None when there is none)."""
    rows = rows_of(log.ev_offsets, tickets)
    table = np.zeros(len(FIELDS), dtype=bool)
    table[[FIELDS.index(f) for f in fields]] = True
    mask = table[log.ev_field[rows]] & (log.ev_time[rows] <= now)
    if ignore_actors:
        mask &= ~np.isin(log.ev_actor[rows], np.array(sorted(ignore_actors), dtype=object))
    rows = rows[mask]
    tk = log.ev_ticket[rows]
    last = np.ones(len(rows), dtype=bool)
    if len(rows):
        last[:-1] = tk[1:] != tk[:-1]
    picked = rows[last]
    pos = np.searchsorted(tickets, log.ev_ticket[picked])
    when = np.full(len(tickets), NAT, dtype=np.int64)
    what = np.full(len(tickets), None, dtype=object)
    when[pos] = log.ev_time[picked]
    what[pos] = np.array(FIELDS, dtype=object)[log.ev_field[picked]]
    return when, what


def stale_calls(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: StaleSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[StaleSettings]:
    """Open tickets whose last real activity is older than their priority's threshold.

    One row per stale ticket, most overdue first (dead ones first): context columns,
    ``last_activity_at`` and ``last_activity`` (the field of that event, or ``created``), ``age``
    (calendar), ``business_age``, ``threshold`` (business), ``overdue`` (business_age /
    threshold), ``dead`` and a readable ``reason``. ``n`` counts the open tickets examined.
    """
    settings = settings or StaleSettings()
    calendars = calendars or Calendars()
    now_ns = timestamp_ns(now)
    snap = open_snapshot(log, now=now_ns, calendars=calendars)
    last, kind = last_activity(
        log,
        tickets=snap.rows,
        now=now_ns,
        fields=settings.activity_fields,
        ignore_actors=settings.system_actors,
    )
    no_activity = last == NAT
    last = np.where(no_activity, log.created[snap.rows], last)
    kind = np.where(no_activity, CREATED, kind)
    age = now_ns - last
    business = snap.business_since(calendars, last)
    threshold = thresholds_ns(
        settings.thresholds, settings.unknown_priority, snap.priority, calendars, snap.calendar
    )
    stale = business >= threshold
    dead = age >= int(settings.dead_after.total_seconds() * 1e9)
    pick = np.flatnonzero(stale | dead)

    frame = context_frame(log, snap, pick)
    frame[LAST_ACTIVITY_AT] = from_ns(last[pick])
    frame[LAST_ACTIVITY] = kind[pick]
    frame[AGE] = td(age[pick])
    frame[BUSINESS_AGE] = td(business[pick])
    frame[THRESHOLD] = td(threshold[pick])
    with np.errstate(divide="ignore", invalid="ignore"):
        frame[OVERDUE] = np.where(threshold[pick] > 0, business[pick] / threshold[pick], np.inf)
    frame[DEAD] = dead[pick]
    since = pd.Series(kind[pick]).map(_SINCE_TEXT)
    text = (
        "no real activity for "
        + business_text(business[pick])
        + " ("
        + hours_text(age[pick])
        + " calendar) "
        + since
        + "; threshold "
        + business_text(threshold[pick])
        + " for "
        + priority_text(snap.priority[pick])
    )
    frame[REASON] = np.where(
        dead[pick], "dead? " + text.to_numpy(dtype=object), text.to_numpy(dtype=object)
    )
    frame = frame.sort_values([DEAD, OVERDUE], ascending=False, kind="stable")
    return Result(
        name="stale_calls",
        frame=frame.reset_index(drop=True),
        n=len(snap.rows),
        n_of="open tickets examined",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        calendars=calendars,
        definition="docs/metrics.md#stale-calls",
        notes=(f"dead? after {settings.dead_after.days} calendar days without real activity",),
    )
