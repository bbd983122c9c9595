"""The rolling-origin backtest from training rows that stay on the Dask workers.

:func:`territory.models.backtest.rolling_origin_backtest` refits the
forecaster at each origin on the rows whose target period is at or before
it, and forecasts that origin's rows. With the Dask runner those rows are
held by the workers, one table per partition of units
(:func:`territory.pipelines.dask_runner.worker_features`), and every fit
(the final one and one per origin) needs them again. Kept in the workers'
memory they would sit there (about 4 GB at 42,000 units) next to each fit's
early stopping on the driver, so :func:`spill_tables` has each worker write
its tables to a file in its own local directory and let go of them; every
fit then reads its columns and rows from the files, one partition at a time.

:func:`origin_forecasts` is the backtest's fit and forecast at an origin:
:func:`territory.models.distributed.fit_from_parts` with the row filter
``target_period <= origin`` (so the early-stopping fit and the calibration
are bitwise the local backtest's, and the refit runs on ``lightgbm.dask``
from ``min_rows`` rows on), then each worker forecasts its partition's rows
of that origin. Only those forecasts (units × horizons rows) come to the
driver.
"""

from __future__ import annotations

import copy
import os
import uuid

import pandas as pd

from territory.models.backtest import OriginForecasts, origin_rows_forecasts
from territory.models.distributed import SpilledTable, _per_part, _table, fit_from_parts
from territory.models.forecast import SalesForecaster


def _spill(table: pd.DataFrame, index: int, folder: str | None = None) -> SpilledTable:
    """Write a partition's table to a file (atomically): in ``folder``, which every worker
    reads, or else in this worker's local directory."""
    import distributed

    worker = distributed.get_worker()
    shared = folder is not None
    folder = folder or os.path.join(worker.local_directory, "territory-train-tables")
    os.makedirs(folder, exist_ok=True)
    name = f"part-{index:04d}" if shared else f"part-{uuid.uuid4().hex}"
    path = os.path.join(folder, f"{name}.feather")
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}-{name}")
    frame = table if isinstance(table.index, pd.RangeIndex) and table.index.start == 0 \
        and table.index.step == 1 else table.reset_index(drop=True)
    frame.to_feather(tmp, compression="uncompressed")  # read back fast, columns apart
    os.replace(tmp, path)
    return SpilledTable(path, None if shared else worker.address, len(frame))


def spill_tables(client, futures: list, folder: str | None = None) -> list[SpilledTable]:
    """Each table of ``futures`` written to a file by the worker that holds it.

    ``futures`` is emptied: the workers let go of the tables in memory. ``folder``
    (default: each worker's local directory, read back on that worker) must be one
    every worker can write and read.
    """
    import distributed

    from territory.models.distributed import trim_memory

    spilled = client.map(_spill, futures, range(len(futures)), folder=folder, pure=False)
    distributed.wait(spilled)
    futures.clear()
    out = client.gather(spilled)
    del spilled
    client.run(trim_memory)
    return out


def _remove(part: SpilledTable) -> None:
    try:
        os.remove(part.path)
    except FileNotFoundError:
        pass


def remove_spilled(client, parts: list[SpilledTable]) -> None:
    """Delete the files of :func:`spill_tables` (each on the worker that wrote it)."""
    client.gather(_per_part(client, _remove, parts))


def _forecasts_at(part, est: SalesForecaster, origin, unit_col: str) -> pd.DataFrame:
    """A partition's forecasts of the rows of ``origin``."""
    table = _table(part)
    return origin_rows_forecasts(est, table[table["origin"] == origin], unit_col)


def origin_forecasts(client, parts: list[SpilledTable], template: pd.DataFrame, *,
                     unit_col: str, min_rows: int = 1_000_000,
                     record: list | None = None) -> OriginForecasts:
    """The backtest's fit and forecasts at an origin, from the files ``parts``.

    ``record``, if given, gets the number of rows of each origin's fit.
    """
    def forecasts(estimator: SalesForecaster, origin: pd.Timestamp) -> pd.DataFrame:
        stats: dict = {}
        fit_from_parts(estimator, template, parts=list(parts), client=client,
                       min_rows=min_rows, record=stats, until=origin)
        if record is not None:
            record.append(stats["fit_rows"])
        slim = copy.copy(estimator)  # shipped without its validation table
        slim.__dict__.pop("validation_", None)
        [est_f] = client.scatter([slim], broadcast=True)
        frames = client.gather(_per_part(client, _forecasts_at, parts, est=est_f,
                                         origin=origin, unit_col=unit_col))
        return pd.concat(frames, ignore_index=True)

    return forecasts
