"""The analyses the API, the charts and the dashboard serve, each computed once per snapshot.

An entry names an ``analytics`` function and how to call it on the warehouse frames. Two kinds:

- *per-ticket* results (stale calls, blockers, aging WIP: one row per ticket) are computed once
  on the whole warehouse; a request's filters then pick rows (cheap).
- *aggregate* results (throughput, cumulative flow, cycle-time percentiles, time in status by
  team) depend on which tickets are counted, so they are computed on the filtered tickets and
  their events, once per distinct filter set.

Both are cached by ``AnalyticsCache`` and dropped when the warehouse changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from analytics.log import TicketLog, prepare_log
from app.cache import AnalyticsCache, Cached, Snapshot
from app.deps import Filters
from app.routes._fastpath import remember
from app.routes._rendered import Rendered, respond
from app.routes._rendered import render as render_bytes
from app.settings import Settings

__all__ = [
    "ANALYSES",
    "Analysis",
    "analysis_result",
    "cached_answer",
    "filtered_frames",
    "register",
    "shared_log",
]

Compute = Callable[[pd.DataFrame, pd.DataFrame, datetime, Settings], pd.DataFrame]
"""(tickets, events, now, settings) -> result frame"""


@dataclass(frozen=True)
class Analysis:
    name: str
    compute: Compute
    per_ticket: bool
    """one row per ticket with the ticket's source/team/...: filter after computing"""


ANALYSES: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    ANALYSES[analysis.name] = analysis
    return analysis


_log_lock = threading.Lock()
_log_memo: list[tuple[pd.DataFrame, pd.DataFrame, TicketLog]] = []


_LOG_MEMO_SIZE = 2
"""the served generation's and the one a background refresh builds"""


def shared_log(tickets: pd.DataFrame, events: pd.DataFrame) -> TicketLog:
    """``prepare_log`` once per pair of frames (the per-ticket analyses of one snapshot share
    it: preparing 100,000 tickets takes seconds). Holds the last two pairs, so that requests
    on the served snapshot and a background refresh on the next one do not evict each other."""
    with _log_lock:
        for i, (t, e, log) in enumerate(_log_memo):
            if t is tickets and e is events:
                _log_memo.append(_log_memo.pop(i))
                return log
        # under the lock: two analyses of one snapshot never prepare it twice at once
        log = prepare_log(tickets, events)
        _log_memo.append((tickets, events, log))
        del _log_memo[:-_LOG_MEMO_SIZE]
        return log


def filtered_frames(
    cache: AnalyticsCache, filters: Filters
) -> Cached[tuple[pd.DataFrame, pd.DataFrame]]:
    """The snapshot's tickets that pass ``filters`` and the events of those tickets."""

    def compute(snapshot: Snapshot, _now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        tickets = filters.apply(snapshot.tickets)
        if len(tickets) == len(snapshot.tickets):
            return snapshot.tickets, snapshot.events
        keys = pd.MultiIndex.from_frame(tickets[["source", "external_id"]])
        event_keys = pd.MultiIndex.from_frame(snapshot.events[["source", "ticket_id"]])
        return tickets, snapshot.events[event_keys.isin(keys)]

    return cache.get(("frames", filters.key()), compute)


def analysis_result(
    cache: AnalyticsCache, settings: Settings, name: str, filters: Filters
) -> Cached[pd.DataFrame]:
    """The cached result of the analysis ``name`` for the current snapshot and ``filters``."""
    analysis = ANALYSES[name]
    if analysis.per_ticket:
        whole = cache.get(
            (name, None),
            lambda s, now: analysis.compute(s.tickets, s.events, now, settings),
        )
        if filters.key() == Filters().key():
            return whole

        def pick(_snapshot: Snapshot, _now: datetime) -> pd.DataFrame:
            part = filters.apply(whole.value)
            part.attrs = dict(whole.value.attrs)
            return part

        # filtered once per filter set (and snapshot), not per request
        picked = cache.get((name, "filtered", filters.key(), whole.as_of), pick, carry=False)
        return Cached(value=picked.value, as_of=whole.as_of, version=whole.version)

    def compute(_snapshot: Snapshot, now: datetime) -> pd.DataFrame:
        tickets, events = filtered_frames(cache, filters).value
        return analysis.compute(tickets, events, now, settings)

    return cache.get((name, filters.key()), compute)


async def cached_answer(
    cache: AnalyticsCache,
    key: tuple[object, ...],
    render: Callable[[], bytes],
    request: Request,
    media_type: str = "application/json",
) -> Response:
    """An answer rendered once per generation and key (e.g. analysis, filters and page), then
    served as bytes (gzipped once, ETag/304) without leaving the event loop when cached
    (``AnalyticsCache.peek``: no query, no thread hop); otherwise rendered in a worker thread
    (the first request for it, or when the fingerprint is due for a check). The fast path
    (``_fastpath``) answers the next identical request."""

    def compute(snapshot: Snapshot, now: datetime) -> Rendered:
        return render_bytes(render(), as_of=now, version=snapshot.version, media_type=media_type)

    hit = cache.peek(key)
    if hit is None:
        hit = await run_in_threadpool(cache.get, key, compute)
    remember(request, key, _same)
    return respond(request, hit.value, stale=not cache.is_current(hit))


def _same(value: Rendered) -> Rendered:
    return value
