"""Text that a spreadsheet will not run as a formula (CSV / formula injection).

Excel, LibreOffice and Google Sheets treat a cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return as a formula, so a unit named
``=HYPERLINK(...)`` would become a live link in ``report.xlsx`` or in a CSV
opened in Excel. Following OWASP, such *text* gets a leading single quote.
Numbers are never touched: a negative deviation stays a number.

Every Excel writer of the project passes its frame through :func:`inert_frame`,
and every CSV is written by :func:`write_csv`, which also quotes every text
field, so a carriage return inside a name cannot start a new row that begins
with a formula. This lives in ``features`` so that ``models.tracking`` (CSV
artifacts) uses it too.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def inert_text(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def revert_inert(value: Any) -> Any:
    """Undo :func:`inert_text`: ``'=x`` -> ``=x`` (a file this project wrote, read back)."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def inert_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are inert; numbers unchanged."""
    out = frame.copy(deep=False)
    for position, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, pd.CategoricalDtype):
            column = frame.iloc[:, position].astype(object)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            column = frame.iloc[:, position]
        else:
            continue
        out.isetitem(position, column.map(inert_text))
    out.columns = [inert_text(c) for c in frame.columns]
    return out


def write_csv(frame: pd.DataFrame, path: Path | str) -> None:
    """``frame`` as CSV without its index: inert text, every text field quoted, numbers bare."""
    inert_frame(frame).to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
