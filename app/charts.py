"""Plotly figures from analytics result frames, and the HTML pages that show them.

Plotting is presentation: every builder takes a result frame that ``analytics`` computed (and
the API filtered) and returns a ``plotly.graph_objects.Figure``; nothing here computes a metric.

Pages are self-contained and CSP-friendly: the figure travels as JSON in a non-executable
``<script type="application/json">`` block, plotly.js and ``embed.js`` come from this server
(``/static``), and no inline script runs. Ticket titles are HTML-escaped before they reach hover
text (helpdesk data is untrusted), and a click on a point opens the ticket in its own tool when
the ticket has an http(s) URL.
"""

from __future__ import annotations

import gzip
import hashlib
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly  # type: ignore[import-untyped]
import plotly.graph_objects as go  # type: ignore[import-untyped]
from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = [
    "CHARTS",
    "PLOTLY_VERSION",
    "ChartSpec",
    "StaticFile",
    "figure_json",
    "hover_text",
    "page_environment",
    "safe_url",
    "script_json",
    "static_file",
]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PLOTLY_VERSION: str = plotly.__version__
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
COLORS = {
    "ok": "#2e7d32",
    "watch": "#f9a825",
    "risk": "#ef6c00",
    "late": "#c62828",
    "neutral": "#546e7a",
}


@dataclass(frozen=True)
class ChartSpec:
    """One chart: its name in URLs, its title, the analysis it shows and how it is drawn."""

    name: str
    title: str
    description: str
    analysis: str
    """the cached analysis (see ``app/routes/_analyses.py``) whose result the chart draws"""
    build: Callable[[pd.DataFrame, datetime, str], go.Figure]
    """(filtered result frame, as_of, title) -> figure"""


def safe_url(url: Any) -> str | None:
    """The URL when it is a plain http(s) link, else None (no ``javascript:`` in a page)."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None


def hover_text(number: Any, title: Any, *, limit: int = 80) -> str:
    """``number: title`` with HTML escaped and long titles cut, for Plotly hover labels."""
    label = "" if number is None or pd.isna(number) else str(number)
    text = "" if title is None or (not isinstance(title, str) and pd.isna(title)) else str(title)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    joined = f"{label}: {text}" if label and text else label or text
    return html.escape(joined, quote=True)


def base_layout(fig: go.Figure, *, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title={"text": html.escape(title), "x": 0.01},
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        hoverlabel={"align": "left"},
    )
    return fig


def empty_figure(title: str, message: str) -> go.Figure:
    """A figure that says there is nothing to show (instead of a blank frame)."""
    fig = go.Figure()
    fig.add_annotation(
        text=html.escape(message),
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font={"size": 16},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return base_layout(fig, title=title, x="", y="")


def figure_json(fig: go.Figure) -> str:
    """The figure as Plotly JSON (what ``/charts/<name>.json`` answers)."""
    text = fig.to_json(validate=False)
    assert isinstance(text, str)
    return text


def script_json(text: str) -> str:
    """JSON made safe to sit inside ``<script type="application/json">`` (no ``</script>``)."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def page_environment() -> Environment:
    """The Jinja environment of the chart and dashboard pages (autoescaping on)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["script_json"] = script_json
    return env


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@cache
def static_file(name: str) -> StaticFile | None:
    """A file the pages load: plotly.js from the plotly package, or one of ``app/static``."""
    if name == "plotly.min.js":
        path = PLOTLY_JS
    elif name in _static_names():
        path = STATIC / name
    else:
        return None
    body = path.read_bytes()
    return StaticFile(
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
    )


@cache
def _static_names() -> frozenset[str]:
    return frozenset(p.name for p in STATIC.iterdir() if p.is_file())


def percentile_lines(
    fig: go.Figure, values: Sequence[tuple[str, float]], *, axis: str = "y", unit: str = "days"
) -> None:
    """Horizontal (or vertical) reference lines labelled like ``85%: 6.0 days``."""
    for label, value in values:
        if value is None or pd.isna(value):
            continue
        text = f"{label}: {value:.1f} {unit}"
        if axis == "y":
            fig.add_hline(
                y=value,
                line_dash="dot",
                line_color=COLORS["neutral"],
                annotation_text=text,
                annotation_position="top left",
            )
        else:
            fig.add_vline(
                x=value,
                line_dash="dot",
                line_color=COLORS["neutral"],
                annotation_text=text,
                annotation_position="top right",
            )


CHARTS: dict[str, ChartSpec] = {}
"""every chart by name; filled below as builders are added"""

_STATE_ORDER = ("new", "in_progress", "waiting_customer", "waiting_supplier", "waiting_other")
_PACE_COLORS = ("#2e7d32", "#9e9d24", "#f9a825", "#ef6c00", "#c62828")


def _days(values: pd.Series) -> pd.Series:
    return pd.to_timedelta(values).dt.total_seconds() / 86400


def _hover(frame: pd.DataFrame) -> list[str]:
    return [hover_text(n, t) for n, t in zip(frame["number"], frame["title"], strict=True)]


AGING_MAX_POINTS = 3000
"""the aging chart draws at most this many tickets (the oldest of each state, see below)"""
_JITTER = 0.7
"""width of the strip a state's points spread over (1 = the distance between states)"""
_GOLDEN = 0.6180339887498949


def _oldest_per_state(state: pd.Series, limit: int) -> npt.NDArray[np.bool_]:
    """Which rows to draw: every row when there are at most ``limit``; else the oldest rows of
    each state, each state's share of ``limit`` in proportion to its open tickets (largest
    remainders; at least one per state). Rows must come oldest first."""
    n = len(state)
    if n <= limit:
        return np.ones(n, dtype=bool)
    counts = state.value_counts(sort=False)
    exact = counts.to_numpy() * limit / n
    quota = np.maximum(np.floor(exact).astype(np.int64), 1)
    spare = limit - int(quota.sum())
    if spare > 0:
        quota[np.argsort(-(exact - np.floor(exact)), kind="stable")[:spare]] += 1
    rank = state.groupby(state, sort=False).cumcount().to_numpy()
    allowed = pd.Series(quota, index=counts.index).reindex(state.to_numpy()).to_numpy()
    return np.asarray(rank < allowed, dtype=bool)


def _band_rank(band: str) -> int:
    """Pace bands from the fastest to the slowest: ``< p50``, ``p50-p70``, ..., ``> p95``;
    anything else (``no history``) first."""
    text = str(band)
    digits = "".join(ch if ch.isdigit() else " " for ch in text).split()
    if not digits:
        return -1
    if text.startswith(">"):
        return 10_000
    return int(digits[0]) + (0 if text.startswith("<") else 1)


def _band_color(band: str) -> str:
    """Green below p50, red past the last line (p95), olive/yellow/orange between."""
    text = str(band)
    digits = "".join(ch if ch.isdigit() else " " for ch in text).split()
    if not digits:
        return "#90a4ae"
    if text.startswith("<"):
        return "#2e7d32"
    if text.startswith(">"):
        return "#c62828"
    lower = int(digits[0])
    return "#9e9d24" if lower < 70 else "#f9a825" if lower < 85 else "#ef6c00"


def aging_figure(
    frame: pd.DataFrame, as_of: datetime, title: str, *, max_points: int = AGING_MAX_POINTS
) -> go.Figure:
    """Open tickets as a strip per state: age in days (y), coloured by the pace band they
    passed, with each state's p50/p70/p85/p95 pace lines.

    Light enough to serve at 100,000 tickets: at most ``max_points`` points (the oldest of each
    state, with a note saying how many are shown), ages rounded to 0.01 day, states as numbers
    with tick labels (jittered within the strip), and per point only the ticket's link and its
    escaped number in ``customdata``; the hover text comes from one ``hovertemplate`` per trace.
    A click opens the ticket (``customdata[0]``, see ``static/embed.js``).
    """
    if frame.empty:
        return empty_figure(title, "No open tickets")
    frame = frame.sort_values("age", ascending=False, kind="stable")
    state = frame["state"].astype(object).where(frame["state"].notna(), "unknown")
    present = set(state)
    states = [s for s in _STATE_ORDER if s in present] + sorted(present - set(_STATE_ORDER))
    position = {s: i for i, s in enumerate(states)}
    totals = state.value_counts()
    keep = _oldest_per_state(state, max_points)
    shown = frame[keep]
    shown_state = state[keep]
    rank = shown_state.groupby(shown_state, sort=False).cumcount().to_numpy()
    offset = ((rank * _GOLDEN) % 1.0 - 0.5) * _JITTER
    x = np.round(shown_state.map(position).to_numpy(dtype=float) + offset, 2)
    y = np.round(_days(shown["age"]).to_numpy(dtype=float), 2)
    urls = [safe_url(u) for u in shown["url"]]
    numbers = [hover_text(n, None) for n in shown["number"]]
    pace = shown["pace"].astype(object).where(shown["pace"].notna(), "no pace data").to_numpy()
    fig = go.Figure()
    bands = sorted(set(pace), key=_band_rank)
    for band in bands:
        rows = np.flatnonzero(pace == band)
        fig.add_trace(
            go.Scatter(
                x=x[rows].tolist(),
                y=y[rows].tolist(),
                mode="markers",
                name=html.escape(str(band)),
                marker={"size": 7, "color": _band_color(band), "opacity": 0.8},
                customdata=[[urls[i], numbers[i]] for i in rows],
                hovertemplate=(
                    "%{customdata[1]}<br>age %{y:.1f} days<extra>%{fullData.name}</extra>"
                ),
            )
        )
    _pace_bands(fig, frame.attrs.get("pace") or {}, states)
    labels = [f"{s.replace('_', ' ')}<br>{int(totals[s]):,} open" for s in states]
    fig.update_xaxes(
        tickmode="array",
        tickvals=list(range(len(states))),
        ticktext=labels,
        range=[-0.6, len(states) - 0.4],
        showgrid=False,
        zeroline=False,
    )
    if len(shown) < len(frame):
        fig.add_annotation(
            text=(
                f"showing the oldest {len(shown):,} of {len(frame):,} open tickets "
                "(the oldest of each state, in proportion)"
            ),
            showarrow=False,
            x=0,
            y=1.0,
            xref="paper",
            yref="paper",
            xanchor="left",
            yanchor="bottom",
            font={"size": 12, "color": COLORS["neutral"]},
        )
    return base_layout(
        fig, title=f"{title} (as of {as_of:%Y-%m-%d %H:%M} UTC)", x="state", y="age (days)"
    )


_PACE_LINES = (("p50", "#90a4ae"), ("p70", "#9e9d24"), ("p85", "#ef6c00"), ("p95", "#c62828"))


def _pace_bands(
    fig: go.Figure, pace: dict[str, dict[str, float | None]], states: list[str]
) -> None:
    """Per state, a short line across its strip at the age by which 50/70/85/95 % of finished
    tickets had left that state (``pace_percentiles``): a dot above the p85 line is slower than
    85 % of history."""
    half = _JITTER / 2 + 0.05
    for label, color in _PACE_LINES:
        xs: list[float | None] = []
        ys: list[float | None] = []
        text: list[str | None] = []
        for i, s in enumerate(states):
            value = (pace.get(s) or {}).get(label)
            if value is None:
                continue
            day = round(float(value), 2)
            xs += [i - half, i + half, None]
            ys += [day, day, None]
            name = html.escape(s.replace("_", " "))
            text += [name, name, None]
        if not xs:
            continue
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                text=text,
                mode="lines",
                name=f"{label} pace",
                line={"color": color, "width": 2, "dash": "dot"},
                hovertemplate=f"{label} of finished tickets left %{{text}} within %{{y:.1f}} days"
                "<extra></extra>",
            )
        )


def throughput_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Tickets finished per day, zero days included."""
    if frame.empty:
        return empty_figure(title, "No days in the window")
    fig = go.Figure(
        go.Bar(
            x=pd.to_datetime(frame["date"]),
            y=frame["throughput"],
            name="finished",
            marker_color=COLORS["neutral"],
            hovertemplate="%{x|%a %Y-%m-%d}: %{y} finished<extra></extra>",
        )
    )
    return base_layout(
        fig, title=f"{title} (as of {as_of:%Y-%m-%d} UTC)", x="day", y="tickets finished"
    )


def _customdata(frame: pd.DataFrame, *extra: str) -> list[list[Any]]:
    urls = [safe_url(u) for u in frame["url"]]
    columns = [frame[c].tolist() for c in extra]
    return [[u, *(c[i] for c in columns)] for i, u in enumerate(urls)]


def stale_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Stale calls: one point per ticket, team (x) by days since real activity (y), coloured
    by priority; forgotten ("dead") calls drawn as crosses."""
    if frame.empty:
        return empty_figure(title, "No stale calls")
    teams = sorted(frame["team"].astype(object).where(frame["team"].notna(), "—").unique())
    team = frame["team"].astype(object).where(frame["team"].notna(), "—")
    fig = go.Figure()
    priority = frame["priority"].astype(object).where(frame["priority"].notna(), None)
    for i, p in enumerate(
        sorted(set(priority.dropna())) + ([None] if priority.isna().any() else [])
    ):
        part = frame[(priority.isna() if p is None else priority == p).to_numpy()]
        dead = part["dead"].fillna(False).astype(bool).to_numpy()
        fig.add_trace(
            go.Scatter(
                x=team[part.index],
                y=_days(part["age"]),
                mode="markers",
                name=f"P{p}" if p is not None else "no priority",
                marker={
                    "size": 9,
                    "color": _PACE_COLORS[::-1][min(i, len(_PACE_COLORS) - 1)],
                    "symbol": ["x" if d else "circle" for d in dead],
                    "line": {"width": 0.5, "color": "#263238"},
                },
                text=_hover(part),
                customdata=_customdata(part, "state", "overdue"),
                hovertemplate=(
                    "%{text}<br>%{y:.1f} days without activity · %{customdata[1]}"
                    "<br>%{customdata[2]:.1f}× the threshold<extra>%{fullData.name}</extra>"
                ),
            )
        )
    fig.update_xaxes(categoryorder="array", categoryarray=teams)
    return base_layout(
        fig,
        title=f"{title} (as of {as_of:%Y-%m-%d %H:%M} UTC)",
        x="team",
        y="days without real activity",
    )


def cycle_time_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Finished tickets: finish day (x) by cycle time in days (y), with percentile lines."""
    if frame.empty:
        return empty_figure(title, "No finished tickets in the window")
    # SVG, not WebGL: intranet desktops (VDI, remote sessions) often have no WebGL
    fig = go.Figure(
        go.Scatter(
            x=pd.to_datetime(frame["stop"]),
            y=_days(frame["cycle_time"]),
            mode="markers",
            name="finished ticket",
            marker={"size": 6, "color": COLORS["neutral"], "opacity": 0.7},
            text=_hover(frame),
            customdata=_customdata(frame, "team"),
            hovertemplate=(
                "%{text}<br>finished %{x|%Y-%m-%d} · %{y:.1f} days · %{customdata[1]}"
                "<extra></extra>"
            ),
        )
    )
    lines = frame.attrs.get("percentiles") or {}
    percentile_lines(fig, [(f"{k[1:]}%", v) for k, v in lines.items() if v is not None])
    return base_layout(
        fig, title=f"{title} (as of {as_of:%Y-%m-%d} UTC)", x="finished", y="cycle time (days)"
    )


_CFD_STATES = (
    ("closed", "#78909c"),
    ("resolved", "#2e7d32"),
    ("cancelled", "#bdbdbd"),
    ("waiting_other", "#8d6e63"),
    ("waiting_supplier", "#ab47bc"),
    ("waiting_customer", "#f9a825"),
    ("in_progress", "#1e88e5"),
    ("new", "#c62828"),
)


def cfd_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Cumulative flow: tickets per state at the end of each day, stacked (done at the bottom)."""
    if frame.empty:
        return empty_figure(title, "No days in the window")
    fig = go.Figure()
    x = pd.to_datetime(frame["date"])
    for state, color in _CFD_STATES:
        if state not in frame.columns:
            continue
        fig.add_trace(
            go.Scatter(
                x=x,
                y=frame[state],
                mode="lines",
                stackgroup="cfd",
                name=state.replace("_", " "),
                line={"width": 0.5, "color": color},
                hovertemplate="%{x|%Y-%m-%d}: %{y} " + state.replace("_", " ") + "<extra></extra>",
            )
        )
    return base_layout(fig, title=f"{title} (as of {as_of:%Y-%m-%d} UTC)", x="day", y="tickets")


def time_in_status_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Mean days per ticket in each open state, by team (stacked): where work waits."""
    if frame.empty:
        return empty_figure(title, "No tickets")
    fig = go.Figure()
    teams = sorted(frame["team"].unique())
    for state in _STATE_ORDER:
        part = frame[frame["state"] == state]
        if part.empty:
            continue
        fig.add_trace(
            go.Bar(
                x=part["team"],
                y=part["mean_days"],
                name=state.replace("_", " "),
                text=[
                    "longest: " + hover_text(n, t) if n is not None else ""
                    for n, t in zip(part["longest_number"], part["longest_title"], strict=True)
                ],
                textposition="none",
                customdata=[
                    [safe_url(u), k, d]
                    for u, k, d in zip(
                        part["longest_url"], part["tickets"], part["longest_days"], strict=True
                    )
                ],
                hovertemplate=(
                    "%{x} · " + state.replace("_", " ") + ": %{y:.1f} days per ticket "
                    "(%{customdata[1]} tickets)<br>%{text} (%{customdata[2]:.1f} days)"
                    "<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(categoryorder="array", categoryarray=teams)
    return base_layout(
        fig,
        title=f"{title} (as of {as_of:%Y-%m-%d} UTC)",
        x="team",
        y="mean days per ticket in state",
    )


def handover_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Handovers between teams: from (y) to (x), colour = handovers, hover with bounces."""
    if frame.empty:
        return empty_figure(title, "No handovers in the window")
    src = frame["from_team"].astype(object).where(frame["from_team"].notna(), "—")
    dst = frame["to_team"].astype(object).where(frame["to_team"].notna(), "—")
    teams = sorted(set(src) | set(dst))
    pos = {t: i for i, t in enumerate(teams)}
    z: list[list[float | None]] = [[None] * len(teams) for _ in teams]
    info: list[list[list[int]]] = [[[0, 0] for _ in teams] for _ in teams]
    for f, t, h, k, b in zip(
        src, dst, frame["handovers"], frame["tickets"], frame["bounces"], strict=True
    ):
        z[pos[f]][pos[t]] = float(h)
        info[pos[f]][pos[t]] = [int(k), int(b)]
    labels = [html.escape(str(t)) for t in teams]
    fig = go.Figure(
        go.Heatmap(
            x=labels,
            y=labels,
            z=z,
            customdata=info,
            colorscale="Oranges",
            hovertemplate=(
                "%{y} → %{x}: %{z} handovers<br>%{customdata[0]} tickets, "
                "%{customdata[1]} bounces back<extra></extra>"
            ),
        )
    )
    return base_layout(
        fig, title=f"{title} (as of {as_of:%Y-%m-%d} UTC)", x="to team", y="from team"
    )


CHARTS.update(
    {
        "aging": ChartSpec(
            name="aging",
            title="Aging work in progress",
            description="open tickets by state and age, coloured by pace band",
            analysis="aging",
            build=aging_figure,
        ),
        "throughput": ChartSpec(
            name="throughput",
            title="Throughput",
            description="tickets finished per day",
            analysis="throughput",
            build=throughput_figure,
        ),
        "stale": ChartSpec(
            name="stale",
            title="Stale calls",
            description="stale calls by team and days without activity, coloured by priority",
            analysis="stale",
            build=stale_figure,
        ),
        "cfd": ChartSpec(
            name="cfd",
            title="Cumulative flow",
            description="tickets per state at the end of each day",
            analysis="cfd",
            build=cfd_figure,
        ),
        "cycle-time": ChartSpec(
            name="cycle-time",
            title="Cycle time",
            description="finished tickets by finish day and cycle time, with percentile lines",
            analysis="cycle-chart",
            build=cycle_time_figure,
        ),
        "time-in-status": ChartSpec(
            name="time-in-status",
            title="Time in status by team",
            description="mean days per ticket in each open state, by team (bottlenecks)",
            analysis="time-by-team",
            build=time_in_status_figure,
        ),
        "handover": ChartSpec(
            name="handover",
            title="Handover matrix",
            description="tickets handed over between teams, with bounces",
            analysis="handovers",
            build=handover_figure,
        ),
    }
)
