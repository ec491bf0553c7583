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


def aging_figure(frame: pd.DataFrame, as_of: datetime, title: str) -> go.Figure:
    """Open tickets by state (x) and age in days (y), coloured by the pace band they passed."""
    if frame.empty:
        return empty_figure(title, "No open tickets")
    states = [s for s in _STATE_ORDER if s in set(frame["state"])]
    states += sorted(set(frame["state"]) - set(states))
    fig = go.Figure()
    pace = frame["pace"].astype(object).where(frame["pace"].notna(), "no pace data")
    bands = sorted(pace.unique(), key=_band_rank)
    for i, band in enumerate(bands):
        part = frame[(pace == band).to_numpy()]
        age = _days(part["age"])
        fig.add_trace(
            go.Scatter(
                x=part["state"],
                y=age,
                mode="markers",
                name=html.escape(str(band)),
                marker={
                    "size": 9,
                    "color": _PACE_COLORS[min(i, len(_PACE_COLORS) - 1)],
                    "line": {"width": 0.5, "color": "#263238"},
                },
                text=_hover(part),
                customdata=[
                    [safe_url(u), t] for u, t in zip(part["url"], part["team"], strict=True)
                ],
                hovertemplate=(
                    "%{text}<br>age %{y:.1f} days · %{customdata[1]}<extra>%{fullData.name}</extra>"
                ),
            )
        )
    fig.update_xaxes(categoryorder="array", categoryarray=states)
    return base_layout(
        fig, title=f"{title} (as of {as_of:%Y-%m-%d %H:%M} UTC)", x="state", y="age (days)"
    )


def _band_rank(band: str) -> tuple[int, str]:
    digits = "".join(ch for ch in str(band) if ch.isdigit())
    return (int(digits) if digits else -1, str(band))


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
    }
)
