"""A synthetic service desk: canonical ticket and event frames with realistic distributions.

Used by the benchmark (``bench/bench_analytics.py``: 1,000,000 tickets, about 8 events each) and
by property tests. Every ticket walks a Markov chain over the lifecycle states, simulated for all
tickets at once, one step per loop iteration (the loop runs over steps, never over tickets):

- arrivals over ``days`` days, mostly on weekdays and in office hours (Europe/Amsterdam);
- priorities P1-P5 at 2 / 8 / 50 / 30 / 10 %; due date from a per-priority target;
- ``teams`` teams with Zipf-like popularity, 10 operators each, categories owned by teams;
- new → in progress (assignment) / resolved at first contact / cancelled / transfer;
  in progress → waiting on customer / supplier / other, transfer to another team (back to the
  previous one in 30 % of transfers: ping-pong), reassignment, resolved;
  waiting → in progress / resolved; resolved → closed / reopened; closed → rarely reopened;
- stays are log-normal (new ~1.5 h, in progress ~10 h, waiting on customer ~30 h, on a supplier
  ~60 h, resolved → closed ~3 days), with heavy tails;
- 2 % of tickets are forgotten (every stay 20 times as long): the stale and dead ones;
- a customer-visible update when a ticket is set to wait for the customer and when the customer
  answers; internal notes now and then.

The frames match ``connectors.base`` (times ``datetime64[us, UTC]``, ``priority`` Int64); events
come sorted by ticket, time and ``seq`` like a warehouse read. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.frames import (
    EVENT_COLUMNS,
    FIELD_ASSIGNEE,
    FIELD_CUSTOMER_UPDATE,
    FIELD_INTERNAL_UPDATE,
    FIELD_STATE,
    FIELD_TEAM,
    STATES,
    TICKET_COLUMNS,
    pick_or_none,
)

__all__ = ["SyntheticDesk", "synthetic_desk"]

I64 = npt.NDArray[np.int64]
_H = 3_600_000_000_000

NEW, IP, WC, WS, WO, RES, CLO, CAN = range(8)
# moves: 0..7 go to that state; 8 = transfer to another team (back to new, unassigned);
# 9 = reassignment within the team (stays in progress)
TRANSFER, REASSIGN = 8, 9
_MOVES = np.zeros((8, 10))
_MOVES[NEW, [IP, RES, CAN, TRANSFER]] = [0.88, 0.04, 0.03, 0.05]
_MOVES[IP, [WC, WS, WO, TRANSFER, REASSIGN, RES]] = [0.15, 0.05, 0.04, 0.09, 0.03, 0.64]
_MOVES[[WC, WS, WO], IP] = 0.93
_MOVES[[WC, WS, WO], RES] = 0.07
_MOVES[RES, [CLO, IP]] = [0.93, 0.07]
_MOVES[CLO, [CLO, IP]] = [0.995, 0.005]
_MOVES[CAN, CAN] = 1.0
_CUM = np.cumsum(_MOVES, axis=1)
_CUM[:, -1] = 1.0  # a draw in [0, 1) never runs past the last possible move
# stay before the next move: log-normal median hours and sigma, per state
_STAY_MEDIAN_H = np.array([1.5, 10.0, 30.0, 60.0, 24.0, 72.0, 2000.0, 1.0])
_STAY_SIGMA = np.array([1.2, 1.3, 1.0, 1.0, 1.0, 0.5, 1.0, 0.1])
_TARGET_H = np.array([0.0, 4.0, 8.0, 72.0, 120.0, 240.0])  # due date after creation, per priority


@dataclass(frozen=True)
class SyntheticDesk:
    tickets: pd.DataFrame
    events: pd.DataFrame
    now: pd.Timestamp
    """the end of the simulated period: a natural ``now`` for the analytics"""


def _zipf(rng: np.random.Generator, n: int, size: int, a: float = 1.1) -> I64:
    weights = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size=size, p=weights / weights.sum()).astype(np.int64)


def _labels(prefix: str, n: int) -> npt.NDArray[np.object_]:
    return np.array([f"{prefix}{i:03d}" for i in range(n)], dtype=object)


def synthetic_desk(
    n_tickets: int,
    *,
    seed: int = 0,
    start: str = "2023-01-02",
    days: int = 730,
    teams: int = 150,
    categories: int = 400,
    source: str = "synthetic",
    max_steps: int = 24,
) -> SyntheticDesk:
    """Simulate ``n_tickets`` tickets (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").value
    now = t0 + days * 24 * _H

    # arrivals: a weekday-heavy day, an office-hours-heavy hour (UTC+1)
    day = rng.integers(0, days, size=n_tickets * 2)
    weekday = (pd.Timestamp(start).day_of_week + day) % 7
    keep = rng.random(len(day)) < np.where(weekday < 5, 1.0, 0.15)
    day = day[keep][:n_tickets]
    if len(day) < n_tickets:  # pragma: no cover - only for absurdly small inputs
        day = np.concatenate([day, rng.integers(0, days, n_tickets - len(day))])
    hour = np.clip(rng.normal(12.5, 2.8, n_tickets), 0, 23.99) - 1
    created = t0 + day * 24 * _H + (hour * _H).astype(np.int64)
    created = np.sort(np.clip(created, t0, now - 1))

    priority = rng.choice(5, size=n_tickets, p=[0.02, 0.08, 0.5, 0.3, 0.1]) + 1
    category = _zipf(rng, categories, n_tickets)
    owner = _zipf(rng, teams, categories, a=0.8)  # each category has an owning team
    team = owner[category]
    misrouted = rng.random(n_tickets) < 0.08
    team[misrouted] = _zipf(rng, teams, int(misrouted.sum()))
    requester = rng.integers(0, 50_000, n_tickets)

    n = n_tickets
    ticket_ix = np.arange(n, dtype=np.int64)
    state = np.full(n, NEW, dtype=np.int64)
    prev_team = np.full(n, -1, dtype=np.int64)
    assignee = np.full(n, -1, dtype=np.int64)
    t = created.copy()
    reopens = np.zeros(n, dtype=np.int64)
    transfers = np.zeros(n, dtype=np.int64)

    ev_t: list[I64] = []
    ev_ticket: list[I64] = []
    ev_field: list[I64] = []
    ev_old: list[I64] = []
    ev_new: list[I64] = []
    ev_actor: list[I64] = []  # >= 0 operator, -1 system, -2 the requester
    fields = {
        FIELD_STATE: 0,
        FIELD_TEAM: 1,
        FIELD_ASSIGNEE: 2,
        FIELD_CUSTOMER_UPDATE: 3,
        FIELD_INTERNAL_UPDATE: 4,
    }

    def emit(rows: I64, when: I64, field: str, old: I64, new: I64, actor: I64) -> None:
        ev_ticket.append(rows)
        ev_t.append(when)
        ev_field.append(np.full(len(rows), fields[field], dtype=np.int64))
        ev_old.append(old)
        ev_new.append(new)
        ev_actor.append(actor)

    none = np.full(n, -1, dtype=np.int64)
    system = np.full(n, -1, dtype=np.int64)
    emit(ticket_ix, created, FIELD_STATE, none, state.copy(), system)
    emit(ticket_ix, created, FIELD_TEAM, none, team.copy(), system)

    frozen = np.zeros(n, dtype=bool)  # cancelled, or closed for good
    # a few tickets get forgotten: every stay of theirs is 20 times as long
    slow = np.where(rng.random(n) < 0.02, 20.0, 1.0)
    for _ in range(max_steps):
        live = np.flatnonzero(~frozen)
        if not len(live):
            break
        s = state[live]
        stay = rng.lognormal(np.log(_STAY_MEDIAN_H[s]), _STAY_SIGMA[s]) * _H * slow[live]
        when = t[live] + stay.astype(np.int64)
        move = (rng.random(len(live))[:, None] > _CUM[s]).sum(axis=1)
        stays = (s == move) & ((s == CLO) | (s == CAN))
        late = when >= now  # its next move lies beyond the simulated period: it stays put
        frozen[live[stays | late]] = True
        go = ~late & ~stays
        live, s, when, move = live[go], s[go], when[go], move[go]
        if not len(live):
            break
        op = assignee[live]
        actor = np.where(op >= 0, op, -1)

        # transfers: to another team (30 % back to the previous one), unassigned, state new
        tr = move == TRANSFER
        if tr.any():
            rows = live[tr]
            back = (rng.random(len(rows)) < 0.3) & (prev_team[rows] >= 0)
            other = _zipf(rng, teams, len(rows))
            other = np.where(other == team[rows], (other + 1) % teams, other)
            dest = np.where(back, prev_team[rows], other)
            emit(rows, when[tr], FIELD_TEAM, team[rows], dest, actor[tr])
            prev_team[rows] = team[rows]
            team[rows] = dest
            had = assignee[rows] >= 0
            emit(
                rows[had],
                when[tr][had],
                FIELD_ASSIGNEE,
                assignee[rows][had],
                none[: had.sum()],
                actor[tr][had],
            )
            assignee[rows] = -1
            moved = state[rows] != NEW
            emit(
                rows[moved],
                when[tr][moved],
                FIELD_STATE,
                state[rows][moved],
                np.full(int(moved.sum()), NEW),
                actor[tr][moved],
            )
            state[rows] = NEW
            transfers[rows] += 1
        # reassignment within the team
        ra = move == REASSIGN
        if ra.any():
            rows = live[ra]
            new_op = team[rows] * 10 + rng.integers(0, 10, len(rows))
            emit(rows, when[ra], FIELD_ASSIGNEE, assignee[rows], new_op, actor[ra])
            assignee[rows] = new_op
        # state changes
        sc = move < TRANSFER
        rows, to, at, who = live[sc], move[sc], when[sc], actor[sc]
        take = (to == IP) & (assignee[rows] < 0)
        if take.any():
            new_op = team[rows[take]] * 10 + rng.integers(0, 10, int(take.sum()))
            emit(rows[take], at[take], FIELD_ASSIGNEE, none[: take.sum()], new_op, new_op)
            assignee[rows[take]] = new_op
            who = np.where(take, assignee[rows], who)
        was = state[rows]
        emit(rows, at, FIELD_STATE, was, to, who)
        reopens[rows] += ((was == RES) | (was == CLO)) & (to == IP)
        # customer-visible updates: asked to wait for the customer, and the answer
        ask = to == WC
        emit(
            rows[ask],
            at[ask],
            FIELD_CUSTOMER_UPDATE,
            none[: ask.sum()],
            np.zeros(int(ask.sum()), np.int64),
            who[ask],
        )
        answer = was == WC
        emit(
            rows[answer],
            at[answer],
            FIELD_CUSTOMER_UPDATE,
            none[: answer.sum()],
            np.ones(int(answer.sum()), np.int64),
            np.full(int(answer.sum()), -2),
        )
        note = (to == IP) & (rng.random(len(rows)) < 0.08)
        emit(
            rows[note],
            at[note] + _H // 2,
            FIELD_INTERNAL_UPDATE,
            none[: note.sum()],
            np.full(int(note.sum()), 2),
            who[note],
        )
        state[rows] = to
        t[live] = when

    return _frames(
        source=source,
        now=now,
        created=created,
        priority=priority,
        category=category,
        requester=requester,
        state=state,
        team=team,
        assignee=assignee,
        reopens=reopens,
        transfers=transfers,
        teams=teams,
        categories=categories,
        ev=(ev_ticket, ev_t, ev_field, ev_old, ev_new, ev_actor),
    )


def _frames(
    *,
    source: str,
    now: int,
    created: I64,
    priority: I64,
    category: I64,
    requester: I64,
    state: I64,
    team: I64,
    assignee: I64,
    reopens: I64,
    transfers: I64,
    teams: int,
    categories: int,
    ev: tuple[list[I64], list[I64], list[I64], list[I64], list[I64], list[I64]],
) -> SyntheticDesk:
    n = len(created)
    tk, tm, fd, old, new, actor = (np.concatenate(parts) for parts in ev)
    field_order = np.array([0, 1, 2, 3, 4])
    order = np.lexsort((np.arange(len(tk)), tm, tk))
    tk, tm, fd, old, new, actor = (
        tk[order],
        tm[order],
        fd[order],
        old[order],
        new[order],
        actor[order],
    )
    seq = _seq_within_ties(tk, tm)

    ids = pd.Series(np.arange(n)).astype(str).str.zfill(7).radd("INC").to_numpy(dtype=object)
    team_names = _labels("TEAM-", teams)
    op_names = np.array([f"op{i:05d}" for i in range(teams * 10)], dtype=object)
    cat_names = _labels("CAT-", categories)
    states = np.array(STATES, dtype=object)
    field_names = np.array(
        [FIELD_STATE, FIELD_TEAM, FIELD_ASSIGNEE, FIELD_CUSTOMER_UPDATE, FIELD_INTERNAL_UPDATE],
        dtype=object,
    )[field_order]
    update_kinds = np.array(["mail to customer", "reply from customer", "work note"], dtype=object)
    requester_names = pd.Series(requester).astype(str).radd("user").to_numpy(dtype=object)

    def values(codes: I64) -> npt.NDArray[np.object_]:
        out = np.full(len(codes), None, dtype=object)
        for f, table in (
            (0, states),
            (1, team_names),
            (2, op_names),
            (3, update_kinds),
            (4, update_kinds),
        ):
            rows = np.flatnonzero((fd == f) & (codes >= 0))
            out[rows] = table[codes[rows]]
        return out

    actor_names = pick_or_none(op_names, actor)
    by_requester = actor == -2
    actor_names[by_requester] = requester_names[tk[by_requester]]

    times = pd.DatetimeIndex(tm.view("datetime64[ns]")).tz_localize("UTC").as_unit("us")
    events = pd.DataFrame(
        {
            "source": _same(source, len(tk)),
            "ticket_id": ids[tk],
            "event_key": pd.Series(np.arange(len(tk))).astype(str).radd("e").to_numpy(object),
            "occurred_at": times,
            "seq": seq,
            "field": field_names[fd],
            "old_value": values(old),
            "new_value": values(new),
            "actor": actor_names,
            "origin": _same("history", len(tk)),
        }
    )[list(EVENT_COLUMNS)]

    # ticket columns from the final state and the event history
    last = np.ones(len(tk), dtype=bool)
    last[:-1] = tk[1:] != tk[:-1]
    updated = np.zeros(n, dtype=np.int64)
    updated[tk[last]] = tm[last]
    is_state = fd == 0
    s_rows = np.flatnonzero(is_state)
    s_tk, s_new = tk[s_rows], new[s_rows]
    done = np.isin(s_new, [RES, CLO, CAN])
    first = np.ones(len(s_rows), dtype=bool)
    first[1:] = s_tk[1:] != s_tk[:-1]
    new_run = first | (done != np.concatenate([[False], done[:-1]]))
    run_first = np.maximum.accumulate(np.where(new_run, np.arange(len(s_rows)), 0))
    s_last = np.ones(len(s_rows), dtype=bool)
    s_last[:-1] = s_tk[1:] != s_tk[:-1]
    final = s_last & done
    nat = np.iinfo(np.int64).min
    resolved = np.full(n, nat, dtype=np.int64)
    resolved[s_tk[final]] = tm[s_rows][run_first[final]]
    closed = np.full(n, nat, dtype=np.int64)
    ends_closed = s_last & np.isin(s_new, [CLO, CAN])
    closed[s_tk[ends_closed]] = tm[s_rows][ends_closed]
    due = created + (_TARGET_H[priority] * _H).astype(np.int64)

    def utc(values: I64) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(values.view("datetime64[ns]")).tz_localize("UTC").as_unit("us")

    state_names = states[state]
    raw = np.array([s.replace("_", " ").capitalize() for s in STATES], dtype=object)
    tickets = pd.DataFrame(
        {
            "source": _same(source, n),
            "external_id": ids,
            "number": ids,
            "title": np.full(n, None, dtype=object),
            "type": _same("incident", n),
            "raw_status": raw[state],
            "state": state_names,
            "priority_raw": np.array(["0", "1", "2", "3", "4", "5"], dtype=object)[priority],
            "priority": pd.array(priority, dtype="Int64"),
            "category": cat_names[category],
            "team": team_names[team],
            "assignee": pick_or_none(op_names, assignee),
            "requester": requester_names,
            "created_at": utc(created),
            "updated_at": utc(updated),
            "resolved_at": utc(resolved),
            "closed_at": utc(closed),
            "due_at": utc(due),
            "reassignment_count": pd.array(transfers, dtype="Int64"),
            "reopen_count": pd.array(reopens, dtype="Int64"),
            "url": np.full(n, None, dtype=object),
            "raw": np.full(n, None, dtype=object),
        }
    )[list(TICKET_COLUMNS)]
    return SyntheticDesk(tickets=tickets, events=events, now=pd.Timestamp(now, tz="UTC"))


def _same(value: str, n: int) -> npt.NDArray[np.object_]:
    """``n`` references to one string object (``np.full`` would make ``n`` copies of it)."""
    return np.array([value], dtype=object)[np.zeros(n, dtype=np.int64)]


def _seq_within_ties(tk: I64, tm: I64) -> I64:
    """0, 1, 2, ... among events of the same ticket at the same instant (input order)."""
    n = len(tk)
    if not n:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = (tk[1:] != tk[:-1]) | (tm[1:] != tm[:-1])
    starts = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    return (np.arange(n) - starts).astype(np.int64)
