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
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import Calendars, add_business, business_between
from analytics.frames import (
    DUE_AT,
    FIELD_CUSTOMER_UPDATE,
    FIELD_STATE,
    FIELDS,
    NAT,
    NEW,
    REQUESTER,
    STATES,
    WAITING_CUSTOMER,
    WAITING_OTHER,
    WAITING_SUPPLIER,
    from_ns,
    td,
    timestamp_ns,
)
from analytics.log import TicketLog
from analytics.pingpong import bounces
from analytics.result import Result
from analytics.settings import BlockerSettings, FlowSettings
from analytics.snapshot import (
    Snapshot,
    business_text,
    context_frame,
    hours_text,
    open_snapshot,
    priority_text,
    thresholds_ns,
)
from analytics.stats import rows_of

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

I64 = npt.NDArray[np.int64]

BLOCKER = "blocker"
REASON = "reason"
SINCE = "since"
AGE = "age"
BUSINESS_AGE = "business_age"
DUE = "due_at"
DUE_FROM = "due_from"
USED = "used"
BAND = "band"
THRESHOLD = "threshold"
BLOCKER_COLUMNS = ("blocker", "reason", "since", "age", "business_age")
BLOCKER_ORDER = (
    "sla_breached",
    "sla_risk",
    "queued",
    "unassigned",
    "ping_pong",
    WAITING_CUSTOMER,
    WAITING_SUPPLIER,
    WAITING_OTHER,
    "customer_not_updated",
)

_WAITING_TEXT = {
    WAITING_CUSTOMER: "waiting on the customer",
    WAITING_SUPPLIER: "waiting on a supplier",
    WAITING_OTHER: "waiting (reason not recorded)",
}


def _result(
    name: str,
    frame: pd.DataFrame,
    snap: Snapshot,
    settings: BlockerSettings,
    calendars: Calendars,
    sort: str = AGE,
) -> Result[BlockerSettings]:
    frame = frame.sort_values(sort, ascending=False, kind="stable").reset_index(drop=True)
    return Result(
        name=name,
        frame=frame,
        n=len(snap.rows),
        n_of="open tickets examined",
        now=pd.Timestamp(snap.now, tz="UTC"),
        settings=settings,
        calendars=calendars,
        definition="docs/metrics.md#flow-blockers",
    )


def _frame(
    log: TicketLog,
    snap: Snapshot,
    pick: I64,
    kind: npt.NDArray[np.object_] | str,
    since: I64,
    business: I64,
) -> pd.DataFrame:
    frame = context_frame(log, snap, pick)
    frame[BLOCKER] = kind
    frame[SINCE] = from_ns(since)
    frame[AGE] = td(snap.now - since)
    frame[BUSINESS_AGE] = td(business)
    return frame


def _setup(
    log: TicketLog,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None,
    calendars: Calendars | None,
) -> tuple[Snapshot, BlockerSettings, Calendars]:
    calendars = calendars or Calendars()
    snap = open_snapshot(log, now=timestamp_ns(now), calendars=calendars)
    return snap, settings or BlockerSettings(), calendars


def waiting_blockers(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Open tickets in a waiting state, longest waiting first."""
    snap, settings, calendars = _setup(log, now, settings, calendars)
    waiting = [STATES.index(s) for s in _WAITING_TEXT]
    pick = np.flatnonzero(np.isin(snap.state, waiting))
    since = snap.state_since[pick]
    business = business_between(
        calendars, snap.calendar[pick], since, np.full(len(pick), snap.now, dtype=np.int64)
    )
    kind = np.array(STATES, dtype=object)[snap.state[pick]]
    frame = _frame(log, snap, pick, kind, since, business)
    frame[REASON] = (
        pd.Series(kind).map(_WAITING_TEXT)
        + " for "
        + hours_text(snap.now - since)
        + " ("
        + business_text(business)
        + ")"
    ).to_numpy(dtype=object)
    return _result("waiting_blockers", frame, snap, settings, calendars)


def queue_blockers(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Queued (state new) or unassigned open tickets older than their priority's threshold."""
    snap, settings, calendars = _setup(log, now, settings, calendars)
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
    frame = _frame(log, snap, pick, kind, since[pick], business[pick])
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
    return _result("queue_blockers", frame, snap, settings, calendars)


def sla_risk(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Open tickets past their target or with at least the lowest band of its window used.

    Columns beyond the context: ``due_at``, ``due_from`` (``ticket`` or ``target``), ``used``
    (share of the target window used, > 1 when breached), ``band`` (``"breached"`` or e.g.
    ``"≥ 75 %"``), and the blocker columns (age since the band was entered).
    """
    snap, settings, calendars = _setup(log, now, settings, calendars)
    rows = snap.rows
    created = log.created[rows]
    due = log.column_ns(DUE_AT)[rows]
    due_from = np.full(len(rows), None, dtype=object)
    due_from[due != NAT] = "ticket"
    if settings.sla_targets:
        span = thresholds_ns(
            settings.sla_targets, settings.unknown_priority, snap.priority, calendars, snap.calendar
        )
        has_target = np.isin(snap.priority, list(settings.sla_targets))
        derive = (due == NAT) & has_target & (created != NAT)
        derived = add_business(calendars, snap.calendar, created, np.where(derive, span, -1))
        due = np.where(derive, derived, due)
        due_from = np.where(derive, "target", due_from)
    ok = (due != NAT) & (created != NAT) & (due > created)
    pick_all = np.flatnonzero(ok)
    c, d = created[pick_all], due[pick_all]
    now_arr = np.full(len(pick_all), snap.now, dtype=np.int64)
    cal = snap.calendar[pick_all]
    if settings.sla_clock == "business":
        window = business_between(calendars, cal, c, d)
        used_ns = business_between(calendars, cal, c, now_arr)
    else:
        window = d - c
        used_ns = now_arr - c
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(window > 0, used_ns / window, np.where(now_arr >= d, np.inf, 0.0))
    bands = np.asarray(settings.sla_bands, dtype=np.float64)
    level = np.searchsorted(bands, used, side="right")  # 0: below the first band
    breached = now_arr >= d
    keep = breached | (level > 0)
    pick = pick_all[keep]
    level, breached, used = level[keep], breached[keep], used[keep]
    c, d, window, cal = c[keep], d[keep], window[keep], cal[keep]
    share = bands[np.maximum(level - 1, 0)]
    if settings.sla_clock == "business":
        entered_band = add_business(calendars, cal, c, np.round(share * window).astype(np.int64))
    else:
        entered_band = c + np.round(share * window).astype(np.int64)
    since = np.where(breached, d, entered_band)
    business = business_between(calendars, cal, since, np.full(len(pick), snap.now, np.int64))
    kind = np.where(breached, "sla_breached", "sla_risk").astype(object)
    band = np.where(
        breached,
        "breached",
        pd.Series(np.round(share * 100).astype(np.int64)).astype(str).radd("≥ ").add(" %"),
    ).astype(object)
    frame = _frame(log, snap, pick, kind, since, business)
    frame[DUE] = from_ns(d)
    frame[DUE_FROM] = due_from[pick]
    frame[USED] = used
    frame[BAND] = band
    left = d - snap.now
    frame[REASON] = np.where(
        breached,
        ("target passed " + hours_text(snap.now - d) + " ago").to_numpy(dtype=object),
        (
            pd.Series(np.round(used * 100).astype(np.int64)).astype(str)
            + " % of the target window used, "
            + hours_text(left)
            + " left"
        ).to_numpy(dtype=object),
    )
    return _result("sla_risk", frame, snap, settings, calendars, sort=USED)


def customers_not_updated(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Open tickets in our court whose customer has not heard from us within the cadence."""
    snap, settings, calendars = _setup(log, now, settings, calendars)
    # last customer-visible update not made by the requester
    rows = rows_of(log.ev_offsets, snap.rows)
    rows = rows[
        (log.ev_field[rows] == FIELDS.index(FIELD_CUSTOMER_UPDATE))
        & (log.ev_time[rows] <= snap.now)
    ]
    requester = log.column(REQUESTER)
    actor = log.ev_actor[rows]
    by_requester = (actor == requester[log.ev_ticket[rows]]) & pd.notna(actor)
    rows = rows[~by_requester]
    last_update = np.full(len(snap.rows), NAT, dtype=np.int64)
    # events are sorted by time within a ticket: the last write per ticket wins
    last_update[np.searchsorted(snap.rows, log.ev_ticket[rows])] = log.ev_time[rows]

    ours_codes = np.array([STATES.index(s) for s in settings.our_court_states], dtype=np.int64)
    court_since = _court_since(log, snap.now, ours_codes, snap.rows)
    in_court = np.isin(snap.state, ours_codes)
    ref = np.maximum(np.maximum(last_update, court_since), log.created[snap.rows])
    business = snap.business_since(calendars, ref)
    cadence = thresholds_ns(
        settings.update_cadence,
        settings.unknown_priority_cadence,
        snap.priority,
        calendars,
        snap.calendar,
    )
    pick = np.flatnonzero(in_court & (ref != NAT) & (business >= cadence))
    frame = _frame(log, snap, pick, "customer_not_updated", ref[pick], business[pick])
    frame[THRESHOLD] = td(cadence[pick])
    lu = last_update[pick]
    basis = np.where(
        lu == ref[pick],
        "since the last customer update",
        np.where(
            ref[pick] == log.created[snap.rows[pick]],
            "since creation",
            "since the ticket came back to us",
        ),
    ).astype(object)
    frame[REASON] = (
        "customer not updated for "
        + business_text(business[pick])
        + " "
        + pd.Series(basis)
        + "; cadence "
        + business_text(cadence[pick])
        + " for "
        + priority_text(snap.priority[pick])
    ).to_numpy(dtype=object)
    return _result("customers_not_updated", frame, snap, settings, calendars)


def _court_since(log: TicketLog, now: int, ours: I64, tickets: I64) -> I64:
    """Per ticket of ``tickets`` (sorted): when its current run of our-court states began (NAT if
    not in our court)."""
    iv = log.intervals(FIELD_STATE)
    rows = rows_of(iv.offsets, tickets)
    rows = rows[iv.start[rows] <= now]
    tk, code, start = iv.ticket[rows], iv.code[rows], iv.start[rows]
    mine = np.isin(code, ours)
    new_run = np.ones(len(rows), dtype=bool)
    if len(rows):
        new_run[1:] = (tk[1:] != tk[:-1]) | (mine[1:] != mine[:-1])
    first = np.maximum.accumulate(np.where(new_run, np.arange(len(rows)), 0))
    out = np.full(len(tickets), NAT, dtype=np.int64)
    last = np.ones(len(rows), dtype=bool)
    if len(rows):
        last[:-1] = tk[1:] != tk[:-1]
    lr = np.flatnonzero(last & mine)
    out[np.searchsorted(tickets, tk[lr])] = start[first[lr]]
    return out


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
    _snap, settings, calendars = _setup(log, now, settings, calendars)
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
        pf = _frame(log, snap, pick, "ping_pong", since, business)
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
    return Result(
        name="flow_blockers",
        frame=frame.iloc[order].reset_index(drop=True),
        n=len(snap.rows),
        n_of="open tickets examined",
        now=pd.Timestamp(snap.now, tz="UTC"),
        settings=settings,
        calendars=calendars,
        definition="docs/metrics.md#flow-blockers",
    )
