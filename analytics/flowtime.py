"""Lead time and cycle time per ticket, their percentiles, and the reopen / first-assignment rates.

Definitions in ``analytics.facts`` (start, stop, reopen policy) and docs/metrics.md:

- *lead time* = stop - created (the customer's wait); *cycle time* = stop - first start (the
  team's working span). Tickets stopped without ever being started count in throughput and lead
  time but not in cycle time; so do tickets whose start and stop coincide (cycle time 0,
  "stopped but never really started").
- The summaries cover the tickets whose stop falls in the window, ``n`` per row.
- *reopen rate* = tickets whose first stop falls in the window and that were reopened since /
  tickets whose first stop falls in the window.
- *first-assignment resolution rate* = tickets stopped in the window whose team at the stop is the
  first team they were assigned to / tickets stopped in the window with a known team.
- *mean reassignments* = team changes (of the merged team sequence) per ticket stopped in the
  window.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.aging import _stopped_in
from analytics.clock import Calendars
from analytics.daily import resolve_window
from analytics.facts import business_segments, ticket_facts
from analytics.frames import NAT, STATE, STATES, from_ns, pick_or_none, td, text, timestamp_ns
from analytics.intervals import segmented_last_le
from analytics.log import TicketLog
from analytics.pingpong import sequence
from analytics.result import Result, Window
from analytics.settings import FlowSettings
from analytics.stats import grouped_means, grouped_percentiles, percentile_label

__all__ = ["cycle_time_summary", "flow_rates", "ticket_flow_times"]

I64 = npt.NDArray[np.int64]

CREATED = "created"
FIRST_START = "first_start"
FIRST_STOP = "first_stop"
STOP = "stop"
REOPENS = "reopens"
LEAD_TIME = "lead_time"
CYCLE_TIME = "cycle_time"
METRIC = "metric"
N = "n"
MEAN = "mean"
NUMERATOR = "numerator"
DENOMINATOR = "denominator"
RATE = "rate"


def ticket_flow_times(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[FlowSettings]:
    """Per ticket existing at ``now``: created, first start, first stop, stop, reopens, current
    state, lead and cycle time (NaT while open) — and their business-time versions
    (``business_lead_time``, ``business_cycle_time``) when ``calendars`` is given."""
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    f = ticket_facts(log, now=now_ns, settings=settings)
    rows = np.flatnonzero(f.exists)
    columns: dict[str, object] = {
        **log.keys(rows),
        STATE: text(pick_or_none(np.array(STATES, dtype=object), f.state[rows])),
        CREATED: from_ns(f.created[rows]),
        FIRST_START: from_ns(f.first_start[rows]),
        FIRST_STOP: from_ns(f.first_stop[rows]),
        STOP: from_ns(f.final_stop[rows]),
        REOPENS: f.reopens[rows],
        LEAD_TIME: td(f.lead[rows]),
        CYCLE_TIME: td(f.cycle[rows]),
    }
    if calendars is not None:
        lead_b, cycle_b = business_segments(log, calendars, f)
        columns["business_" + LEAD_TIME] = td(lead_b[rows])
        columns["business_" + CYCLE_TIME] = td(cycle_b[rows])
    frame = pd.DataFrame(columns, copy=False)
    return Result(
        name="ticket_flow_times",
        frame=frame,
        n=len(rows),
        n_of="tickets created by now",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        calendars=calendars,
        definition="docs/metrics.md#lead-time-and-cycle-time",
        notes=(f"reopen policy: {settings.reopen_policy}",),
    )


def cycle_time_summary(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
    by: str | None = None,
    calendars: Calendars | None = None,
) -> Result[FlowSettings]:
    """Percentiles of lead and cycle time of the tickets stopped in the window.

    One row per metric (``lead_time``, ``cycle_time``; ``business_...`` too with ``calendars``)
    and, with ``by`` (a ticket column such as ``priority``, ``team``, ``category``), per group:
    ``n``, ``mean`` and one column per percentile, plus ``sle`` (the SLE percentile).
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    f = ticket_facts(log, now=now_ns, settings=settings)
    stopped = _stopped_in(f, win)
    metrics: list[tuple[str, I64]] = [(LEAD_TIME, f.lead), (CYCLE_TIME, f.cycle)]
    if calendars is not None:
        lead_b, cycle_b = business_segments(log, calendars, f)
        metrics += [("business_" + LEAD_TIME, lead_b), ("business_" + CYCLE_TIME, cycle_b)]
    if by is None:
        group = np.zeros(log.n_tickets, dtype=np.int64)
        labels = np.array([None], dtype=object)
    else:
        codes, uniques = pd.factorize(log.column(by), use_na_sentinel=False)
        group = codes.astype(np.int64)
        labels = np.asarray(uniques, dtype=object)
    ps = tuple(dict.fromkeys((*settings.percentiles, settings.sle_percentile)))
    parts = []
    excluded = 0
    # start = stop: "stopped but never really started" (judged on the calendar clock: a business
    # cycle time can be 0 for a ticket worked outside working hours)
    no_cycle = f.cycle == 0
    for name, values in metrics:
        use = stopped & (values != NAT)
        if name.endswith(CYCLE_TIME):
            excluded = int((use & no_cycle).sum())
            use &= ~no_cycle
        table, counts = grouped_percentiles(
            group[use], values[use], len(labels), ps, settings.percentile_method
        )
        mean = grouped_means(group[use], values[use], len(labels))
        part = pd.DataFrame({METRIC: np.full(len(labels), name, dtype=object)})
        if by is not None:
            part[by] = labels
        part[N] = counts
        part[MEAN] = td(np.where(np.isnan(mean), NAT, np.round(mean)).astype(np.int64))
        for j, p in enumerate(ps):
            if p in settings.percentiles:
                part[percentile_label(p)] = td(table[:, j])
        part["sle"] = td(table[:, ps.index(settings.sle_percentile)])
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    return Result(
        name="cycle_time_summary",
        frame=frame,
        n=int(stopped.sum()),
        n_of="tickets stopped in the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        calendars=calendars,
        window=win,
        definition="docs/metrics.md#lead-time-and-cycle-time",
        notes=(
            f"reopen policy: {settings.reopen_policy}",
            f"percentiles: {settings.percentile_method}",
            f"{excluded} ticket(s) with start = stop left out of the cycle time",
        ),
    )


def flow_rates(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Reopen rate, first-assignment resolution rate and mean reassignments in the window.

    One row per metric with ``numerator``, ``denominator`` and ``rate`` (numerator /
    denominator; NaN when the denominator is 0).
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    f = ticket_facts(log, now=now_ns, settings=settings)
    n = log.n_tickets

    first = f.first_stop
    first_in = (first != NAT) & (first >= win.start_ns) & (first < win.end_ns)
    reopened = first_in & (f.reopens > 0)

    stopped = np.flatnonzero(_stopped_in(f, win))
    seq = sequence(log, field="team", now=now_ns)
    first_team = np.full(n, -1, dtype=np.int64)
    heads = np.ones(len(seq.ticket), dtype=bool)
    if len(seq.ticket):
        heads[1:] = seq.ticket[1:] != seq.ticket[:-1]
    first_team[seq.ticket[heads]] = seq.code[heads]
    # team at the stop: the last stay that began at or before the stop
    offsets = np.concatenate([[0], np.cumsum(np.bincount(seq.ticket, minlength=n))])
    at = segmented_last_le(offsets.astype(np.int64), seq.start, stopped, f.final_stop[stopped])
    stop_team = np.where(at >= 0, seq.code[np.maximum(at, 0)], -1)
    known = stop_team >= 0
    far = known & (stop_team == first_team[stopped])
    runs = np.bincount(seq.ticket, minlength=n)
    changes = np.maximum(runs[stopped] - 1, 0)

    rows = [
        ("reopen_rate", int(reopened.sum()), int(first_in.sum())),
        ("first_assignment_resolution_rate", int(far.sum()), int(known.sum())),
        ("mean_reassignments", int(changes.sum()), len(stopped)),
    ]
    frame = pd.DataFrame(rows, columns=[METRIC, NUMERATOR, DENOMINATOR])
    with np.errstate(invalid="ignore", divide="ignore"):
        frame[RATE] = np.where(
            frame[DENOMINATOR] > 0, frame[NUMERATOR] / frame[DENOMINATOR].clip(lower=1), np.nan
        )
    return Result(
        name="flow_rates",
        frame=frame,
        n=int((first_in | _stopped_in(f, win)).sum()),
        n_of="tickets first stopped or stopped in the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#reopen-and-first-assignment-resolution-rates",
    )
