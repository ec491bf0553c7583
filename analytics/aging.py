"""Aging work in progress with per-state pace percentiles, and the bottleneck ranking.

Pace (docs/metrics.md "Aging WIP and pace"): for the tickets stopped in the window, the age each
had when it last left state ``s`` (age measured from creation, or from the start state when
``FlowSettings.age_from == "start"``; 0 when it left ``s`` before it started). The percentiles of
those ages per state are the pace lines: an open ticket in state ``s`` whose age is past the
85th-percentile line is older than 85 % of finished tickets were when they moved on from ``s``.
The service-level expectation (SLE) is the ``sle_percentile`` of the lead time (cycle time when
age is measured from the start) of the same finished tickets.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.daily import resolve_window
from analytics.facts import DONE_CODE, Facts, ticket_facts
from analytics.frames import (
    ASSIGNEE,
    DONE_STATES,
    FIELD_ASSIGNEE,
    FIELD_STATE,
    FIELD_TEAM,
    NAT,
    PRIORITY,
    STATE,
    STATES,
    TEAM,
    from_ns,
    pick_or_none,
    td,
    timestamp_ns,
)
from analytics.intervals import Intervals
from analytics.log import TicketLog
from analytics.result import Result, Window
from analytics.settings import FlowSettings
from analytics.stats import grouped_percentiles, percentile_label

__all__ = ["aging_wip", "bottlenecks", "pace_percentiles"]

I64 = npt.NDArray[np.int64]

N = "n"
AGE = "age"
STATE_SINCE = "state_since"
IN_STATE = "in_state"
PACE = "pace"
OVER_SLE = "over_sle"
AGE_BUCKET = "age_bucket"

_DAY = 86_400_000_000_000
_BUCKET_EDGES = np.array([1, 7, 14, 28], dtype=np.int64) * _DAY
_BUCKET_LABELS = np.array(
    ["< 1 day", "1-7 days", "7-14 days", "14-28 days", "> 28 days"], dtype=object
)
_OPEN_CODES = np.array([not d for d in DONE_CODE])


def _origin(facts: Facts, settings: FlowSettings) -> I64:
    return facts.first_start if settings.age_from == "start" else facts.created


def _stopped_in(facts: Facts, win: Window) -> npt.NDArray[np.bool_]:
    stop = facts.final_stop
    inside: npt.NDArray[np.bool_] = (stop != NAT) & (stop >= win.start_ns) & (stop < win.end_ns)
    return inside


def _pace_table(
    log: TicketLog, facts: Facts, settings: FlowSettings, win: Window
) -> tuple[I64, I64]:
    iv = log.intervals(FIELD_STATE)
    origin = _origin(facts, settings)
    done_in = _stopped_in(facts, win) & (origin != NAT)
    rows = np.flatnonzero(
        done_in[iv.ticket] & (iv.code >= 0) & (iv.end != NAT) & (iv.start <= facts.now)
    )
    rows = rows[_OPEN_CODES[iv.code[rows]]]
    tk, code, end = iv.ticket[rows], iv.code[rows], iv.end[rows]
    # last exit per (ticket, state): rows are in time order within a ticket
    key = tk * len(STATES) + code
    order = np.argsort(key, kind="stable")
    k = key[order]
    last = np.ones(len(k), dtype=bool)
    if len(k):
        last[:-1] = k[1:] != k[:-1]
    picked = order[last]
    age = np.maximum(end[picked] - origin[tk[picked]], 0)
    return grouped_percentiles(
        code[picked], age, len(STATES), settings.percentiles, settings.percentile_method
    )


def pace_percentiles(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Per open state: the percentiles of the age at which finished tickets last left it.

    One row per open state with ``n`` (tickets in the sample) and one timedelta column per
    percentile (``p50``, ``p70``, ...). ``n`` of the result counts the tickets stopped in the
    window.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    table, counts = _pace_table(log, facts, settings, win)
    open_codes = np.flatnonzero(_OPEN_CODES)
    frame = pd.DataFrame({STATE: [STATES[c] for c in open_codes], N: counts[open_codes]})
    for j, p in enumerate(settings.percentiles):
        frame[percentile_label(p)] = td(table[open_codes, j])
    return Result(
        name="pace_percentiles",
        frame=frame,
        n=int(_stopped_in(facts, win).sum()),
        n_of="tickets stopped in the window",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#aging-wip-and-pace",
    )


def _sle(facts: Facts, settings: FlowSettings, win: Window) -> tuple[int, int]:
    values = facts.cycle if settings.age_from == "start" else facts.lead
    sample = values[_stopped_in(facts, win) & (values != NAT)]
    table, counts = grouped_percentiles(
        np.zeros(len(sample), dtype=np.int64),
        sample,
        1,
        (settings.sle_percentile,),
        settings.percentile_method,
    )
    return int(table[0, 0]), int(counts[0])


def _pace_labels(settings: FlowSettings) -> npt.NDArray[np.object_]:
    labels = [f"< {percentile_label(settings.percentiles[0])}"]
    for a, b in zip(settings.percentiles, settings.percentiles[1:], strict=False):
        labels.append(f"{percentile_label(a)}-{percentile_label(b)}")
    labels.append(f"> {percentile_label(settings.percentiles[-1])}")
    return np.array(labels, dtype=object)


def _current(iv: Intervals, now: int, rows: I64) -> npt.NDArray[np.object_]:
    return iv.value_of(iv.at(rows, np.full(len(rows), now, dtype=np.int64)))


def aging_wip(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Every open ticket with its age, state, time in state and pace band, oldest first.

    ``pace`` says which pace lines of its state the ticket's age has passed (``"> p95"`` is past
    all of them; ``"no history"`` when no finished ticket left that state in the window);
    ``over_sle`` says whether the age exceeds the service-level expectation. ``n`` counts the
    open tickets; the SLE and its sample size are in ``notes``.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    origin = _origin(facts, settings)
    rows = np.flatnonzero(facts.is_open & (origin != NAT))
    age = now_ns - origin[rows]
    iv = log.intervals(FIELD_STATE)
    state_row = facts.state_row[rows]
    code = np.where(state_row >= 0, iv.code[np.maximum(state_row, 0)], -1)
    since = np.where(state_row >= 0, iv.start[np.maximum(state_row, 0)], NAT)
    table, counts = _pace_table(log, facts, settings, win)
    sle, sle_n = _sle(facts, settings, win)

    lines = table[np.maximum(code, 0)]
    passed = ((age[:, None] > lines) & (lines != NAT)).sum(axis=1)
    labels = _pace_labels(settings)
    has_history = (code >= 0) & (counts[np.maximum(code, 0)] > 0)
    pace = np.where(has_history, labels[passed], "no history")

    frame = log.keys_frame(rows)
    frame[PRIORITY] = log.tickets[PRIORITY].to_numpy()[rows]
    frame[STATE] = pick_or_none(np.array(STATES, dtype=object), code)
    frame[TEAM] = _current(log.intervals(FIELD_TEAM), now_ns, rows)
    frame[ASSIGNEE] = _current(log.intervals(FIELD_ASSIGNEE), now_ns, rows)
    frame[AGE] = td(age)
    frame[AGE_BUCKET] = _BUCKET_LABELS[np.searchsorted(_BUCKET_EDGES, age, side="right")]
    frame[STATE_SINCE] = from_ns(since)
    frame[IN_STATE] = td(np.where(since != NAT, now_ns - since, NAT))
    frame[PACE] = pace
    frame[OVER_SLE] = (sle != NAT) & (age > sle)
    frame = frame.sort_values(AGE, ascending=False, kind="stable").reset_index(drop=True)
    sle_text = "none (no finished tickets)" if sle == NAT else str(pd.Timedelta(sle, unit="ns"))
    return Result(
        name="aging_wip",
        frame=frame,
        n=len(rows),
        n_of="open tickets",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#aging-wip-and-pace",
        notes=(
            f"SLE ({percentile_label(settings.sle_percentile)} of "
            f"{'cycle' if settings.age_from == 'start' else 'lead'} time): {sle_text}, "
            f"n={sle_n}",
            f"age measured from {settings.age_from}",
        ),
    )


DIMENSION = "dimension"
VALUE = "value"
OPEN_TICKETS = "open_tickets"
OPEN_AGE_TOTAL = "open_age_total"
OPEN_AGE_SHARE = "open_age_share"
COMPLETED_TICKETS = "completed_tickets"
RANK = "rank"


def _open_side(
    values: npt.NDArray[np.object_], waited: I64, settings: FlowSettings
) -> pd.DataFrame:
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    codes = codes.astype(np.int64)
    g = len(uniques)
    total = np.zeros(g, dtype=np.int64)
    np.add.at(total, codes, waited)
    table, counts = grouped_percentiles(codes, waited, g, (0.5, 0.85), settings.percentile_method)
    return pd.DataFrame(
        {
            VALUE: np.asarray(uniques, dtype=object),
            OPEN_TICKETS: counts,
            OPEN_AGE_TOTAL: total,
            "open_age_p50": table[:, 0],
            "open_age_p85": table[:, 1],
        }
    )


def _completed_side(
    iv: Intervals, facts: Facts, settings: FlowSettings, win: Window, skip_done: bool
) -> pd.DataFrame:
    done_in = _stopped_in(facts, win)
    # time there up to the stop (a team the ticket never left ends at the stop)
    rows = np.flatnonzero(done_in[iv.ticket] & (iv.start <= facts.now))
    if skip_done:
        rows = rows[(iv.code[rows] >= 0) & _OPEN_CODES[np.maximum(iv.code[rows], 0)]]
    tk, code = iv.ticket[rows], iv.code[rows]
    end = np.minimum(iv.clipped_end(facts.now)[rows], facts.final_stop[tk])
    dur = np.maximum(end - iv.start[rows], 0)
    key = tk * (len(iv.values) + 1) + code + 1
    order = np.argsort(key, kind="stable")
    k = key[order]
    heads = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]])) if len(k) else k
    sums = np.add.reduceat(dur[order], heads) if len(heads) else dur
    g_code = code[order][heads] + 1  # 0 = missing value
    table, counts = grouped_percentiles(
        g_code, sums, len(iv.values) + 1, (0.5, 0.85), settings.percentile_method
    )
    values = np.append([None], iv.values).astype(object)
    return pd.DataFrame(
        {
            VALUE: values,
            COMPLETED_TICKETS: counts,
            "completed_time_p50": table[:, 0],
            "completed_time_p85": table[:, 1],
        }
    )


def bottlenecks(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: FlowSettings | None = None,
    window: Window | None = None,
) -> Result[FlowSettings]:
    """Where open work waits most: open states and teams ranked by the age open tickets have
    spent in them so far.

    Per ``dimension`` (``state``, ``team``) and ``value``: ``open_tickets`` there now, the total,
    median and 85th percentile of their time there so far (``open_age_*``), its share of all
    open waiting, and for comparison how long tickets finished in the window spent there in total
    (``completed_time_p50/p85`` per ticket, over ``completed_tickets``). ``rank`` 1 is the
    biggest bottleneck. ``n`` counts the open tickets.
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    win = resolve_window(now_ns, settings, window)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    open_rows = np.flatnonzero(facts.is_open)
    parts = []
    for dimension, field in ((STATE, FIELD_STATE), (TEAM, FIELD_TEAM)):
        iv = log.intervals(field)
        at = iv.at(open_rows, np.full(len(open_rows), now_ns, dtype=np.int64))
        known = at >= 0
        values = iv.value_of(at[known])
        waited = now_ns - iv.start[at[known]]
        open_side = _open_side(values, waited, settings)
        done_side = _completed_side(iv, facts, settings, win, skip_done=field == FIELD_STATE)
        pos = pd.Index(done_side[VALUE].to_numpy(), dtype=object).get_indexer(
            pd.Index(open_side[VALUE].to_numpy(), dtype=object)
        )
        frame = open_side
        for col in (COMPLETED_TICKETS, "completed_time_p50", "completed_time_p85"):
            src = done_side[col].to_numpy()
            missing = 0 if col == COMPLETED_TICKETS else NAT
            frame[col] = np.where(pos >= 0, src[np.maximum(pos, 0)], missing)
        if field == FIELD_STATE:
            frame = frame[frame[VALUE].isin([s for s in STATES if s not in DONE_STATES])]
        frame.insert(0, DIMENSION, dimension)
        total = frame[OPEN_AGE_TOTAL].sum()
        frame[OPEN_AGE_SHARE] = frame[OPEN_AGE_TOTAL] / total if total else 0.0
        frame = frame.sort_values([OPEN_AGE_TOTAL, OPEN_TICKETS], ascending=False, kind="stable")
        frame[RANK] = np.arange(1, len(frame) + 1)
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True)
    for col in (
        OPEN_AGE_TOTAL,
        "open_age_p50",
        "open_age_p85",
        "completed_time_p50",
        "completed_time_p85",
    ):
        out[col] = td(out[col].to_numpy(dtype=np.int64))
    return Result(
        name="bottlenecks",
        frame=out,
        n=len(open_rows),
        n_of="open tickets",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        window=win,
        definition="docs/metrics.md#bottlenecks",
    )
