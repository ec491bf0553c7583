from __future__ import annotations

import pandas as pd
import pytest

from connectors.base import derived_event_keys


def _events(old: list[object], dtype: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": ["1"] * len(old),
            "occurred_at": pd.to_datetime(["2024-01-01T10:00:00Z"] * len(old), utc=True),
            "field": ["team"] * len(old),
            "old_value": pd.Series(old, dtype=dtype),
            "new_value": ["A"] * len(old),
        }
    )


@pytest.mark.parametrize("dtype", ["object", "str"])
def test_missing_and_empty_old_values_get_different_keys(dtype: str) -> None:
    keys = derived_event_keys(_events([None, "", None], dtype)).tolist()
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]


def test_keys_depend_on_content_only() -> None:
    frame = _events(["B", None], "object")
    shuffled = frame.iloc[::-1].reset_index(drop=True)
    assert sorted(derived_event_keys(frame)) == sorted(derived_event_keys(shuffled))
