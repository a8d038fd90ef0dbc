"""The shared percentile-order check, as the gold AGP and the hourly-patterns mart use it."""

from __future__ import annotations

import math

import pandas as pd

from schemas.gold import PERCENTILE_COLUMNS, percentiles_in_order

NAN = math.nan


def frame(*rows: tuple[float, ...]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(PERCENTILE_COLUMNS))


def test_order_holds_only_when_every_percentile_is_in_order() -> None:
    df = frame(
        (60, 90, 120, 150, 200), (60, 90, 90, 90, 200), (60, 130, 120, 150, 200), (60, 90, 120, NAN, 200)
    )
    assert percentiles_in_order(df, allow_missing=False).tolist() == [True, True, False, False]
    assert percentiles_in_order(df, allow_missing=True).tolist() == [True, True, False, False]


def test_a_row_without_percentiles_passes_only_where_missing_is_allowed() -> None:
    df = frame((NAN, NAN, NAN, NAN, NAN))
    assert percentiles_in_order(df, allow_missing=True).tolist() == [True]
    assert percentiles_in_order(df, allow_missing=False).tolist() == [False]
