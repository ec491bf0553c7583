"""Customers not updated: open tickets in our court whose customer has not heard from us within
the cadence of the ticket's priority (docs/metrics.md "Flow blockers": ``customer_not_updated``).

The clock starts at the latest of: the last customer-visible update not made by the requester,
the ticket's return into our court, its creation.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.blockerbase import (
    REASON,
    THRESHOLD,
    blocker_frame,
    blocker_result,
    blocker_setup,
)
from analytics.clock import Calendars
from analytics.frames import FIELD_CUSTOMER_UPDATE, FIELD_STATE, FIELDS, NAT, REQUESTER, STATES, td
from analytics.log import TicketLog
from analytics.result import Result
from analytics.settings import BlockerSettings
from analytics.snapshot import business_text, priority_text, thresholds_ns
from analytics.stats import rows_of

__all__ = ["customers_not_updated"]

I64 = npt.NDArray[np.int64]


def customers_not_updated(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Open tickets in our court whose customer has not heard from us within the cadence."""
    snap, settings, calendars = blocker_setup(log, now, settings, calendars)
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
    frame = blocker_frame(log, snap, pick, "customer_not_updated", ref[pick], business[pick])
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
    return blocker_result("customers_not_updated", frame, snap, settings, calendars)


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
