"""Overloaded and absent operators, with takeover suggestions.

Per (team, operator) holding open tickets at ``now`` (docs/metrics.md "Workload"):

- *overloaded*: the operator holds more open tickets in the team than the team's
  ``overload_percentile`` (85th, nearest rank) of open tickets per operator. In a team where
  everybody holds the same amount nobody is overloaded.
- *absent*: the operator has made no change (no event with them as ``actor``, any field) for
  ``absent_after`` of business time (work calendar of the team) while holding open tickets.
  Where a source records no actors at all, absence cannot be judged and is left empty (NA).

Takeover suggestions, for each open ticket held by an overloaded or absent operator: colleagues
of the same team who resolved a ticket of the same category within ``takeover_lookback`` (the
assignee and team at the moment of the stop), who are neither overloaded nor absent themselves,
least loaded first (then most such resolutions, then name), at most ``takeover_suggestions``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import Calendars, business_between
from analytics.facts import ticket_facts
from analytics.frames import (
    ASSIGNEE,
    CATEGORY,
    FIELD_ASSIGNEE,
    FIELD_TEAM,
    NAT,
    PRIORITY,
    TEAM,
    from_ns,
    td,
    timestamp_ns,
)
from analytics.log import TicketLog
from analytics.result import Result
from analytics.settings import BlockerSettings, FlowSettings
from analytics.snapshot import Snapshot, open_snapshot
from analytics.stats import grouped_percentiles

__all__ = ["operator_load", "takeover_suggestions"]

I64 = npt.NDArray[np.int64]

OPEN_TICKETS = "open_tickets"
TEAM_THRESHOLD = "team_threshold"
OVERLOADED = "overloaded"
OLDEST_OPEN = "oldest_open"
LAST_ACTIVITY_AT = "last_activity_at"
IDLE = "idle_business"
ABSENT = "absent"
REASON = "reason"
HOLDER = "holder"
HOLDER_REASON = "holder_reason"
SUGGESTION = "suggestion"
SUGGESTION_OPEN = "suggestion_open_tickets"
SUGGESTION_RESOLVED = "suggestion_resolved"
RANK = "rank"

_ACTIVITY_LOOKBACK = timedelta(days=60)


def _last_actor_activity(log: TicketLog, now: int, lookback: int) -> tuple[pd.Series, set[str]]:
    """Last event instant per actor within ``lookback`` before ``now``; sources with actors."""
    rows = np.flatnonzero((log.ev_time <= now) & (log.ev_time > now - lookback))
    actors = log.ev_actor[rows]
    known = pd.notna(actors)
    rows, actors = rows[known], actors[known]
    sources = set(pd.unique(log.source[log.ev_ticket[rows]]))
    last = pd.Series(log.ev_time[rows]).groupby(actors).max()
    return last, sources


def _load(
    log: TicketLog, snap: Snapshot, settings: BlockerSettings, calendars: Calendars
) -> tuple[pd.DataFrame, I64]:
    held = np.flatnonzero(pd.notna(snap.assignee))
    team = np.where(pd.isna(snap.team[held]), "(no team)", snap.team[held]).astype(object)
    t_code, t_uniq = pd.factorize(team)
    a_code, a_uniq = pd.factorize(snap.assignee[held])
    pair_code, pair_uniq = pd.factorize(t_code.astype(np.int64) * len(a_uniq) + a_code)
    codes = np.asarray(pair_code, dtype=np.int64)
    pair_uniq = np.asarray(pair_uniq, dtype=np.int64)
    ops = pd.DataFrame(
        {
            TEAM: np.asarray(t_uniq, dtype=object)[pair_uniq // max(len(a_uniq), 1)],
            ASSIGNEE: np.asarray(a_uniq, dtype=object)[pair_uniq % max(len(a_uniq), 1)],
        }
    )
    ops[OPEN_TICKETS] = np.bincount(codes, minlength=len(ops)).astype(np.int64)
    age = snap.now - log.created[snap.rows[held]]
    oldest = np.full(len(ops), NAT, dtype=np.int64)
    np.maximum.at(oldest, codes, age)
    ops[OLDEST_OPEN] = td(oldest)
    t_codes, t_uniques = pd.factorize(ops[TEAM].to_numpy(dtype=object))
    table, _ = grouped_percentiles(
        t_codes.astype(np.int64),
        ops[OPEN_TICKETS].to_numpy(dtype=np.int64),
        len(t_uniques),
        (settings.overload_percentile,),
        "nearest_rank",
    )
    ops[TEAM_THRESHOLD] = table[t_codes, 0]
    ops[OVERLOADED] = ops[OPEN_TICKETS] > ops[TEAM_THRESHOLD]

    lookback = int(_ACTIVITY_LOOKBACK.total_seconds() * 1e9)
    last, sources = _last_actor_activity(log, snap.now, lookback)
    found = last.index.get_indexer(pd.Index(ops[ASSIGNEE].to_numpy(dtype=object)))
    known = np.append(last.to_numpy(dtype=np.int64), NAT)
    last_ns = known[np.where(found >= 0, found, len(known) - 1)]
    ops[LAST_ACTIVITY_AT] = from_ns(last_ns)
    cal = calendars.index_for(
        team=ops[TEAM].to_numpy(dtype=object),
        source=np.full(len(ops), None, dtype=object),
    )
    since = np.where(last_ns == NAT, snap.now - lookback, last_ns)
    idle = business_between(calendars, cal, since, np.full(len(ops), snap.now, np.int64))
    ops[IDLE] = td(idle)
    limit = np.round(
        settings.absent_after.days * calendars.day_ns(cal) + settings.absent_after.hours * 3.6e12
    ).astype(np.int64)
    # absence can be judged only for operators whose tickets come from sources with actors
    op_source = pd.Series(log.source[snap.rows[held]]).groupby(codes).first()
    judged = op_source.reindex(range(len(ops))).isin(sources).to_numpy()
    absent = pd.array(idle >= limit, dtype="boolean")
    absent[~judged] = pd.NA
    ops[ABSENT] = absent
    reason = np.full(len(ops), "", dtype=object)
    over = ops[OVERLOADED].to_numpy(dtype=bool)
    reason[over] = (
        ops.loc[over, OPEN_TICKETS].astype(str)
        + " open tickets, team threshold "
        + ops.loc[over, TEAM_THRESHOLD].astype(str)
    ).to_numpy(dtype=object)
    away = ops[ABSENT].fillna(False).to_numpy(dtype=bool)
    never = last_ns == NAT
    away_text = np.where(
        never,
        f"no activity in the last {_ACTIVITY_LOOKBACK.days} days",
        "no activity for "
        + (pd.Series(idle) / 3.6e12).round(1).astype(str).to_numpy(dtype=object)
        + " business h",
    ).astype(object)
    both = over & away
    reason[away & ~over] = away_text[away & ~over]
    reason[both] = reason[both] + "; " + away_text[both]
    ops[REASON] = reason
    return ops, codes


def operator_load(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Open work per (team, operator), flagging overloaded and absent operators.

    Columns: ``team``, ``assignee``, ``open_tickets``, ``team_threshold`` (the team's percentile
    of open tickets per operator), ``overloaded``, ``oldest_open``, ``last_activity_at``,
    ``idle_business``, ``absent`` (NA where the source records no actors) and ``reason``.
    ``n`` counts operators holding open tickets.
    """
    settings = settings or BlockerSettings()
    calendars = calendars or Calendars()
    now_ns = timestamp_ns(now)
    snap = open_snapshot(log, now=now_ns, calendars=calendars)
    ops, _ = _load(log, snap, settings, calendars)
    ops = ops.sort_values([OVERLOADED, OPEN_TICKETS], ascending=False, kind="stable")
    return Result(
        name="operator_load",
        frame=ops.reset_index(drop=True),
        n=len(ops),
        n_of="operators holding open tickets",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        calendars=calendars,
        definition="docs/metrics.md#workload",
    )


def takeover_suggestions(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None = None,
    calendars: Calendars | None = None,
) -> Result[BlockerSettings]:
    """Who could take over the open tickets of overloaded or absent operators.

    One row per (ticket, suggested colleague), best first within a ticket (``rank`` 1).
    Tickets without a colleague who qualifies get no row. ``n`` counts the tickets needing a
    takeover.
    """
    settings = settings or BlockerSettings()
    calendars = calendars or Calendars()
    now_ns = timestamp_ns(now)
    snap = open_snapshot(log, now=now_ns, calendars=calendars)
    ops, codes = _load(log, snap, settings, calendars)
    held = np.flatnonzero(pd.notna(snap.assignee))
    flagged_op = ops[OVERLOADED].to_numpy(dtype=bool) | ops[ABSENT].fillna(False).to_numpy(
        dtype=bool
    )
    needs = held[flagged_op[codes]]
    why = np.where(ops[OVERLOADED].to_numpy(dtype=bool), "overloaded", "absent").astype(object)
    tickets = log.keys_frame(snap.rows[needs])
    tickets[PRIORITY] = log.tickets[PRIORITY].to_numpy()[snap.rows[needs]]
    tickets[TEAM] = ops[TEAM].to_numpy(dtype=object)[codes[flagged_op[codes]]]
    tickets[CATEGORY] = log.column(CATEGORY)[snap.rows[needs]]
    tickets[HOLDER] = snap.assignee[needs]
    tickets[HOLDER_REASON] = why[codes[flagged_op[codes]]]

    # who resolved what recently: team and assignee at the stop
    facts = ticket_facts(log, now=now_ns, settings=FlowSettings())
    lookback = int(settings.takeover_lookback.total_seconds() * 1e9)
    stop = facts.final_stop
    recent = np.flatnonzero((stop != NAT) & (stop > now_ns - lookback))
    teams = log.intervals(FIELD_TEAM)
    assignees = log.intervals(FIELD_ASSIGNEE)
    resolved = pd.DataFrame(
        {
            TEAM: teams.value_of(teams.at(recent, stop[recent])),
            SUGGESTION: assignees.value_of(assignees.at(recent, stop[recent])),
            CATEGORY: log.column(CATEGORY)[recent],
        }
    ).dropna()
    counts = resolved.groupby([TEAM, CATEGORY, SUGGESTION]).size().rename(SUGGESTION_RESOLVED)
    cands = counts.reset_index()
    load = ops.rename(columns={ASSIGNEE: SUGGESTION})
    cands = cands.merge(
        load[[TEAM, SUGGESTION, OPEN_TICKETS, OVERLOADED, ABSENT]],
        on=[TEAM, SUGGESTION],
        how="left",
    )
    cands[OPEN_TICKETS] = cands[OPEN_TICKETS].fillna(0).astype(np.int64)
    fit = ~cands[OVERLOADED].fillna(False).astype(bool) & ~cands[ABSENT].fillna(False).astype(bool)
    cands = cands.loc[fit, [TEAM, CATEGORY, SUGGESTION, OPEN_TICKETS, SUGGESTION_RESOLVED]]
    cands = cands.rename(columns={OPEN_TICKETS: SUGGESTION_OPEN})
    out = tickets.merge(cands, on=[TEAM, CATEGORY], how="inner")
    out = out[out[SUGGESTION] != out[HOLDER]]
    out = out.sort_values(
        ["source", "ticket_id", SUGGESTION_OPEN, SUGGESTION_RESOLVED, SUGGESTION],
        ascending=[True, True, True, False, True],
        kind="stable",
    )
    out[RANK] = out.groupby(["source", "ticket_id"]).cumcount() + 1
    out = out[out[RANK] <= settings.takeover_suggestions].reset_index(drop=True)
    return Result(
        name="takeover_suggestions",
        frame=out,
        n=len(needs),
        n_of="open tickets held by overloaded or absent operators",
        now=pd.Timestamp(now_ns, tz="UTC"),
        settings=settings,
        calendars=calendars,
        definition="docs/metrics.md#workload",
    )
