"""Segments in the sales history: product lines or customer segments that sales forces sell.

A sales file may carry a ``segment`` column (a product line, a customer
segment). Each segment's rows are validated as a sales history of their own
(one row per unit and period within a segment); the run's total sales are
their sum per unit and period. Demographics and geography stay shared.

Pure functions over DataFrames, no file access: :func:`split_segments` and
:func:`total_sales` are what ``territory.features.io.load_sales_by_segment``
calls; :func:`check_segments` compares the segments found with the ones a
config's sales forces sell.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.features.schemas import (
    FIRST_ROW_ATTR,
    FIRST_ROW_KIND_ATTR,
)

#: The column of a sales file that names each row's segment (product line, customer segment).
SEGMENT_COL = "segment"


def _file_rows(frame: pd.DataFrame) -> tuple[np.ndarray, str | None]:
    """The file's number of each row and what it calls them (``line`` for CSV, ``row``);
    the index labels and None for a frame built in memory."""
    first = frame.attrs.get(FIRST_ROW_ATTR)
    if first is None:
        return frame.index.to_numpy(), None
    return np.arange(len(frame)) + int(first), frame.attrs.get(FIRST_ROW_KIND_ATTR, "row")


def _row_labels(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    """How the file names the rows under ``mask`` (``line 8`` for CSV, ``row 7`` else)."""
    numbers, kind = _file_rows(frame)
    return [f"{kind or 'index'} {n}" for n in numbers[mask]]


def segment_labels(frame: pd.DataFrame, source: str, segment_col: str = SEGMENT_COL
                   ) -> pd.Series:
    """Each row's segment as stripped text; an error naming the rows where it is blank."""
    raw = frame[segment_col]
    text = raw.astype("string").str.strip()
    blank = (raw.isna() | text.isna() | (text == "")).to_numpy()
    if blank.any():
        rows = _row_labels(frame, blank)
        raise InputError(source, f"{segment_col} must name the row's segment (product line or "
                         "customer segment); it is empty", column=segment_col, rows=rows,
                         n_rows=len(rows),
                         hint="fill in the segment of every row, or drop the segment column "
                              "when the file has one sales force")
    return text.astype(object)


def split_segments(
    frame: pd.DataFrame,
    source: str,
    validate: Callable[[pd.DataFrame], pd.DataFrame],
    segment_col: str = SEGMENT_COL,
) -> pd.DataFrame:
    """Validate each segment's rows with ``validate`` and stack them with their segment.

    ``validate`` is the sales contract (``validate_sales`` with its options):
    within a segment, a unit and period appear once. Rows keep their place in
    the file, so an error names the file's own row numbers.
    """
    labels = segment_labels(frame, source, segment_col)
    numbers, kind = _file_rows(frame)
    parts = []
    for segment in sorted(labels.unique()):
        mask = (labels == segment).to_numpy()
        rows = frame.loc[mask].drop(columns=segment_col)
        rows.index = numbers[mask]  # errors name the file's rows, not the segment's
        rows.attrs = {}
        try:
            part = validate(rows)
        except InputError as exc:
            raise _in_segment(exc, segment, kind, segment_col) from None
        part.insert(0, segment_col, segment)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _in_segment(exc: InputError, segment: str, kind: str | None, segment_col: str
                ) -> InputError:
    """``exc`` with the segment named and its rows called as the file calls them."""
    rows = [re.sub(r"^index ", f"{kind} ", str(r)) if kind else r for r in exc.rows]
    return InputError(exc.source, f"{exc.rule} ({segment_col} {segment!r})", column=exc.column,
                      rows=rows, n_rows=exc.n_rows, hint=exc.hint, key=exc.key)


def total_sales(by_segment: pd.DataFrame, columns: ColumnsConfig | None = None,
                segment_col: str = SEGMENT_COL) -> pd.DataFrame:
    """Sales per (unit, period) summed over segments, drivers too, sorted by unit and period.

    ``accounts`` (a count that is averaged within a period) adds up across
    segments: a segment's accounts are its own. A value no segment recorded
    stays NaN.
    """
    cols = columns or ColumnsConfig()
    unit, time = cols.unit_col, cols.time_col
    values = [c for c in by_segment.columns if c not in (segment_col, unit, time)]
    out = by_segment.groupby([unit, time], sort=True)[values].sum(min_count=1).reset_index()
    return out[[unit, time, *values]]


def segment_sales(by_segment: pd.DataFrame, segments: Sequence[str],
                  columns: ColumnsConfig | None = None,
                  segment_col: str = SEGMENT_COL) -> pd.DataFrame:
    """Sales per (unit, period) of ``segments`` together (what one sales force sells)."""
    chosen = by_segment[by_segment[segment_col].isin(list(segments))]
    return total_sales(chosen, columns, segment_col)


def check_segments(found: Sequence[str], forces: Mapping[str, Sequence[str]], source: str,
                   segment_col: str = SEGMENT_COL) -> None:
    """Every segment in the sales is sold by a force, and every force's segment has sales.

    ``found`` are the segments of the sales file, ``forces`` the segments
    each force sells (``forces:`` in the config).
    """
    sold = {s for segments in forces.values() for s in segments}
    orphans = sorted(set(found) - sold)
    if orphans:
        raise InputError(
            source, f"{len(orphans)} segment(s) in the sales history are sold by no sales "
            f"force: {', '.join(map(repr, orphans))}; their sales would be left out",
            column=segment_col, rows=orphans,
            hint=f"add them to a force's segments under forces: (forces sell "
                 f"{', '.join(f'{n}: {list(s)}' for n, s in forces.items())}), or drop "
                 "their rows from the sales file")
    unsold = {name: [s for s in segments if s not in set(found)]
              for name, segments in forces.items()}
    unsold = {name: missing for name, missing in unsold.items() if missing}
    if unsold:
        words = "; ".join(f"force '{n}' sells {', '.join(map(repr, m))}" for n, m in
                          unsold.items())
        raise InputError(
            source, f"segments configured under forces: have no sales rows ({words})",
            column=segment_col, rows=[s for m in unsold.values() for s in m],
            hint=f"the sales file's segments are {', '.join(map(repr, sorted(found)))}: fix "
                 "the spelling in the config, or add the missing segment's sales")
