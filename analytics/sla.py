"""SLA risk: open tickets past their target or with a large share of the target window used
(docs/metrics.md "Flow blockers": ``sla_breached`` / ``sla_risk``).

The target is the ticket's ``due_at``, or its creation plus the priority's ``sla_targets`` in
business time when it has none; the bands (e.g. 50 / 75 / 90 %) say how much of the window is
used. The age counts from the moment the ticket entered its band.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from analytics.blockerbase import REASON, blocker_frame, blocker_result, blocker_setup
from analytics.clock import Calendars, add_business, business_between
from analytics.frames import DUE_AT, NAT, from_ns
from analytics.log import TicketLog
from analytics.result import Result
from analytics.settings import BlockerSettings
from analytics.snapshot import hours_text, thresholds_ns

__all__ = ["sla_risk"]

DUE = "due_at"
DUE_FROM = "due_from"
USED = "used"
BAND = "band"


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
    snap, settings, calendars = blocker_setup(log, now, settings, calendars)
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
    frame = blocker_frame(log, snap, pick, kind, since, business)
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
    return blocker_result("sla_risk", frame, snap, settings, calendars, sort=USED)
