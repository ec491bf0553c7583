"""Realistic histories, made through ``modify()`` so the audit trail is the real one.

Each incident is logged by a caller or the service desk, goes to a group, is picked up, and then
takes some of: reassignment to another group (sometimes back again: A -> B -> A), on hold with a
reason (awaiting caller, problem, vendor or change) and back, a priority change, comments and
work notes; it ends resolved (sometimes reopened and resolved again), closed, cancelled, or
still open (in progress or on hold). Records of a table on the task state model
(``sc_req_item``, ``sc_request``, ``task``) go Open, Work in Progress (now and then Pending and
back, or to another group) and end Closed Complete/Incomplete/Skipped or stay open. With
``audit_rows`` the lifecycles are sized so the run adds about that many ``sys_audit`` rows.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from tests.fakes.servicenow.records import OWN_STATE_MODELS, PRIORITY, Records

__all__ = ["GROUPS", "generate"]

GROUPS = (
    "Service Desk",
    "Network",
    "Database",
    "Hardware",
    "Software",
    "Workplace",
    "Applications",
    "Security",
)
HOLD_REASONS = ("1", "3", "4", "5")  # awaiting caller, problem, vendor, change
RESOLVE_COST = 12  # audit rows written by resolving (state and the stamped fields)
CLOSE_COST = 5
REOPEN_COST = 7
TASK_CLOSE_COST = 4  # state, closed_at, closed_by, active
CANCEL_COST = 6


def _people(fake: Records, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    groups = fake.tables["sys_user_group"]
    by_name = {groups.value(r, "name"): sid for sid, r in groups.rows.items()}
    group_ids = [by_name.get(name) or fake.add_group(name) for name in GROUPS]
    first = ("Anna", "Bram", "Chris", "Dewi", "Eva", "Femke", "Gert", "Hanna", "Ivo", "Joost")
    last = ("de Vries", "Jansen", "Smit", "Bakker", "Visser", "Mulder", "Bos", "Peters")
    agents = [
        fake.add_user(f"agent.{i:02d}", f"{rng.choice(first)} {rng.choice(last)}")
        for i in range(24)
    ]
    callers = [
        fake.add_user(f"caller.{i:03d}", f"{rng.choice(first)} {rng.choice(last)}")
        for i in range(200)
    ]
    return group_ids, agents, callers


def generate(
    fake: Records,
    count: int,
    *,
    audit_rows: int | None = None,
    seed: int = 1,
    table: str = "incident",
) -> None:
    """Add ``count`` records with histories over a year from the fake's clock: incidents, or
    records of a table on the task state model (``sc_req_item``, ``sc_request``, ``task``)."""
    if (
        table in OWN_STATE_MODELS
        or table not in fake.tables
        or not fake.tables[table].schema.prefix
    ):
        raise ValueError(
            f"generate makes incidents and task-state records (sc_req_item, sc_request, task),"
            f" not {table!r}"
        )
    lifecycle = _lifecycle if table == "incident" else _task_lifecycle
    rng = random.Random(seed)
    audit = fake.tables["sys_audit"]
    users = fake.tables["sys_user"]
    with fake.lock:
        groups, agents, callers = _people(fake, rng)
        agent_names = [users.value(users.rows[a], "user_name") for a in agents]
        base = fake.now
        starts = sorted(rng.uniform(0, 365 * 86_400) for _ in range(count))
        start_rows = len(audit.rows)
        for done, offset in enumerate(starts):
            if audit_rows is None:
                budget = rng.choice((0, 1, 4, 8, 15, 25, 30, 40, 60))
            else:
                remaining = audit_rows - (len(audit.rows) - start_rows)
                mean = max(remaining, 0) / (count - done)
                # a long tail: most incidents are short, some have long histories
                budget = int(mean * rng.expovariate(1) + rng.random())
                if mean >= 6 and rng.random() > 0.08:
                    budget = max(budget, 4)  # most incidents get picked up, a few wait
            lifecycle(
                fake,
                rng,
                table=table,
                when=base + timedelta(seconds=offset),
                budget=budget,
                groups=groups,
                agents=agent_names,
                callers=callers,
            )


def _lifecycle(
    fake: Records,
    rng: random.Random,
    *,
    table: str,
    when: datetime,
    budget: int,
    groups: list[str],
    agents: list[str],
    callers: list[str],
) -> None:
    audit = fake.tables["sys_audit"]
    users = fake.tables["sys_user"]
    caller = rng.choice(callers)
    caller_name = users.value(users.rows[caller], "user_name")
    self_service = rng.random() < 0.3
    impact, urgency = rng.choice("123"), rng.choice("123")
    t = when
    record = fake.add_record(
        table,
        at=t,
        actor=caller_name if self_service else rng.choice(agents),
        caller_id=caller,
        short_description=rng.choice(
            ("VPN down", "Printer jams", "Password reset", "Laptop slow", "Mail bounces")
        ),
        contact_type="self-service" if self_service else rng.choice(("phone", "email")),
        category=rng.choice(("inquiry", "software", "hardware", "network", "database")),
        impact=impact,
        urgency=urgency,
        priority=PRIORITY[(impact, urgency)],
    )
    sys_id = record["sys_id"]
    start = len(audit.rows)

    def used() -> int:
        return len(audit.rows) - start

    def step(actor: str | None = None, *, hours: float = 4, **fields: str) -> None:
        nonlocal t
        t += timedelta(seconds=max(1, int(rng.expovariate(1 / (hours * 3600)))))
        fake.change(sys_id, table=table, at=t, actor=actor or rng.choice(agents), **fields)

    def note() -> None:
        nonlocal t
        t += timedelta(seconds=max(1, int(rng.expovariate(1 / 7200))))
        if rng.random() < 0.5:
            fake.add_journal(
                sys_id, "Any news?", element="comments", actor=caller_name, table=table, at=t
            )
        else:
            fake.add_journal(
                sys_id,
                "Checked logs",
                element="work_notes",
                actor=rng.choice(agents),
                table=table,
                at=t,
            )

    if budget < 1:
        return
    history = [rng.choice(groups)]
    step(assignment_group=history[0], hours=0.5)
    if budget - used() < 3:
        return
    step(assigned_to=fake.user_id(rng.choice(agents)), state="2", hours=1)
    closing = rng.random()
    reopen = closing < 0.8 and rng.random() < 0.2
    reserve = 0
    if closing < 0.8:
        reserve = RESOLVE_COST + CLOSE_COST + (REOPEN_COST + RESOLVE_COST if reopen else 0)
    for _ in range(40):
        left = budget - used()
        if left - reserve < 3:
            break
        pick = rng.random()
        if pick < 0.3:
            back = len(history) > 1 and rng.random() < 0.4
            target = history[-2] if back else rng.choice([g for g in groups if g != history[-1]])
            history.append(target)
            step(assignment_group=target, assigned_to="")
            if budget - used() - reserve >= 1:
                step(assigned_to=fake.user_id(rng.choice(agents)), hours=1)
        elif pick < 0.55:
            step(state="3", hold_reason=rng.choice(HOLD_REASONS), hours=6)
            step(state="2", hours=24)
        elif pick < 0.7:
            impact, urgency = rng.choice("123"), rng.choice("123")
            step(impact=impact, urgency=urgency)
        else:
            note()
    if rng.random() < 0.5:
        note()
    left = budget - used()
    if closing >= 0.8 or left < RESOLVE_COST:
        # still open: waiting on someone, cancelled now and then, or in progress
        if left >= 3 and rng.random() < 0.4:
            step(state="3", hold_reason=rng.choice(HOLD_REASONS), hours=6)
        elif left >= CANCEL_COST and rng.random() < 0.15:
            step(state="8", hours=12)
        return
    step(state="6", hours=8)
    left = budget - used()
    if reopen and left >= REOPEN_COST + RESOLVE_COST + CLOSE_COST:
        step(caller_name, state="2", hours=48)
        step(state="6", hours=8)
    if budget - used() >= CLOSE_COST:
        step("system", state="7", hours=72)


def _task_lifecycle(
    fake: Records,
    rng: random.Random,
    *,
    table: str,
    when: datetime,
    budget: int,
    groups: list[str],
    agents: list[str],
    callers: list[str],
) -> None:
    """A request item or task: Open, Work in Progress (now and then Pending), then Closed
    Complete, Closed Incomplete or Closed Skipped, or still open."""
    audit = fake.tables["sys_audit"]
    users = fake.tables["sys_user"]
    requester = users.value(users.rows[rng.choice(callers)], "user_name")
    t = when
    record = fake.add_record(
        table,
        at=t,
        actor=requester,
        short_description=rng.choice(("New laptop", "Access to share", "Software licence")),
        contact_type="self-service",
    )
    sys_id = record["sys_id"]
    start = len(audit.rows)

    def used() -> int:
        return len(audit.rows) - start

    def step(*, hours: float = 4, **fields: str) -> None:
        nonlocal t
        t += timedelta(seconds=max(1, int(rng.expovariate(1 / (hours * 3600)))))
        fake.change(sys_id, table=table, at=t, actor=rng.choice(agents), **fields)

    if budget < 1:
        return
    history = [rng.choice(groups)]
    step(assignment_group=history[0], hours=1)
    if budget - used() < 2:
        return
    step(assigned_to=fake.user_id(rng.choice(agents)), state="2", hours=2)
    closing = rng.random() < 0.8
    reserve = TASK_CLOSE_COST if closing else 0
    for _ in range(40):
        if budget - used() - reserve < 3:
            break
        pick = rng.random()
        if pick < 0.35:
            target = rng.choice([g for g in groups if g != history[-1]])
            history.append(target)
            step(assignment_group=target, assigned_to="")
        elif pick < 0.7:
            step(state="-5", hours=8)
            step(state="2", hours=48)
        else:
            fake.add_journal(
                sys_id, "Ordered from the supplier", element="work_notes", table=table, at=t
            )
    if closing and budget - used() >= TASK_CLOSE_COST:
        step(state=rng.choices(("3", "4", "7"), weights=(16, 3, 1))[0], hours=24)
