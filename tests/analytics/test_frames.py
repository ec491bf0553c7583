"""The names the analytics re-declare still match the canonical model in ``connectors``."""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType

import pandas as pd
import pytest

from analytics import frames
from analytics.errors import InvalidInputError, MissingColumnsError
from connectors import base


def test_column_names_match_the_canonical_model() -> None:
    assert frames.TICKET_COLUMNS == base.TICKET_COLUMNS
    assert frames.EVENT_COLUMNS == base.EVENT_COLUMNS


def test_states_and_fields_match_the_canonical_model() -> None:
    assert tuple(s.value for s in base.LifecycleState) == frames.STATES
    assert tuple(f.value for f in base.EventField) == frames.FIELDS
    assert {s.value for s in base.DONE_STATES} == frames.DONE_STATES
    assert {s.value for s in base.OPEN_STATES} == frames.OPEN_STATES
    assert {s.value for s in base.WAITING_STATES} == frames.WAITING_STATES


def test_require_columns_lists_all_missing() -> None:
    with pytest.raises(MissingColumnsError) as err:
        frames.require_columns(pd.DataFrame({"a": [1]}), ["b", "a", "c"], frame="tickets")
    assert err.value.missing == ["b", "c"]
    assert str(err.value) == "tickets is missing columns: `b`, `c`"


def test_now_must_be_timezone_aware() -> None:
    assert frames.timestamp_ns(datetime(2024, 1, 1, tzinfo=UTC)) == 1704067200 * 10**9
    with pytest.raises(InvalidInputError, match="naive"):
        frames.timestamp_ns(datetime(2024, 1, 1))


def test_exported_names_are_the_public_api() -> None:
    import analytics

    public = sorted(
        name
        for name, value in vars(analytics).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    )
    assert analytics.__all__ == sorted(analytics.__all__)
    assert public == analytics.__all__
