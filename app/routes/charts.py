"""``/charts``: Plotly figures as embeddable HTML pages and as figure JSON.

``/charts/<name>`` is a self-contained page made for an ``<iframe>``; ``/charts/<name>.json`` is
the figure itself. Both take the API's filters, and a read key, an embed token (``?token=``)
that opens the chart, or public-read mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.cache import AnalyticsCache, Cached, Snapshot
from app.charts import CHARTS, PLOTLY_VERSION, ChartSpec, figure_json, page_environment
from app.deps import (
    BearerHeader,
    CacheDep,
    Filters,
    FiltersDep,
    KeyHeader,
    ReadAccess,
    SettingsDep,
    chart_access,
)
from app.errors import NotFoundError
from app.routes._analyses import ANALYSES, analysis_result
from app.routes._fastpath import remember
from app.routes._rendered import Rendered, render, respond
from app.security import page_csp
from app.settings import Settings

router = APIRouter(prefix="/charts", tags=["charts"])

TokenParam = Annotated[
    str | None,
    Query(max_length=4096, description="an embed token (for iframes, which cannot send headers)"),
]


def _version() -> str:
    try:
        return version("ticketflow")
    except PackageNotFoundError:
        return "dev"


class ChartInfo(BaseModel):
    name: str
    title: str
    description: str
    page: str
    figure: str


def available_charts() -> dict[str, ChartSpec]:
    """The charts whose analysis this build serves."""
    return {name: spec for name, spec in CHARTS.items() if spec.analysis in ANALYSES}


def _spec(name: str) -> ChartSpec:
    spec = available_charts().get(name)
    if spec is None:
        known = ", ".join(sorted(available_charts())) or "none yet"
        raise NotFoundError(f"chart `{name}` (known: {known})")
    return spec


@dataclass(frozen=True)
class RenderedFigure:
    json: str
    """the figure JSON (for the chart page and the dashboard)"""
    rendered: Rendered
    """the same as bytes to answer ``.json`` requests: gzipped once, ETag"""
    as_of: str


def chart_figure(
    cache: AnalyticsCache, settings: Settings, spec: ChartSpec, filters: Filters
) -> Cached[RenderedFigure]:
    """The figure of a chart for ``filters``, cached until the analysis changes."""

    def compute(snapshot: Snapshot, now: datetime) -> RenderedFigure:
        result = analysis_result(cache, settings, spec.analysis, filters)
        text = figure_json(spec.build(result.value, result.as_of, spec.title))
        return RenderedFigure(
            json=text,
            rendered=render(text.encode(), as_of=now, version=snapshot.version),
            as_of=result.as_of.isoformat(timespec="seconds"),
        )

    return cache.get(_figure_key(spec, filters), compute)


def _figure_key(spec: ChartSpec, filters: Filters) -> tuple[object, ...]:
    return ("chart", spec.name, filters.key())


async def rendered_figure(
    cache: AnalyticsCache, settings: Settings, spec: ChartSpec, filters: Filters
) -> Cached[RenderedFigure]:
    """The cached figure straight from the event loop, else built in a worker thread."""
    hit = cache.peek(_figure_key(spec, filters))
    if hit is not None:
        return hit
    return await run_in_threadpool(chart_figure, cache, settings, spec, filters)


def _figure_bytes(figure: RenderedFigure) -> Rendered:
    return figure.rendered


@router.get("", response_model=list[ChartInfo], summary="The charts this server draws")
async def list_charts(_caller: ReadAccess) -> list[ChartInfo]:
    """Every chart with its title and paths."""
    return [
        ChartInfo(
            name=s.name,
            title=s.title,
            description=s.description,
            page=f"/charts/{s.name}",
            figure=f"/charts/{s.name}.json",
        )
        for s in available_charts().values()
    ]


@router.get(
    "/{name}.json",
    summary="A chart's Plotly figure JSON",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 404: {"description": "no such chart"}},
)
async def chart_json(
    name: str,
    request: Request,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    key: KeyHeader,
    bearer: BearerHeader,
    token: TokenParam = None,
) -> Response:
    """The figure (``data`` and ``layout``) to draw with ``Plotly.newPlot``."""
    caller = chart_access(request, name, token=token, key=key, bearer=bearer)
    spec = _spec(name)
    pinned = filters.pinned(caller)
    figure = await rendered_figure(cache, settings, spec, pinned)
    if token is None:
        remember(request, _figure_key(spec, pinned), _figure_bytes)
    return respond(request, figure.value.rendered, stale=not cache.is_current(figure))


@router.get(
    "/{name}",
    summary="A chart as an embeddable HTML page",
    response_class=HTMLResponse,
    responses={404: {"description": "no such chart"}},
)
async def chart_page(
    name: str,
    request: Request,
    cache: CacheDep,
    settings: SettingsDep,
    filters: FiltersDep,
    key: KeyHeader,
    bearer: BearerHeader,
    token: TokenParam = None,
) -> HTMLResponse:
    """A page for an ``<iframe>``: plotly.js from this server, CSP frame-ancestors allow-list."""
    caller = chart_access(request, name, token=token, key=key, bearer=bearer)
    spec = _spec(name)
    figure = (await rendered_figure(cache, settings, spec, filters.pinned(caller))).value
    page = (
        page_environment()
        .get_template("chart.html")
        .render(
            name=spec.name,
            title=spec.title,
            figure=figure.json,
            as_of=figure.as_of,
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
