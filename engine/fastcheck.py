"""A quick, exact "every row passes" for a pandera DataFrameSchema, so that a clean batch skips
pandera's per-column machinery; any doubt is left to pandera, which reports what failed.

The schemas in schemas/ stay the only definition of the rules: this evaluates the rules a schema
declares (column presence and strictness, coercion, nullable, unique, dtype, its Field and custom
checks) by calling pandera's own dtype objects and check functions with the arguments pandera's
pandas backend gives them (pandera/backends/pandas/container.py, array.py, checks.py), on the
same values. It answers True only when every rule passes; a failed rule, an exception, or a
schema feature it does not evaluate (parsers, defaults, regex columns, an index, groupby checks,
...) answers False, and the caller then runs the full pandera validation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# pandera registers its pandas implementations of the built-in checks (ge, lt, str_matches, ...) when
# a schema first validates; the fast path calls them before pandera has validated anything.
import pandera.backends.pandas.builtin_checks  # noqa: F401
from pandera.api.checks import Check
from pandera.api.pandas.components import Column
from pandera.api.pandas.container import DataFrameSchema
from pandera.engines.pandas_engine import Engine


@dataclass(frozen=True)
class FrameCheckFailure:
    """Every rule of a schema passes except one dataframe-level check, which fails on `rows`."""

    name: str
    """As pandera reports the check: its error text, else its name."""
    rows: list[int]
    """The frame's index labels (positions of a RangeIndex) where it fails, ascending."""


def passes(schema: DataFrameSchema, frame: pd.DataFrame) -> bool:
    """True only if `schema.validate(frame, lazy=True)` would raise no error; False when a rule
    fails or when this cannot tell exactly (then ask pandera). `frame` is not changed."""
    return _evaluate(schema, frame) is True


def evaluate(schema: DataFrameSchema, frame: pd.DataFrame) -> bool | FrameCheckFailure | None:
    """True when every rule passes (as `passes`); a `FrameCheckFailure` when exactly one
    dataframe-level check fails and everything else passes, so its failure cases are those rows
    (as pandera would report them); None for anything else: ask pandera."""
    return _evaluate(schema, frame)


def _evaluate(schema: DataFrameSchema, frame: pd.DataFrame) -> bool | FrameCheckFailure | None:
    if not _supported(schema) or not _plain_columns(schema, frame):
        return None
    try:
        return _all_rules_pass(schema, frame)
    except Exception:  # pandera reports a check that raises as failed (CHECK_ERROR)
        return None


def _supported(schema: DataFrameSchema) -> bool:
    """Whether every feature the schema uses is one `_all_rules_pass` evaluates exactly."""
    if (
        type(schema) is not DataFrameSchema
        or schema.parsers
        or schema.dtype is not None
        or schema.index is not None
        or schema.unique
        or schema.add_missing_columns
        or schema.drop_invalid_rows
        or schema.ordered
        or schema.strict not in (True, False)
    ):
        return False
    for name, column in schema.columns.items():
        if (
            type(column) is not Column
            or column.name != name
            or column.regex
            or column.parsers
            or column.default is not None
            or column.drop_invalid_rows
            or not all(_plain_check(check) for check in column.checks)
        ):
            return False
    return all(_plain_check(check) for check in schema.checks)


def _plain_check(check: object) -> bool:
    return type(check) is Check and check.groupby is None and check._check_fn is not None


def _plain_columns(schema: DataFrameSchema, frame: pd.DataFrame) -> bool:
    """A plain DataFrame holding every schema column once, and (strict) nothing else."""
    if type(frame) is not pd.DataFrame or isinstance(frame.columns, pd.MultiIndex):
        return False
    if not frame.columns.is_unique or not all(name in frame.columns for name in schema.columns):
        return False
    return not schema.strict or all(name in schema.columns for name in frame.columns)


def _all_rules_pass(schema: DataFrameSchema, frame: pd.DataFrame) -> bool | FrameCheckFailure | None:
    checked = _coerced(schema, frame)
    for name, column in schema.columns.items():
        values = checked[name]
        if not column.nullable and values.hasnans:
            return None
        if column.unique and not values.is_unique:
            return None
        if column.dtype is not None and not _dtype_passes(column, values):
            return None
        without_na: pd.Series | None = None
        for check in column.checks:
            checked_values = values
            if check.ignore_na and values.hasnans:
                # pandera hands an ignore_na check the column without its nulls
                if without_na is None:
                    without_na = values.dropna()
                checked_values = without_na
            if check.element_wise:
                output = checked_values.map(_check_function(check))
            else:
                output = _check_function(check)(checked_values)
            if not _output_passes(output):
                return None
    failure: FrameCheckFailure | None = None
    for check in schema.checks:
        if check.element_wise:
            output = checked.apply(_check_function(check), axis=1)
        else:
            output = _check_function(check)(checked)
        # For a dataframe check pandera also lets a row of nulls pass (ignore_na); that only
        # turns failures into passes, so all-true output passes there too.
        if _output_passes(output):
            continue
        rows = _failing_rows(check, checked, output)
        if rows is None or failure is not None:  # two failing checks: pandera orders their cases
            return None
        if rows:
            failure = FrameCheckFailure(_reported_name(check), rows)
    return True if failure is None else failure


def _failing_rows(check: Check, checked: pd.DataFrame, output: object) -> list[int] | None:
    """The rows pandera reports for a failed dataframe check with one numpy bool per row: those
    false, but for rows of nulls under ignore_na (its failure cases are these rows' non-null
    values, so each such row has one). None for any other output or check."""
    if (
        not isinstance(output, pd.Series)
        or output.dtype != bool
        or not isinstance(checked.index, pd.RangeIndex)
        or not checked.index.equals(output.index)
        or check.raise_warning
        or check.n_failure_cases is not None
    ):
        return None
    failing = ~output
    if check.ignore_na:
        failing &= ~checked.isna().all(axis="columns")
    return [int(label) for label in checked.index[failing.to_numpy()]]


def _reported_name(check: Check) -> str:
    """pandera's name of a check in its failure cases (error_formatters.consolidate_failure_cases)."""
    if check.error is not None:
        return str(check.error)
    return str(check.name) if check.name is not None else str(check)


def _coerced(schema: DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame pandera checks: each coerced column through its dtype's `try_coerce` (which
    raises where pandera reports a coercion failure)."""
    coerced = {
        name: column.dtype.try_coerce(frame[name])
        for name, column in schema.columns.items()
        if (column.coerce or schema.coerce) and column.dtype is not None
    }
    if not coerced:
        return frame  # never written to: checks read it as pandera's inplace copy
    checked = frame.copy(deep=False)  # copy-on-write: the caller's frame keeps its columns
    for name, values in coerced.items():
        checked[name] = values
    return checked


def _dtype_passes(column: Column, values: pd.Series) -> bool:
    """pandera's check_dtype: a bool, or one flag per value that must all be true."""
    result = column.dtype.check(Engine.dtype(values.dtype), values)
    if isinstance(result, bool):
        return result
    return isinstance(result, np.ndarray | pd.Series) and _all_true(result)


def _check_function(check: Check) -> Callable[[Any], Any]:
    """The function pandera calls for `check`, with its keyword arguments (a built-in check is
    looked up again by name, as `Check.__call__` does)."""
    function = check._check_fn
    name = getattr(function, "__name__", None)
    if name is not None and check.is_builtin_check(name):
        function = check.get_builtin_check_fn(name)
    kwargs = check._check_kwargs
    return (lambda data: function(data, **kwargs)) if kwargs else function


def _output_passes(output: object) -> bool:
    """Whether pandera counts a check's output as passed: a true bool, or a Series of true flags
    (other outputs, such as an ndarray, pandera does not take: they fail there)."""
    if isinstance(output, bool | np.bool_):
        return bool(output)
    return isinstance(output, pd.Series) and _all_true(output)


def _all_true(flags: np.ndarray | pd.Series) -> bool:
    """Booleans, numpy's or pandas' nullable ones (whose missing values pandera's `all()` skips),
    that are all true; flags of another dtype are not vouched for."""
    if flags.dtype != bool and not isinstance(flags.dtype, pd.BooleanDtype):
        return False
    return bool(flags.all())
