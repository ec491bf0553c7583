"""Categorical input (as the warehouse hands low-cardinality text columns over) gives exactly the
results of object / ``str`` input: every metric, every field's intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analytics.intervals import FIELDS_WITH_INTERVALS, field_intervals
from analytics.log import prepare_log
from analytics.report import flow_report
from analytics.synthetic import SyntheticDesk, synthetic_desk
from analytics.textcol import TextColumn, factorize_codes
from analytics.timein import time_in_values
from tests.analytics.builders import NOW, as_categories
from tests.analytics.scenario import EVENTS, TICKETS, shuffled


@pytest.fixture(scope="module")
def desk() -> SyntheticDesk:
    return synthetic_desk(800, seed=5, days=90)


def _assert_same_everywhere(
    tickets: pd.DataFrame, events: pd.DataFrame, now: pd.Timestamp, *, sort: bool
) -> None:
    plain = prepare_log(tickets, events)
    coded = prepare_log(as_categories(tickets, sort=sort), as_categories(events, sort=sort))
    assert coded.ev_values.is_coded and coded.text("team").is_coded
    assert coded.dropped_events == plain.dropped_events
    expected, got = flow_report(plain, now=now).results(), flow_report(coded, now=now).results()
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name].n == expected[name].n, name
        assert_frame_equal(got[name].frame, expected[name].frame, obj=name)
    for field in FIELDS_WITH_INTERVALS:
        assert_frame_equal(field_intervals(coded, field), field_intervals(plain, field))
        assert_frame_equal(
            time_in_values(coded, field=field, now=now).frame,
            time_in_values(plain, field=field, now=now).frame,
        )
    assert _texts(coded.ev_actor) == _texts(plain.ev_actor)
    assert _texts(coded.ev_value) == _texts(plain.ev_value)


def _texts(values: np.ndarray) -> list[object]:
    """Missing as None (coded columns give None, object columns whatever they hold)."""
    return [None if pd.isna(v) else v for v in values]


@pytest.mark.parametrize("sort", [True, False], ids=["sorted-categories", "shuffled-categories"])
def test_synthetic_desk_categorical_equals_plain(desk: SyntheticDesk, sort: bool) -> None:
    _assert_same_everywhere(desk.tickets, desk.events, desk.now, sort=sort)


@pytest.mark.parametrize("sort", [True, False], ids=["sorted-categories", "shuffled-categories"])
def test_scenario_out_of_order_categorical_equals_plain(sort: bool) -> None:
    # events in random order: the text columns are reordered lazily
    _assert_same_everywhere(shuffled(TICKETS), shuffled(EVENTS), NOW, sort=sort)


def test_categorical_events_of_unknown_tickets_and_fields_are_dropped_alike() -> None:
    events = EVENTS.copy()
    events.loc[0, "ticket_id"] = "nope"
    events.loc[1, "field"] = "colour"
    events.loc[2, "source"] = None
    plain = prepare_log(TICKETS, events)
    coded = prepare_log(as_categories(TICKETS), as_categories(events, sort=False))
    assert plain.dropped_events == {"unknown ticket": 2, "unknown field": 1}
    assert coded.dropped_events == plain.dropped_events
    np.testing.assert_array_equal(coded.ev_ticket, plain.ev_ticket)
    assert _texts(coded.ev_value) == _texts(plain.ev_value)


@pytest.mark.parametrize("late", [None, 1500, 4999], ids=["early", "late", "last"])
def test_factorize_codes_numbers_values_as_pandas_factorize(late: int | None) -> None:
    rng = np.random.default_rng(1)
    table = np.array([f"v{i}" for i in range(40)], dtype=object)
    codes = rng.integers(-1, 39, 5000).astype(np.int16)
    if late is not None:  # a value first seen far into the column
        codes[late] = 39
    new, used = factorize_codes(codes, len(table))
    values = np.array([*table, None], dtype=object)[codes]  # -1: the trailing None
    expected_codes, expected_uniques = pd.factorize(values)
    np.testing.assert_array_equal(new, expected_codes)
    np.testing.assert_array_equal(table[used], expected_uniques)


def test_text_column_takes_reorders_and_maps_codes() -> None:
    series = pd.Series(pd.Categorical(["b", None, "a", "b"], categories=["a", "b", "z"]))
    column = TextColumn.of(series).reordered(np.array([3, 2, 1, 0]))
    assert column.is_coded and len(column) == 4
    assert column.take(np.array([0, 2])).tolist() == ["b", None]
    assert column.objects.tolist() == ["b", "a", None, "b"]
    assert column.codes_in(("z", "b")).tolist() == [1, -1, -1, 1]
    codes, uniques = column.factorize()
    assert codes.tolist() == [0, 1, -1, 0] and uniques.tolist() == ["b", "a"]
    plain = TextColumn.of(series.astype(object)).reordered(np.array([3, 2, 1, 0]))
    assert not plain.is_coded
    assert plain.factorize()[0].tolist() == codes.tolist()
