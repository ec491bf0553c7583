"""Reassignment ping-pong and the handover matrix.

From the sequence of teams (or assignees) a ticket went through — missing values dropped and
consecutive repeats merged, so ``A, -, A`` is one stay at A — a *bounce* is a return to the
team before last: ``g[j] == g[j-2] != g[j-1]`` (A→B→A). Per ticket (docs/metrics.md
"Ping-pong"): the number of bounces, the distinct teams involved, the handovers, the path, when the
first bounce happened, the *detour* (time spent at the intermediate team of each bounce, summed)
and the time since the first bounce (to the stop, or to ``now`` while open).

The handover matrix counts consecutive pairs ``from → to`` over all tickets (each pair also with
the number of tickets and of bounces whose outward leg it was).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.facts import sum_per_ticket, ticket_facts
from analytics.frames import FIELD_ASSIGNEE, FIELD_TEAM, NAT, from_ns, td, timestamp_ns
from analytics.log import TicketLog
from analytics.result import Result, Window
from analytics.settings import FlowSettings
from analytics.stats import unique_counts

__all__ = ["Sequence", "bounces", "handover_matrix", "ping_pong", "sequence"]

I64 = npt.NDArray[np.int64]

OPEN = "open"
BOUNCES = "bounces"
TEAMS = "teams"
HANDOVERS = "handovers"
PATH = "path"
FIRST_BOUNCE_AT = "first_bounce_at"
DETOUR = "detour"
SINCE_FIRST_BOUNCE = "since_first_bounce"
FROM = "from"
TO = "to"
TICKETS = "tickets"

Field = Literal["team", "assignee"]


@dataclass(frozen=True, eq=False)
class Sequence:
    """Stays at a team (or assignee) per ticket, missing values dropped, repeats merged."""

    ticket: I64
    code: I64
    start: I64
    values: npt.NDArray[np.object_]
    bounce: npt.NDArray[np.bool_]
    """this stay returns to the team before last"""


def sequence(log: TicketLog, *, field: Field, now: int) -> Sequence:
    """The stays of ``field`` known by ``now`` (cached per log, field and ``now``)."""
    key = (field, now)
    cache: dict[object, Sequence] = log.__dict__.setdefault("_sequences", {})
    if key not in cache:
        iv = log.intervals(FIELD_TEAM if field == "team" else FIELD_ASSIGNEE)
        rows = np.flatnonzero((iv.code >= 0) & (iv.start <= now))
        tk, code = iv.ticket[rows], iv.code[rows]
        keep = np.ones(len(rows), dtype=bool)
        if len(rows):
            keep[1:] = (tk[1:] != tk[:-1]) | (code[1:] != code[:-1])
        rows, tk, code = rows[keep], tk[keep], code[keep]
        bounce = np.zeros(len(rows), dtype=bool)
        if len(rows) > 2:
            bounce[2:] = (tk[2:] == tk[:-2]) & (code[2:] == code[:-2])
        cache[key] = Sequence(
            ticket=tk, code=code, start=iv.start[rows], values=iv.values, bounce=bounce
        )
    return cache[key]


@dataclass(frozen=True, eq=False)
class _Bounces:
    examined: npt.NDArray[np.bool_]
    flagged: I64
    """ticket rows with at least one bounce"""
    bounces: I64
    teams: I64
    handovers: I64
    first_bounce: I64
    detour: I64
    paths: npt.NDArray[np.object_]


def bounces(
    log: TicketLog, *, now: int, field: Field, open_only: bool, settings: FlowSettings
) -> _Bounces:
    """Per-ticket bounce statistics (arrays aligned with ``flagged``)."""
    key = (now, field, settings.start_states, settings.reopen_policy)
    cache: dict[object, _Bounces] = log.__dict__.setdefault("_bounces", {})
    if key not in cache:
        cache[key] = _bounces(log, now=now, field=field, settings=settings)
    every = cache[key]
    if not open_only:
        return every
    facts = ticket_facts(log, now=now, settings=settings)
    keep = facts.is_open[every.flagged]
    return _Bounces(
        examined=every.examined & facts.is_open,
        flagged=every.flagged[keep],
        bounces=every.bounces[keep],
        teams=every.teams[keep],
        handovers=every.handovers[keep],
        first_bounce=every.first_bounce[keep],
        detour=every.detour[keep],
        paths=every.paths[keep],
    )


def _bounces(log: TicketLog, *, now: int, field: Field, settings: FlowSettings) -> _Bounces:
    facts = ticket_facts(log, now=now, settings=settings)
    seq = sequence(log, field=field, now=now)
    n = log.n_tickets
    count = np.bincount(seq.ticket[seq.bounce], minlength=n)
    runs = np.bincount(seq.ticket, minlength=n)
    examined = (runs > 0) & facts.exists
    flagged = np.flatnonzero(examined & (count > 0))

    first_bounce = np.full(n, NAT, dtype=np.int64)
    b_rows = np.flatnonzero(seq.bounce)
    if len(b_rows):
        heads = np.concatenate([[True], seq.ticket[b_rows][1:] != seq.ticket[b_rows][:-1]])
        firsts = b_rows[heads]
        first_bounce[seq.ticket[firsts]] = seq.start[firsts]
    detour = sum_per_ticket(n, seq.ticket[b_rows], seq.start[b_rows] - seq.start[b_rows - 1])

    size = len(seq.values) + 1
    distinct, _ = unique_counts(seq.ticket * size + seq.code)
    teams = np.bincount(distinct // size, minlength=n)

    wanted = np.zeros(n, dtype=bool)
    wanted[flagged] = True
    chosen = wanted[seq.ticket]
    labels = pd.Series(seq.values[seq.code[chosen]], dtype=object).astype(str) + " → "
    paths = labels.groupby(seq.ticket[chosen], sort=True).sum()
    return _Bounces(
        examined=examined,
        flagged=flagged,
        bounces=count[flagged].astype(np.int64),
        teams=teams[flagged].astype(np.int64),
        handovers=(runs[flagged] - 1).astype(np.int64),
        first_bounce=first_bounce[flagged],
        detour=detour[flagged],
        paths=paths.str[: -len(" → ")].to_numpy(dtype=object),
    )


def ping_pong(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    field: Field = "team",
    open_only: bool = False,
    settings: FlowSettings | None = None,
) -> Result[FlowSettings]:
    """Tickets whose ``field`` sequence goes A→B→A, most bounces first.

    Columns: ``open``, ``bounces``, ``teams`` (distinct), ``handovers``, ``path`` (``"A → B →
    A"``), ``first_bounce_at``, ``detour`` and ``since_first_bounce``. ``n`` counts the tickets
    examined (those with at least one known team by ``now``, open ones only with ``open_only``).
    """
    settings = settings or FlowSettings()
    now_ns = timestamp_ns(now)
    facts = ticket_facts(log, now=now_ns, settings=settings)
    b = bounces(log, now=now_ns, field=field, open_only=open_only, settings=settings)
    rows = b.flagged
    ends = np.where(facts.final_stop[rows] != NAT, facts.final_stop[rows], now_ns)
    frame = log.keys_frame(rows)
    frame[OPEN] = facts.is_open[rows]
    frame[BOUNCES] = b.bounces
    frame[TEAMS] = b.teams
    frame[HANDOVERS] = b.handovers
    frame[PATH] = b.paths
    frame[FIRST_BOUNCE_AT] = from_ns(b.first_bounce)
    frame[DETOUR] = td(b.detour)
    frame[SINCE_FIRST_BOUNCE] = td(ends - b.first_bounce)
    frame = frame.sort_values([BOUNCES, SINCE_FIRST_BOUNCE], ascending=False, kind="stable")
    return Result(
        name="ping_pong",
        frame=frame.reset_index(drop=True),
        n=int(b.examined.sum()),
        n_of=f"{'open ' if open_only else ''}tickets with a known {field}",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        definition="docs/metrics.md#ping-pong",
        notes=(f"sequence of {field}s, missing values dropped, repeats merged",),
    )


def handover_matrix(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    field: Field = "team",
    window: Window | None = None,
) -> Result[None]:
    """Handovers between teams (or assignees): one row per ``from → to`` pair, most first.

    Columns ``from``, ``to``, ``handovers``, ``tickets`` (distinct tickets with that handover) and
    ``bounces`` (A→B→A bounces whose outward leg was this pair). Only handovers at or after the
    window start (and before its end) count when a window is given; ``n`` counts the handovers.
    Pivot with ``frame.pivot(index="from", columns="to", values="handovers")``.
    """
    now_ns = timestamp_ns(now)
    seq = sequence(log, field=field, now=now_ns)
    rows = np.flatnonzero(
        np.concatenate([[False], seq.ticket[1:] == seq.ticket[:-1]]) if len(seq.ticket) else []
    )
    if window is not None:
        at = seq.start[rows]
        rows = rows[(at >= window.start_ns) & (at < window.end_ns)]
    size = len(seq.values)
    pair = seq.code[rows - 1] * size + seq.code[rows]
    used, counts = unique_counts(pair)
    # distinct tickets per pair
    tp, _ = unique_counts(seq.ticket[rows] * (size * size) + pair)
    tickets = np.bincount(np.searchsorted(used, tp % (size * size)), minlength=len(used))
    # bounces: the outward leg of A→B→A is the handover into the bounce's predecessor
    b = np.flatnonzero(seq.bounce)
    if window is not None:
        b = b[(seq.start[b - 1] >= window.start_ns) & (seq.start[b - 1] < window.end_ns)]
    out_pair = seq.code[b - 2] * size + seq.code[b - 1]
    bounces = np.bincount(np.searchsorted(used, out_pair), minlength=len(used))
    frame = pd.DataFrame(
        {
            FROM: seq.values[used // size] if len(used) else np.array([], dtype=object),
            TO: seq.values[used % size] if len(used) else np.array([], dtype=object),
            HANDOVERS: counts.astype(np.int64),
            TICKETS: tickets[: len(used)].astype(np.int64),
            BOUNCES: bounces[: len(used)].astype(np.int64),
        }
    )
    frame = frame.sort_values([HANDOVERS, BOUNCES], ascending=False, kind="stable")
    return Result(
        name="handover_matrix",
        frame=frame.reset_index(drop=True),
        n=len(rows),
        n_of="handovers",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=None,
        window=window,
        definition="docs/metrics.md#handover-matrix",
    )
