"""Flow blockers: what holds open tickets up right now, each with a reason and an age.

Kinds (docs/metrics.md "Flow blockers"):

- ``waiting_customer`` / ``waiting_supplier`` / ``waiting_other``: in a waiting state; age since
  the ticket entered it.
- ``queued``: in state new (nobody picked it up) longer than the queue threshold of its priority;
  ``unassigned``: in progress (or another state of ours) with nobody assigned, longer than that
  threshold. Sources that never record assignees are not checked for ``unassigned``.
- ``ping_pong``: the team sequence went A→B→A; age since the first bounce.
- ``sla_breached`` / ``sla_risk``: past the target (``due_at``, or creation + the priority's
  ``sla_targets`` in business time when the ticket has none), or at least 50 / 75 / 90 % of the
  target window used; age since the band was entered.
- ``customer_not_updated``: the ball is with us (``our_court_states``) and the customer has not
  heard from us for longer than the cadence of the priority. The clock starts at the latest of:
  the last customer-visible update not made by the requester, the ticket's return into our court,
  its creation.

Business ages are measured in the work calendar of the ticket's current team (else source).

Here: waiting, queue and the combined frame (with ping-pong). SLA risk lives in
``analytics.sla``, customers not updated in ``analytics.updates`` (both re-exported here), the
shared columns and helpers in ``analytics.blockerbase``.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from analytics.blockerbase import (
    AGE,
    BLOCKER,
    BLOCKER_COLUMNS,
    BLOCKER_ORDER,
    REASON,
    THRESHOLD,
    blocker_frame,
    blocker_result,
    blocker_setup,
)
from analytics.clock import Calendars, business_between
from analytics.frames import (
    NAT,
    NEW,
    STATES,
    WAITING_CUSTOMER,
    WAITING_OTHER,
    WAITING_SUPPLIER,
    td,
    timestamp_ns,
)
from analytics.log import TicketLog
from analytics.pingpong import bounces
from analytics.result import Result
from analytics.settings import BlockerSettings, FlowSettings
from analytics.sla import sla_risk
from analytics.snapshot import (
    business_text,
    hours_text,
    open_snapshot,
    priority_text,
    thresholds_ns,
)
from analytics.updates import customers_not_updated

__all__ = [
    "BLOCKER_COLUMNS",
    "BLOCKER_ORDER",
    "combine_blockers",
    "customers_not_updated",
    "flow_blockers",
    "queue_blockers",
    "sla_risk",
    "waiting_blockers",
]

_WAITING_TEXT = {
    WAITING_CUSTOMER: "waiting on the customer",
    WAITING_SUPPLIER: "waiting on a supplier",
    WAITING_OTHER: "waiting (reason not recorded)",
}


def waiting_blockers(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Open tickets in a waiting state, longest waiting first."""
    snap, settings, calendars = blocker_setup(log, now, settings, calendars)
    waiting = [STATES.index(s) for s in _WAITING_TEXT]
    pick = np.flatnonzero(np.isin(snap.state, waiting))
    since = snap.state_since[pick]
    business = business_between(
        calendars, snap.calendar[pick], since, np.full(len(pick), snap.now, dtype=np.int64)
    )
    kind = np.array(STATES, dtype=object)[snap.state[pick]]
    frame = blocker_frame(log, snap, pick, kind, since, business)
    frame[REASON] = (
        pd.Series(kind).map(_WAITING_TEXT)
        + " for "
        + hours_text(snap.now - since)
        + " ("
        + business_text(business)
        + ")"
    ).to_numpy(dtype=object)
    return blocker_result("waiting_blockers", frame, snap, settings, calendars)


def queue_blockers(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Queued (state new) or unassigned open tickets older than their priority's threshold."""
    snap, settings, calendars = blocker_setup(log, now, settings, calendars)
    queued = snap.state == STATES.index(NEW)
    ours = np.isin(snap.state, [STATES.index(s) for s in settings.our_court_states])
    unassigned = ours & ~queued & snap.assignee_tracked & pd.isna(snap.assignee)
    since = np.where(queued, snap.state_since, snap.assignee_since)
    since = np.where(since == NAT, log.created[snap.rows], since)
    business = snap.business_since(calendars, since)
    threshold = thresholds_ns(
        settings.queue_thresholds,
        settings.unknown_priority,
        snap.priority,
        calendars,
        snap.calendar,
    )
    pick = np.flatnonzero((queued | unassigned) & (business >= threshold))
    kind = np.where(queued[pick], "queued", "unassigned").astype(object)
    frame = blocker_frame(log, snap, pick, kind, since[pick], business[pick])
    frame[THRESHOLD] = td(threshold[pick])
    what = np.where(queued[pick], "queued, not picked up", "nobody assigned").astype(object)
    frame[REASON] = (
        pd.Series(what)
        + " for "
        + business_text(business[pick])
        + " ("
        + hours_text(snap.now - since[pick])
        + " calendar); threshold "
        + business_text(threshold[pick])
        + " for "
        + priority_text(snap.priority[pick])
    ).to_numpy(dtype=object)
    return blocker_result("queue_blockers", frame, snap, settings, calendars)


def flow_blockers(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
    flow: FlowSettings | None = None,
) -> Result[BlockerSettings]:
    """Every blocker of every open ticket in one frame (a ticket can have several).

    Columns: context (``source``, ``ticket_id``, ``priority``, ``state``, ``team``,
    ``assignee``) and ``blocker``, ``reason``, ``since``, ``age``, ``business_age``; sorted by
    kind then age. ``n`` counts the open tickets examined.
    """
    _snap, settings, calendars = blocker_setup(log, now, settings, calendars)
    parts = [
        f(log, now=now, settings=settings, calendars=calendars)
        for f in (sla_risk, queue_blockers, waiting_blockers, customers_not_updated)
    ]
    return combine_blockers(log, parts, now=now, settings=settings, calendars=calendars, flow=flow)


def combine_blockers(
    log: TicketLog,
    parts: list[Result[BlockerSettings]],
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings,
    calendars: Calendars,
    flow: FlowSettings | None = None,
) -> Result[BlockerSettings]:
    """``flow_blockers`` from already computed blocker results, plus open ping-pong."""
    snap = open_snapshot(log, now=timestamp_ns(now), calendars=calendars)
    frames = [p.frame for p in parts]
    pp = bounces(
        log,
        now=snap.now,
        field=settings.pingpong_field,
        open_only=True,
        settings=flow or FlowSettings(),
    )
    if len(pp.flagged):
        pick = np.searchsorted(snap.rows, pp.flagged)
        since = pp.first_bounce
        business = business_between(
            calendars, snap.calendar[pick], since, np.full(len(since), snap.now, np.int64)
        )
        pf = blocker_frame(log, snap, pick, "ping_pong", since, business)
        pf[REASON] = (
            pd.Series(pp.bounces).astype(str)
            + " bounce(s) between "
            + pd.Series(pp.teams).astype(str)
            + f" {settings.pingpong_field}s: "
            + pd.Series(pp.paths, dtype=object)
        ).to_numpy(dtype=object)
        frames.append(pf)
    columns = [*frames[0].columns[:6], *BLOCKER_COLUMNS]
    frame = pd.concat([p[columns] for p in frames], ignore_index=True)
    rank = frame[BLOCKER].map({k: i for i, k in enumerate(BLOCKER_ORDER)})
    age = frame[AGE].to_numpy(dtype="timedelta64[ns]").view(np.int64)
    order = np.lexsort((-age, rank.to_numpy(dtype=np.int64)))
    return blocker_result("flow_blockers", frame.iloc[order], snap, settings, calendars, sort=None)
