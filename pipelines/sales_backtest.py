"""``territory backtest``: read a sales file, backtest every method, write the tables.

Reads and validates the file with the project's rules (dates never guessed,
:mod:`territory.features._dates`), calls
:func:`territory.models.sales_backtest.backtest_sales` and writes, each file
atomically, into the output folder:

* ``metrics.csv``: per method and horizon (``all`` first): MASE, WAPE, 80%
  coverage and the rows scored;
* ``forecasts.csv``: ``unit_id``, ``origin``, ``period``, ``horizon``,
  ``method``, ``forecast``, ``lo``, ``hi``, ``actual`` for every scored window;
* ``skipped.csv``: the series left out of a window, with the reason;
* ``weights.csv``: the combination's weights per origin, horizon and member;
* ``coverage_by_length.csv``: 80% coverage per method on short series (fewer
  than three years of history at the origin) and the others.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.features.io import read_table
from territory.features.schemas import validate_sales
from territory.features.spreadsheet_safe import write_csv
from territory.models.sales_backtest import SalesBacktest, backtest_sales
from territory.pipelines.outputs import atomic_file

#: The validators name config settings; here the flags set them (pattern, replacement).
SETTING_TO_FLAG = (
    (r"set features\.frequency: (\S+) in the config \([^)]*\), or run territory init on "
     r"this file", r"pass --frequency \1"),
    (r"features\.frequency is", "--frequency is"),
    (r"set data\.date_format:", "pass --date-format"),
    (r"set data\.date_format", "pass --date-format"),
    (r"data\.date_format", "--date-format"),
    (r"set its name in the columns config", "name it with --unit-col, --time-col or --target-col"),
)


def in_flag_terms(exc: InputError) -> InputError:
    """``exc`` with the config settings it names replaced by this command's flags."""
    def reword(text: str | None) -> str | None:
        for pattern, flag in SETTING_TO_FLAG:
            text = re.sub(pattern, flag, text) if text else text
        return text

    return InputError(exc.source, reword(exc.rule), column=exc.column, rows=exc.rows,
                      n_rows=exc.n_rows, hint=reword(exc.hint), key=exc.key)


def load_sales_panel(path: Path, frequency: str, columns: ColumnsConfig,
                     date_format: str | None = None) -> pd.DataFrame:
    """The sales file, validated and aggregated to ``frequency``, with the contract's names.

    Errors name the flags (``--date-format``, ``--frequency``, ``--unit-col``),
    not the config settings the validators speak of.
    """
    frame = read_table(path, [columns.unit_col])
    ids = (frame[columns.unit_col].dropna().astype(str).unique()
           if columns.unit_col in frame else [])
    try:
        sales = validate_sales(frame, str(path), ids, columns=columns, frequency=frequency,
                               date_format=date_format)
    except InputError as exc:
        raise in_flag_terms(exc) from None
    default = ColumnsConfig()
    return sales.rename(columns={columns.unit_col: default.unit_col,
                                 columns.time_col: default.time_col,
                                 columns.target_col: default.target_col})


def write_results(result: SalesBacktest, out: Path) -> dict[str, Path]:
    """Write the backtest's tables into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    weights = pd.concat(
        [w.reset_index().melt(id_vars="horizon", var_name="member", value_name="weight")
         .assign(origin=origin) for origin, w in result.weights.items()
         if origin in result.origins], ignore_index=True)
    tables = {
        "metrics.csv": result.table,
        "forecasts.csv": result.forecasts,
        "skipped.csv": result.skipped,
        "weights.csv": weights[["origin", "horizon", "member", "weight"]],
        "coverage_by_length.csv": result.coverage_by_length,
    }
    written = {}
    for name, frame in tables.items():
        with atomic_file(out / name) as tmp:
            write_csv(frame, tmp)
        written[name] = out / name
    return written


def run_sales_backtest(
    sales: Path,
    out: Path,
    frequency: str,
    horizon: int,
    windows: int,
    step: int | None = None,
    columns: ColumnsConfig | None = None,
    date_format: str | None = None,
    seed: int = 42,
    n_jobs: int = 1,
    progress=None,
) -> tuple[SalesBacktest, dict[str, Path]]:
    """Load ``sales``, backtest it and write the results into ``out``."""
    if horizon < 1 or windows < 1 or (step is not None and step < 1):
        raise InputError("arguments", "--horizon, --windows and --step must be at least 1",
                         hint="e.g. --horizon 8 --windows 4")
    data = load_sales_panel(sales, frequency, columns or ColumnsConfig(), date_format)
    result = backtest_sales(data, frequency, horizon, windows, step, seed=seed, n_jobs=n_jobs,
                            progress=progress)
    return result, write_results(result, out)
