"""Flow efficiency: active time over elapsed time, waiting measured as a union of intervals.

For a ticket stopped in the window, over its span ``[created, stop]`` (docs/metrics.md
"Flow efficiency"):

- *active* = time in an active state (``FlowSettings.active_states``, default in_progress)
  **while assigned to someone**. With A the active-state intervals and U the unassigned
  intervals, both clipped to the span, ``active = |A ∪ U| - |U|`` (= ``|A| - |A ∩ U|``): time
  that is both active-state and unassigned is counted once, as waiting, never twice.
- *wait* = elapsed - active: queued (new), waiting on the customer / supplier / other, resolved
  before a reopen, unassigned while in an active state, and any time before the first known state.
  The breakdown columns add up to ``wait``.
- Unassigned time only counts where the source records assignees for the ticket (at least one
  assignee event); a ticket whose tool never tracks assignees is not punished as "never assigned".

``efficiency = active / elapsed`` per ticket; the summary gives the portfolio value
``Σ active / Σ elapsed`` and the distribution of the per-ticket values (judge the portfolio, not
single tickets).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.aging import _stopped_in
from analytics.daily import resolve_window
from analytics.facts import is_done_code, state_codes, sum_per_ticket, ticket_facts
from analytics.frames import (
    FIELD_ASSIGNEE,
    FIELD_STATE,
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
from analytics.result import Result, Window
from analytics.settings import FlowSettings
from analytics.stats import nearest_rank, percentile_label

__all__ = ["flow_efficiency", "flow_efficiency_summary", "union_length"]

I64 = npt.NDArray[np.int64]

ELAPSED = "elapsed"
ACTIVE = "active"
WAIT = "wait"
EFFICIENCY = "efficiency"
QUEUED = "queued"
DONE_BEFORE_REOPEN = "done_before_reopen"
UNASSIGNED_WHILE_ACTIVE = "unassigned_while_active"
UNKNOWN = "unknown"
OTHER_STATES = "other_states"


def union_length(n: int, ticket: I64, start: I64, end: I64) -> I64:
    """Length of the union of intervals ``[start, end)`` per ticket (0 for tickets without any).

    Vectorised sweep: sort by ticket and start, keep the running maximum end per ticket, and add
    only the part of each interval beyond what earlier intervals already covered.
    """
    if not len(ticket):
        return np.zeros(n, dtype=np.int64)
    order = np.lexsort((start, ticket))
    tk, s, e = ticket[order], start[order], end[order]
    covered_to = pd.Series(e).groupby(tk).cummax().to_numpy(dtype=np.int64)
    prev = np.empty(len(tk), dtype=np.int64)
    prev[0] = NAT
    prev[1:] = covered_to[:-1]
    first = np.ones(len(tk), dtype=bool)
    first[1:] = tk[1:] != tk[:-1]
    prev[first] = NAT
    added = np.maximum(e - np.maximum(s, prev), 0)
    return sum_per_ticket(n, tk, added)


def _clip(
    ticket: I64, start: I64, end: I64, lo: I64, hi: I64
) -> tuple[npt.NDArray[np.bool_], I64, I64, I64]:
    """Intervals clipped to each ticket's span; the mask says which rows keep a length."""
    s = np.maximum(start, lo[ticket])
    e = np.minimum(end, hi[ticket])
    keep = e > s
    return keep, ticket[keep], s[keep], e[keep]


def flow_efficiency(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Active and waiting time of every ticket stopped in the window.

    Columns: ``elapsed``, ``active``, ``wait``, ``efficiency`` (active / elapsed, NaN for a zero
    span) and the waiting breakdown ``queued``, ``waiting_customer``, ``waiting_supplier``,
    ``waiting_other``, ``other_states``, ``done_before_reopen``, ``unassigned_while_active``,
    ``unknown``. ``n`` counts the tickets.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    n = log.n_tickets
    chosen = _stopped_in(facts, win) & (facts.created != NAT)
    lo = np.where(chosen, facts.created, 0)
    hi = np.where(chosen, facts.final_stop, 0)

    iv = log.intervals(FIELD_STATE)
    rows = np.flatnonzero(chosen[iv.ticket] & (iv.start <= now_ns))
    keep, tk, s, e = _clip(iv.ticket[rows], iv.start[rows], iv.clipped_end(now_ns)[rows], lo, hi)
    code = iv.code[rows][keep]
    is_active = np.isin(code, state_codes(settings.active_states))
    a_len = sum_per_ticket(n, tk[is_active], (e - s)[is_active])

    ai = log.intervals(FIELD_ASSIGNEE)
    tracked = np.zeros(n, dtype=bool)
    tracked[ai.ticket[~ai.derived]] = True
    u_rows = np.flatnonzero(
        chosen[ai.ticket] & tracked[ai.ticket] & (ai.code < 0) & (ai.start <= now_ns)
    )
    _, u_tk, u_s, u_e = _clip(
        ai.ticket[u_rows], ai.start[u_rows], ai.clipped_end(now_ns)[u_rows], lo, hi
    )
    u_len = sum_per_ticket(n, u_tk, u_e - u_s)
    both = union_length(
        n,
        np.concatenate([tk[is_active], u_tk]),
        np.concatenate([s[is_active], u_s]),
        np.concatenate([e[is_active], u_e]),
    )
    active = both - u_len
    elapsed = hi - lo

    picked = np.flatnonzero(chosen)
    frame = log.keys_frame(picked)
    frame[ELAPSED] = td(elapsed[picked])
    frame[ACTIVE] = td(active[picked])
    frame[WAIT] = td((elapsed - active)[picked])
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(elapsed[picked] > 0, active[picked] / elapsed[picked], np.nan)
    frame[EFFICIENCY] = eff
    breakdown: list[tuple[str, npt.NDArray[np.bool_]]] = [
        (QUEUED, code == STATES.index(NEW)),
        (WAITING_CUSTOMER, code == STATES.index(WAITING_CUSTOMER)),
        (WAITING_SUPPLIER, code == STATES.index(WAITING_SUPPLIER)),
        (WAITING_OTHER, code == STATES.index(WAITING_OTHER)),
        (DONE_BEFORE_REOPEN, is_done_code(code)),
    ]
    named = np.zeros(len(code), dtype=bool)
    for name, mask in breakdown:
        named |= mask
        frame[name] = td(sum_per_ticket(n, tk[mask], (e - s)[mask])[picked])
    other = ~named & ~is_active
    frame[OTHER_STATES] = td(sum_per_ticket(n, tk[other], (e - s)[other])[picked])
    known = sum_per_ticket(n, tk, e - s)
    frame[UNASSIGNED_WHILE_ACTIVE] = td((a_len - active)[picked])
    frame[UNKNOWN] = td((elapsed - known)[picked])
    return Result(
        name="flow_efficiency",
        frame=frame,
        n=len(picked),
        n_of="tickets stopped in the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#flow-efficiency",
    )


def flow_efficiency_summary(per_ticket: Result[FlowSettings]) -> Result[FlowSettings]:
    """Portfolio flow efficiency (Σ active / Σ elapsed) and the per-ticket distribution."""
    frame = per_ticket.frame
    active = frame[ACTIVE].to_numpy(dtype="timedelta64[ns]").view(np.int64)
    elapsed = frame[ELAPSED].to_numpy(dtype="timedelta64[ns]").view(np.int64)
    eff = frame[EFFICIENCY].to_numpy(dtype=np.float64)
    total = int(elapsed.sum())
    row: dict[str, float | int] = {
        "tickets": len(frame),
        "portfolio": float(active.sum() / total) if total else float("nan"),
        "mean": float(np.nanmean(eff)) if np.isfinite(eff).any() else float("nan"),
    }
    method = per_ticket.settings.percentile_method
    for p in per_ticket.settings.percentiles:
        row[percentile_label(p)] = nearest_rank(eff, p, method)
    return Result(
        name="flow_efficiency_summary",
        frame=pd.DataFrame([row]),
        n=per_ticket.n,
        n_of=per_ticket.n_of,
        now=per_ticket.now,
        settings=per_ticket.settings,
        window=per_ticket.window,
        definition="docs/metrics.md#flow-efficiency",
    )
