"""Read input tables from disk and check them against their contracts.

:func:`read_table` picks a reader by file suffix and turns every failure
(missing, empty, unsupported or unreadable file) into one
:class:`~features.errors.InputError`. The ``load_*`` functions read and
validate in one call (``path``: the table file; ``unit_ids``: the known units;
``columns``: the contract column names, default :class:`ColumnsConfig`); they
are meant to be called from ``pipelines``, the only layer that touches disk.
``load_<table>`` applies :mod:`territory.features.schemas`' ``validate_<table>``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, TypeVar

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.features.schemas import (
    FIRST_ROW_ATTR,
    FIRST_ROW_KIND_ATTR,
    HOME_UNIT_COL,
    UNIT_TEXT_COLS,
    validate_alignment,
    validate_demographics,
    validate_reps,
    validate_sales,
    validate_units,
)
from territory.features.segments import SEGMENT_COL, split_segments, total_sales

SPATIAL_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp")
SUPPORTED_SUFFIXES = (".csv", ".parquet", *SPATIAL_SUFFIXES)
#: Spreadsheet workbooks: not read, and the error says how to save them as CSV.
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
_CSV_SEPARATORS = (";", "\t", "|")
_Frame = TypeVar("_Frame", bound=pd.DataFrame)


def id_columns(columns: ColumnsConfig | None = None) -> list[str]:
    """Columns that hold identifiers or labels and must be read as text.

    Parameters
    ----------
    columns
        Contract column names; defaults to :class:`ColumnsConfig`.

    Returns
    -------
    list of str
        Unit, territory, rep and home unit ids, and the unit ``name`` and ``region``.
    """
    columns = columns or ColumnsConfig()
    return [
        columns.unit_col,
        columns.territory_col,
        columns.rep_col,
        HOME_UNIT_COL,
        *UNIT_TEXT_COLS,
    ]


def _read_csv(path: Path, text_columns: Collection[str]) -> pd.DataFrame:
    """CSV with text ids (leading zeros kept); falls back to ; tab or | separators."""
    dtype = dict.fromkeys(text_columns, str)
    frame = pd.read_csv(path, dtype=dtype, encoding="utf-8-sig")
    if frame.shape[1] == 1:  # one column: maybe another separator (e.g. Excel's ';')
        header = str(frame.columns[0])
        separator = next((s for s in _CSV_SEPARATORS if s in header), None)
        if separator is not None:
            frame = pd.read_csv(path, dtype=dtype, encoding="utf-8-sig", sep=separator)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    """GeoParquet when the file has ``geo`` metadata, plain Parquet otherwise."""
    metadata = pq.read_schema(path).metadata or {}
    if b"geo" in metadata:
        return gpd.read_parquet(path)
    return pd.read_parquet(path)


def read_table(path: str | Path, text_columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read one input table, choosing the reader by suffix.

    Parameters
    ----------
    path
        A ``.csv``, ``.parquet`` (plain or GeoParquet), ``.geojson``/``.json``,
        ``.gpkg`` or ``.shp`` file.
    text_columns
        Columns read as text from CSV so that ids keep their leading zeros
        (e.g. FIPS ``"01001"``); defaults to :func:`id_columns`. Columns that
        are absent are ignored.

    Returns
    -------
    pandas.DataFrame or geopandas.GeoDataFrame
        A GeoDataFrame for spatial formats and GeoParquet. ``attrs`` records
        how rows are numbered in the file, so validation errors can name
        them (``line N`` for CSV, counting the header as line 1; ``row N`` otherwise).

    Raises
    ------
    InputError
        The file is missing, empty (no bytes or no data rows), has an
        unsupported suffix, or cannot be read.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        raise InputError(
            source, "the pipeline does not read spreadsheet workbooks",
            hint="save the sheet as CSV (UTF-8) with File > Save As, and name that file in "
                 "the config")
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            source,
            f"unsupported file format '{path.suffix or '(no suffix)'}'",
            hint=f"save the table as one of: {', '.join(SUPPORTED_SUFFIXES)}",
        )
    if not path.is_file():
        raise InputError(
            source,
            "file not found" if not path.exists() else "not a file",
            hint="check the path in the config; relative paths in a config are resolved "
                 "from the config file's folder",
        )
    if path.stat().st_size == 0:
        raise InputError(source, "file is empty (0 bytes)", hint="export the table again")

    text_columns = id_columns() if text_columns is None else text_columns
    try:
        if suffix == ".csv":
            frame = _read_csv(path, text_columns)
        elif suffix == ".parquet":
            frame = _read_parquet(path)
        else:
            frame = gpd.read_file(path)
    except Exception as exc:  # any library failure becomes one readable message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "check that the file is complete and really is " + suffix.lstrip(".").upper()
        if isinstance(exc, UnicodeDecodeError):
            hint = "save the file with UTF-8 encoding"
        raise InputError(source, f"cannot read the file: {reason}", hint=hint) from None

    if len(frame) == 0:
        raise InputError(
            source,
            "file has no data rows",
            hint="export the table again, with its rows (only a header was found)",
        )
    frame.attrs[FIRST_ROW_ATTR] = 2 if suffix == ".csv" else 1
    frame.attrs[FIRST_ROW_KIND_ATTR] = "line" if suffix == ".csv" else "row"
    return frame


def _to_contract_names(
    frame: _Frame, source: str, own: ColumnsConfig, columns: ColumnsConfig
) -> _Frame:
    """Rename a table's own column names (``FIPS``) to the run's (``unit_id``)."""
    mapping = {
        mine: theirs
        for field in ColumnsConfig.model_fields
        if (mine := getattr(own, field)) != (theirs := getattr(columns, field))
        and mine in frame.columns
    }
    clash = [theirs for theirs in mapping.values() if theirs in frame.columns
             and theirs not in mapping]
    if clash:
        mine = next(m for m, t in mapping.items() if t == clash[0])
        raise InputError(
            source,
            f"column '{mine}' is mapped to '{clash[0]}', but the file also has a "
            f"'{clash[0]}' column",
            column=clash[0],
            hint=f"rename or drop the file's '{clash[0]}' column, or map it in "
                 "data.table_columns instead",
        )
    return frame.rename(columns=mapping) if mapping else frame


def _load(
    path: str | Path,
    columns: ColumnsConfig | None,
    validate: Callable[..., _Frame],
    *args: Any,
    file_columns: ColumnsConfig | None = None,
    **kwargs: Any,
) -> _Frame:
    """Read ``path`` with its id columns as text and ``validate`` it, named by the path.

    ``file_columns`` are the names this file uses (``data.table_columns``);
    errors name them, and the table comes back with the names of ``columns``.
    """
    columns = columns or ColumnsConfig()
    own = file_columns or columns
    frame = read_table(path, id_columns(own))
    out = validate(frame, str(path), *args, columns=own, **kwargs)
    return _to_contract_names(out, str(path), own, columns)


def load_units(
    path: str | Path,
    columns: ColumnsConfig | None = None,
    file_columns: ColumnsConfig | None = None,
) -> gpd.GeoDataFrame:
    """Read and validate the units table (``file_columns``: its own column names)."""
    return _load(path, columns, validate_units, file_columns=file_columns)


def load_demographics(
    path: str | Path,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
    file_columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Read and validate the demographics table."""
    return _load(path, columns, validate_demographics, unit_ids, file_columns=file_columns)


def load_sales(
    path: str | Path,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
    frequency: str = "MS",
    date_format: str | None = None,
    file_columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Read and validate the sales history, aggregated to ``frequency``.

    ``date_format`` (``data.date_format``) reads non-ISO dates; without it
    only ISO dates are read and ambiguous ones are refused.
    """
    return _load(path, columns, validate_sales, unit_ids, frequency=frequency,
                 date_format=date_format, file_columns=file_columns)


def load_sales_by_segment(
    path: str | Path,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
    frequency: str = "MS",
    date_format: str | None = None,
    file_columns: ColumnsConfig | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The sales history as :func:`load_sales` reads it, and per segment when the file has
    a ``segment`` column (:mod:`territory.features.segments`; else None).

    With segments, each segment's rows are validated on their own and the
    first table is their sum per unit and period.
    """
    columns = columns or ColumnsConfig()
    own = file_columns or columns
    frame = read_table(path, [*id_columns(own), SEGMENT_COL])

    def validate(rows: pd.DataFrame) -> pd.DataFrame:
        out = validate_sales(rows, str(path), unit_ids, columns=own, frequency=frequency,
                             date_format=date_format)
        return _to_contract_names(out, str(path), own, columns)

    if SEGMENT_COL not in frame.columns:
        return validate(frame), None
    by_segment = split_segments(frame, str(path), validate)
    return total_sales(by_segment, columns), by_segment


def load_alignment(
    path: str | Path,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
    file_columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Read and validate a unit-to-territory alignment."""
    return _load(path, columns, validate_alignment, unit_ids, file_columns=file_columns)


def load_reps(
    path: str | Path,
    unit_ids: Iterable[str],
    territory_ids: Iterable[str] | None = None,
    columns: ColumnsConfig | None = None,
    file_columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Read and validate the reps table."""
    return _load(path, columns, validate_reps, unit_ids, territory_ids,
                 file_columns=file_columns)
