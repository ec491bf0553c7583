"""Flow analytics: pure functions over the canonical ticket and event frames.

Prepare once, then ask::

    log = prepare_log(tickets, events)          # match, check, sort; intervals on demand
    stale = stale_calls(log, now=now)            # every function takes `now`, never reads a clock
    report = flow_report(log, now=now)           # or everything at once, sharing the groundwork

Every function returns a ``Result``: the frame plus its sample size ``n``, window, ``now``,
settings and a pointer to its definition in docs/metrics.md. Settings are plain dataclasses
(``StaleSettings``, ``BlockerSettings``, ``FlowSettings``, ``Calendars``) passed in by the caller.
``analytics`` never imports ``app`` or ``connectors``.
"""

from analytics.aging import aging_wip, bottlenecks, pace_percentiles
from analytics.blockers import (
    customers_not_updated,
    flow_blockers,
    queue_blockers,
    sla_risk,
    waiting_blockers,
)
from analytics.clock import BusinessSpan, Calendars, WorkCalendar
from analytics.daily import arrivals_departures, cumulative_flow, throughput, wip_per_day
from analytics.efficiency import flow_efficiency, flow_efficiency_summary
from analytics.errors import (
    AnalyticsError,
    InvalidInputError,
    InvalidSettingsError,
    MissingColumnsError,
)
from analytics.flowtime import cycle_time_summary, flow_rates, ticket_flow_times
from analytics.intervals import field_intervals
from analytics.log import TicketLog, prepare_log
from analytics.pingpong import handover_matrix, ping_pong
from analytics.report import FlowReport, ReportSettings, flow_report
from analytics.result import Result, Window
from analytics.settings import BlockerSettings, FlowSettings, StaleSettings
from analytics.stale import stale_calls
from analytics.timein import time_in_state, time_in_values
from analytics.workload import operator_load, takeover_suggestions

__all__ = [
    "AnalyticsError",
    "BlockerSettings",
    "BusinessSpan",
    "Calendars",
    "FlowReport",
    "FlowSettings",
    "InvalidInputError",
    "InvalidSettingsError",
    "MissingColumnsError",
    "ReportSettings",
    "Result",
    "StaleSettings",
    "TicketLog",
    "Window",
    "WorkCalendar",
    "aging_wip",
    "arrivals_departures",
    "bottlenecks",
    "cumulative_flow",
    "customers_not_updated",
    "cycle_time_summary",
    "field_intervals",
    "flow_blockers",
    "flow_efficiency",
    "flow_efficiency_summary",
    "flow_rates",
    "flow_report",
    "handover_matrix",
    "operator_load",
    "pace_percentiles",
    "ping_pong",
    "prepare_log",
    "queue_blockers",
    "sla_risk",
    "stale_calls",
    "takeover_suggestions",
    "throughput",
    "ticket_flow_times",
    "time_in_state",
    "time_in_values",
    "waiting_blockers",
    "wip_per_day",
]
