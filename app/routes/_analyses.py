"""The analyses the API, the charts and the dashboard serve, each computed once per snapshot.

An entry names an ``analytics`` function and how to call it on the warehouse snapshot. Results
are whole-warehouse frames, cached by ``AnalyticsCache``; requests filter them afterwards
(filtering is cheap, recomputing is not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from app.cache import AnalyticsCache, Cached, Snapshot
from app.settings import Settings

__all__ = ["ANALYSES", "Analysis", "analysis_result"]


@dataclass(frozen=True)
class Analysis:
    name: str
    compute: Callable[[Snapshot, datetime, Settings], pd.DataFrame]


ANALYSES: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    ANALYSES[analysis.name] = analysis
    return analysis


def analysis_result(cache: AnalyticsCache, settings: Settings, name: str) -> Cached[pd.DataFrame]:
    """The cached result of the analysis ``name`` for the current warehouse snapshot."""
    analysis = ANALYSES[name]
    return cache.get((name,), lambda snapshot, now: analysis.compute(snapshot, now, settings))
