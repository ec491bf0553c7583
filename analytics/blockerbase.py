"""What every flow-blocker kind shares: the blocker columns, the open-ticket set-up, the frame
(ticket context plus blocker, since, age, business age) and the sorted ``Result``.

The kinds themselves live in ``analytics.blockers`` (waiting, queue, the combined frame),
``analytics.sla`` (SLA risk) and ``analytics.updates`` (customers not updated).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.clock import Calendars
from analytics.frames import (
    WAITING_CUSTOMER,
    WAITING_OTHER,
    WAITING_SUPPLIER,
    from_ns,
    td,
    timestamp_ns,
)
from analytics.log import TicketLog
from analytics.result import Result
from analytics.settings import BlockerSettings
from analytics.snapshot import Snapshot, context_frame, open_snapshot

__all__ = [
    "BLOCKER_COLUMNS",
    "BLOCKER_ORDER",
    "blocker_frame",
    "blocker_result",
    "blocker_setup",
]

I64 = npt.NDArray[np.int64]

BLOCKER = "blocker"
REASON = "reason"
SINCE = "since"
AGE = "age"
BUSINESS_AGE = "business_age"
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


def blocker_result(
    name: str,
    frame: pd.DataFrame,
    snap: Snapshot,
    settings: BlockerSettings,
    calendars: Calendars,
    sort: str | None = AGE,
) -> Result[BlockerSettings]:
    """The blocker frame sorted by ``sort`` (longest first; None: as given) as a ``Result``."""
    if sort is not None:
        frame = frame.sort_values(sort, ascending=False, kind="stable")
    frame = frame.reset_index(drop=True)
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


def blocker_frame(
    log: TicketLog,
    snap: Snapshot,
    pick: I64,
    kind: npt.NDArray[np.object_] | str,
    since: I64,
    business: I64,
) -> pd.DataFrame:
    """Context columns of the picked open tickets plus blocker, since, age and business age."""
    frame = context_frame(log, snap, pick)
    frame[BLOCKER] = kind
    frame[SINCE] = from_ns(since)
    frame[AGE] = td(snap.now - since)
    frame[BUSINESS_AGE] = td(business)
    return frame


def blocker_setup(
    log: TicketLog,
    now: datetime | pd.Timestamp,
    settings: BlockerSettings | None,
    calendars: Calendars | None,
) -> tuple[Snapshot, BlockerSettings, Calendars]:
    """The open tickets at ``now`` and the settings and calendars (defaults when None)."""
    calendars = calendars or Calendars()
    snap = open_snapshot(log, now=timestamp_ns(now), calendars=calendars)
    return snap, settings or BlockerSettings(), calendars
