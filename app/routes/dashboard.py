"""``/``: the daily team dashboard: a team picker, the charts and the stale and blocked lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.charts import PLOTLY_VERSION, page_environment, safe_url
from app.deps import BearerHeader, CacheDep, Filters, KeyHeader, SettingsDep, chart_access
from app.routes._analyses import ANALYSES, analysis_result
from app.routes.analytics import report_milestones
from app.routes.charts import TokenParam, _version, available_charts, chart_figure
from app.security import DASHBOARD, page_csp

router = APIRouter(tags=["dashboard"])

DASHBOARD_CHARTS = (
    "aging",
    "stale",
    "cfd",
    "throughput",
    "cycle-time",
    "time-in-status",
    "handover",
)


@dataclass(frozen=True)
class Table:
    """One list on the dashboard: an analysis and the columns shown (column, heading)."""

    analysis: str
    title: str
    columns: tuple[tuple[str, str], ...]
    sort: tuple[str, bool] | None = None
    limit: int = 50


TABLES: list[Table] = [
    Table(
        analysis="stale",
        title="Stale calls",
        columns=(
            ("number", "ticket"),
            ("title", "title"),
            ("priority", "P"),
            ("assignee", "assignee"),
            ("age", "without activity"),
            ("reason", "why"),
        ),
    ),
    Table(
        analysis="blockers",
        title="Blocked",
        columns=(
            ("number", "ticket"),
            ("title", "title"),
            ("priority", "P"),
            ("blocker", "blocker"),
            ("age", "for"),
            ("reason", "why"),
        ),
    ),
]
"""the lists on the dashboard (in the analyses' own order: most overdue / most pressing first)"""


@dataclass
class _Rendered:
    title: str
    headings: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    links: list[str | None] = field(default_factory=list)
    total: int = 0


@router.get("/", response_class=HTMLResponse, summary="The team dashboard", tags=["dashboard"])
def dashboard(
    request: Request,
    cache: CacheDep,
    settings: SettingsDep,
    key: KeyHeader,
    bearer: BearerHeader,
    team: Annotated[str | None, Query(max_length=200, description="the team to show")] = None,
    token: TokenParam = None,
) -> HTMLResponse:
    """Charts and lists for one team (or all), for a team lead with no set-up."""
    caller = chart_access(request, DASHBOARD, token=token, key=key, bearer=bearer)
    filters = Filters(team=(team,) if team else ()).pinned(caller)
    snapshot = cache.snapshot()
    teams = sorted(t for t in snapshot.tickets["team"].dropna().unique())
    if "team" in caller.pins:
        teams = [caller.pins["team"]]
    charts = []
    for name in DASHBOARD_CHARTS:
        spec = available_charts().get(name)
        if spec is None:
            continue
        figure = chart_figure(cache, settings, spec, filters)
        charts.append({"name": name, "title": spec.title, "figure": figure.value.json})
    tables = []
    for table in TABLES:
        if table.analysis not in ANALYSES:
            continue
        result = analysis_result(cache, settings, table.analysis, filters).value
        if table.sort is not None and table.sort[0] in result.columns:
            result = result.sort_values(table.sort[0], ascending=table.sort[1])
        shown = result.head(table.limit)
        rendered = _Rendered(
            title=table.title, headings=[h for _, h in table.columns], total=len(result)
        )
        for _, row in shown.iterrows():
            rendered.rows.append([_cell(row.get(c)) for c, _ in table.columns])
            url = row.get("url")
            rendered.links.append(
                url if isinstance(url, str) and url.startswith(("http://", "https://")) else None
            )
        tables.append(rendered)
    today = datetime.now(UTC).date()
    marks = [
        {"text": m.text, "number": m.number, "link": safe_url(m.url)}
        for m in report_milestones(cache, settings, filters, today)
    ]
    page = (
        page_environment()
        .get_template("dashboard.html")
        .render(
            teams=teams,
            team=filters.team[0] if filters.team else None,
            token=token,
            charts=charts,
            tables=tables,
            milestones=marks,
            as_of=snapshot.loaded_at.isoformat(timespec="seconds"),
            base=request.scope.get("root_path", ""),
            version=_version(),
            plotly_version=PLOTLY_VERSION,
        )
    )
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": page_csp(settings.api.frame_ancestors),
            "Cache-Control": "private, max-age=60",
        },
    )


def _cell(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timedelta):
        hours = value.total_seconds() / 3600
        return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
