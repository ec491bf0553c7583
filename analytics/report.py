"""All flow analytics of one log at one ``now``, sharing the groundwork.

``flow_report(log, now=...)`` prepares intervals and per-ticket facts once and computes every
metric from them; each field of the ``FlowReport`` is an ordinary ``Result`` with its own sample
size, window and settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

import pandas as pd

from analytics.aging import aging_wip, bottlenecks, pace_percentiles
from analytics.blockers import (
    combine_blockers,
    customers_not_updated,
    queue_blockers,
    sla_risk,
    waiting_blockers,
)
from analytics.clock import Calendars
from analytics.daily import (
    arrivals_departures,
    cumulative_flow,
    resolve_window,
    throughput,
    wip_per_day,
)
from analytics.efficiency import flow_efficiency, flow_efficiency_summary
from analytics.flowtime import cycle_time_summary, flow_rates, ticket_flow_times
from analytics.frames import FIELD_TEAM, timestamp_ns
from analytics.log import TicketLog
from analytics.pingpong import handover_matrix, ping_pong
from analytics.result import Result, Window
from analytics.settings import BlockerSettings, FlowSettings, StaleSettings
from analytics.stale import stale_calls
from analytics.timein import time_in_state, time_in_values
from analytics.workload import operator_load, takeover_suggestions

__all__ = ["FlowReport", "ReportSettings", "flow_report"]


@dataclass(frozen=True)
class ReportSettings:
    """Every setting of the report in one object."""

    stale: StaleSettings = field(default_factory=StaleSettings)
    blockers: BlockerSettings = field(default_factory=BlockerSettings)
    flow: FlowSettings = field(default_factory=FlowSettings)
    calendars: Calendars = field(default_factory=Calendars)


@dataclass(frozen=True)
class FlowReport:
    """One ``Result`` per metric."""

    stale_calls: Result[StaleSettings]
    flow_blockers: Result[BlockerSettings]
    waiting: Result[BlockerSettings]
    queue: Result[BlockerSettings]
    sla_risk: Result[BlockerSettings]
    customers_not_updated: Result[BlockerSettings]
    ping_pong: Result[FlowSettings]
    handover_matrix: Result[None]
    operator_load: Result[BlockerSettings]
    takeover_suggestions: Result[BlockerSettings]
    time_in_state: Result[None]
    time_in_team: Result[None]
    bottlenecks: Result[FlowSettings]
    aging_wip: Result[FlowSettings]
    pace_percentiles: Result[FlowSettings]
    ticket_flow_times: Result[FlowSettings]
    cycle_time_summary: Result[FlowSettings]
    throughput_daily: Result[FlowSettings]
    throughput_weekly: Result[FlowSettings]
    wip_per_day: Result[FlowSettings]
    cumulative_flow: Result[FlowSettings]
    arrivals_departures: Result[FlowSettings]
    flow_efficiency: Result[FlowSettings]
    flow_efficiency_summary: Result[FlowSettings]
    flow_rates: Result[FlowSettings]

    def results(self) -> dict[str, Result[object]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def flow_report(
    log: TicketLog,
    *,
    now: datetime | pd.Timestamp,
    settings: ReportSettings | None = None,
    window: Window | None = None,
) -> FlowReport:
    """Every metric of the analytics for ``log`` at ``now`` (window: the trailing
    ``flow.window_days`` unless given)."""
    s = settings or ReportSettings()
    now_ts = pd.Timestamp(timestamp_ns(now), tz="UTC")
    win = resolve_window(timestamp_ns(now), s.flow, window)
    cals = s.calendars
    sla = sla_risk(log, now=now_ts, settings=s.blockers, calendars=cals)
    queue = queue_blockers(log, now=now_ts, settings=s.blockers, calendars=cals)
    waiting = waiting_blockers(log, now=now_ts, settings=s.blockers, calendars=cals)
    updates = customers_not_updated(log, now=now_ts, settings=s.blockers, calendars=cals)
    efficiency = flow_efficiency(log, now=now_ts, settings=s.flow, window=win)
    return FlowReport(
        stale_calls=stale_calls(log, now=now_ts, settings=s.stale, calendars=cals),
        flow_blockers=combine_blockers(
            log,
            [sla, queue, waiting, updates],
            now=now_ts,
            settings=s.blockers,
            calendars=cals,
            flow=s.flow,
        ),
        waiting=waiting,
        queue=queue,
        sla_risk=sla,
        customers_not_updated=updates,
        ping_pong=ping_pong(log, now=now_ts, field=s.blockers.pingpong_field, settings=s.flow),
        handover_matrix=handover_matrix(
            log, now=now_ts, field=s.blockers.pingpong_field, window=win
        ),
        operator_load=operator_load(log, now=now_ts, settings=s.blockers, calendars=cals),
        takeover_suggestions=takeover_suggestions(
            log, now=now_ts, settings=s.blockers, calendars=cals
        ),
        time_in_state=time_in_state(log, now=now_ts, calendars=cals),
        time_in_team=time_in_values(log, field=FIELD_TEAM, now=now_ts, calendars=cals),
        bottlenecks=bottlenecks(log, now=now_ts, settings=s.flow, window=win),
        aging_wip=aging_wip(log, now=now_ts, settings=s.flow, window=win),
        pace_percentiles=pace_percentiles(log, now=now_ts, settings=s.flow, window=win),
        ticket_flow_times=ticket_flow_times(log, now=now_ts, settings=s.flow, calendars=cals),
        cycle_time_summary=cycle_time_summary(
            log, now=now_ts, settings=s.flow, window=win, calendars=cals
        ),
        throughput_daily=throughput(log, now=now_ts, settings=s.flow, window=win, freq="D"),
        throughput_weekly=throughput(log, now=now_ts, settings=s.flow, window=win, freq="W"),
        wip_per_day=wip_per_day(log, now=now_ts, settings=s.flow, window=win),
        cumulative_flow=cumulative_flow(log, now=now_ts, settings=s.flow, window=win),
        arrivals_departures=arrivals_departures(log, now=now_ts, settings=s.flow, window=win),
        flow_efficiency=efficiency,
        flow_efficiency_summary=flow_efficiency_summary(efficiency),
        flow_rates=flow_rates(log, now=now_ts, settings=s.flow, window=win),
    )
