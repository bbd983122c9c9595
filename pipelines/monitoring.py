"""Nightly runs that watch themselves: how earlier forecasts did, kept in the workspace.

The monitoring step of the nightly forecast (and of every backfill date)
finds the forecasts that earlier runs published (``<workspace>/nightly/``
and ``<workspace>/backfill/``, each folder with its ``scores.parquet``,
``alignment.parquet`` and a manifest naming what the model promised),
joins them with the actuals that arrived since, and measures them
(:func:`territory.models.monitoring.realised_accuracy`). The history is
``<workspace>/monitoring/accuracy.parquet``: one row per forecast as-of date,
level, horizon and territory, replaced each time more actuals arrive for
that forecast, written atomically under a lock. Each measurement is also an
MLflow run, ``<run_name>-monitoring-<as_of>``, whose metrics are histories
over the forecasts' as-of dates (realised and promised WAPE, bias, coverage).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from territory.features import drift
from territory.features.errors import InputError
from territory.features.feature_set import FeatureSet
from territory.models import monitoring as mon
from territory.models import tracking
from territory.models.tracking import monitoring as tracking_monitoring
from territory.pipelines import alerts
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import atomic_file
from territory.pipelines.train_files import min_horizon, train_rows

BACKFILL_SUFFIX = "-backfill"
SCORE_COLUMNS = ["as_of", "horizon", "target_period", "forecast", "forecast_lo", "forecast_hi"]


def monitoring_dir(config: RunConfig) -> Path:
    return Path(config.workspace) / "monitoring"


def accuracy_path(config: RunConfig) -> Path:
    """``<workspace>/monitoring/accuracy.parquet``."""
    return monitoring_dir(config) / "accuracy.parquet"


def base_run_name(config: RunConfig) -> str:
    """The run name the nightly forecasts and their backfill share (``demo``, not
    ``demo-backfill``)."""
    return config.run_name.removesuffix(BACKFILL_SUFFIX)


@dataclass(frozen=True)
class Published:
    """One published forecast folder."""

    source: str
    as_of: pd.Timestamp
    folder: Path


def published_forecasts(config: RunConfig, before: pd.Timestamp) -> list[Published]:
    """The nightly and backfill forecasts of this run name made before ``before``."""
    base = base_run_name(config)
    found = []
    for source, name in (("nightly", base), ("backfill", base + BACKFILL_SUFFIX)):
        pattern = re.compile(rf"{re.escape(name)}-(\d{{4}}-\d{{2}}-\d{{2}})")
        root = Path(config.workspace) / source
        for folder in sorted(root.glob(f"{name}-*")) if root.is_dir() else []:
            match = pattern.fullmatch(folder.name)
            if match and (folder / "manifest.json").is_file() \
                    and (folder / "scores.parquet").is_file():
                as_of = pd.Timestamp(match.group(1))
                if as_of < before:
                    found.append(Published(source, as_of, folder))
    return found


def promise(metrics: dict[str, float], horizon: int) -> dict:
    """What the manifest of a scoring run keeps for the monitoring of its forecast."""
    return {"horizon": int(horizon), "promised": mon.promised_accuracy(metrics, horizon)}


def read_accuracy(config: RunConfig) -> pd.DataFrame | None:
    """The accuracy history, or None before the first measurement."""
    path = accuracy_path(config)
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # a damaged table: say which file, and how to rebuild it
        raise InputError(str(path), f"the monitoring table cannot be read ({exc})",
                         hint="delete it; the next nightly run or `territory backfill` "
                              "rebuilds it from the published forecasts") from None


def _already_measured(history: pd.DataFrame | None
                      ) -> dict[tuple, tuple[pd.Timestamp, int, str]]:
    """Per forecast key: the actuals it was last measured with, the months observed and
    the model version of the forecast measured."""
    if history is None or history.empty:
        return {}
    overall = history[history["level"] == "overall"]
    return {(r.run_name, r.source, pd.Timestamp(r.as_of)):
            (pd.Timestamp(r.actuals_through), int(r.months_observed), str(r.model_version))
            for r in overall.itertuples()}


def load_forecasts(config: RunConfig, runs: list[Published], through: pd.Timestamp
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forecast rows of ``runs`` with a target period up to ``through``, each with the
    territory of the alignment it was published with; and their promises."""
    cols, base = config.data.columns, base_run_name(config)
    frames, promises = [], {}
    for run in runs:
        manifest = json.loads((run.folder / "manifest.json").read_text())
        scores = pd.read_parquet(run.folder / "scores.parquet",
                                 columns=[cols.unit_col, *SCORE_COLUMNS],
                                 filters=[("target_period", "<=", through)])
        alignment_file = run.folder / "alignment.parquet"
        if alignment_file.is_file():
            aligned = pd.read_parquet(alignment_file, columns=[cols.unit_col, cols.territory_col])
            territory = aligned.set_index(cols.unit_col)[cols.territory_col].astype(str)
            scores["territory_id"] = territory.reindex(scores[cols.unit_col]).to_numpy()
        else:
            scores["territory_id"] = None
        key = (base, run.source, run.as_of)
        frames.append(scores.assign(run_name=base, source=run.source, as_of=run.as_of,
                                    model_version=str(manifest.get("model", {}).get("version"))))
        promises[key] = manifest.get("monitoring", {}).get("promised", {})
    if not frames:
        return pd.DataFrame(columns=[*mon.KEYS, cols.unit_col, *SCORE_COLUMNS]), \
            mon.promise_table({})
    return pd.concat(frames, ignore_index=True), mon.promise_table(promises)


def measure(config: RunConfig, sales: pd.DataFrame, through: pd.Timestamp) -> pd.DataFrame:
    """Realised accuracy of the earlier forecasts that have actuals up to ``through`` and
    were not yet measured with them (the rows that change the history)."""
    through = pd.Timestamp(through)
    done = _already_measured(read_accuracy(config))
    runs = []
    for run in published_forecasts(config, through):
        manifest = json.loads((run.folder / "manifest.json").read_text())
        seen = done.get((base_run_name(config), run.source, run.as_of))
        if seen is not None and seen[2] == str(manifest.get("model", {}).get("version")):
            horizon = manifest.get("monitoring", {}).get("horizon")
            if seen[0] >= through or (horizon is not None and seen[1] >= horizon):
                continue  # measured with these actuals, or every horizon has its actual
        runs.append(run)
    forecasts, promises = load_forecasts(config, runs, through)
    if forecasts.empty:
        return pd.DataFrame(columns=mon.ACCURACY_COLUMNS)
    sales = sales[sales[config.data.columns.time_col] <= through]
    return mon.realised_accuracy(forecasts, sales, config.data.columns, through, promises)


def save_accuracy(config: RunConfig, update: pd.DataFrame) -> pd.DataFrame:
    """Merge ``update`` into the history and write it atomically, under the table's lock
    (two runs never lose each other's rows); returns the new history."""
    path = accuracy_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / ".accuracy.lock"), timeout=config.schedule.lock_timeout_s):
        history = mon.merge_history(read_accuracy(config), update)
        with atomic_file(path) as tmp:
            history.to_parquet(tmp, index=False)
    return history


def history_view(config: RunConfig, update: pd.DataFrame) -> pd.DataFrame:
    """This run name's history as it will be once ``update`` is saved (report and rules)."""
    history = mon.merge_history(read_accuracy(config), update)
    return history[history["run_name"] == base_run_name(config)].reset_index(drop=True)


def backfill_horizons(config: RunConfig, as_of_dates) -> pd.DataFrame:
    """Per horizon, realised against promised accuracy pooled over the backfill forecasts
    as of ``as_of_dates`` (:func:`territory.models.monitoring.horizon_summary`)."""
    history = read_accuracy(config)
    if history is None:
        return mon.horizon_summary(pd.DataFrame(columns=mon.ACCURACY_COLUMNS))
    dates = pd.DatetimeIndex(pd.to_datetime(list(as_of_dates)))
    rows = history[(history["run_name"] == base_run_name(config))
                   & (history["source"] == "backfill")
                   & pd.to_datetime(history["as_of"]).isin(dates)]
    return mon.horizon_summary(rows)


def log_accuracy(config: RunConfig, history: pd.DataFrame, as_of: pd.Timestamp) -> str | None:
    """One MLflow run per measurement: the overall and per-horizon realised and promised
    accuracy as histories over the forecasts' as-of dates, and the overall and per-horizon
    rows as an artifact (the workspace table has the territories too)."""
    overall = mon.overall_history(history)
    if overall.empty:
        return None
    series: dict[str, list] = {}
    for metric in ("wape", "bias", "coverage", "territory_wape", "promised_wape",
                   "promised_coverage"):
        series[f"realised_{metric}" if not metric.startswith("promised") else metric] = \
            list(zip(overall["as_of"], overall[metric], strict=True))
    by_horizon = history[(history["level"] == "horizon")]
    for h, rows in by_horizon.groupby("horizon"):
        rows = rows.sort_values(["as_of", "source"]).drop_duplicates("as_of", keep="last")
        series[f"realised_wape_h{int(h):02d}"] = list(zip(rows["as_of"], rows["wape"],
                                                          strict=True))
    tracking.connect(config.tracking.tracking_uri, config.workspace, config.tracking.experiment)
    name = f"{base_run_name(config)}-monitoring-{pd.Timestamp(as_of):%Y-%m-%d}"
    with tracking.training_run(name, {"flow": "monitoring",
                                      "as_of": f"{pd.Timestamp(as_of):%Y-%m-%d}"}) as run_id:
        tracking_monitoring.log_metric_history(series)
        latest = overall.iloc[-1]
        tracking.log_metrics({"latest_realised_wape": latest["wape"],
                              "latest_promised_wape": latest["promised_wape"],
                              "forecasts_measured": float(len(overall))})
        summary = history[history["level"].isin(["overall", "horizon"])]
        tracking.log_table(summary.astype({"horizon": "float"}), "accuracy.csv")
    return run_id


# --- Drift: the champion's training data against this run's inputs -----------------------


SEASON = "season_position"  # of a reference row's origin: month of year, quarter, week
MIN_SEASON_ROWS = 100


def season_position(origins, config: RunConfig) -> np.ndarray:
    """Each origin's place in the year (0 .. season-1): month, quarter or week of the year."""
    periods = pd.DatetimeIndex(origins).to_period(config.features.frequency.split("-")[0][0])
    return np.asarray(periods.asi8 % max(config.features.season, 1))


def drift_tables(config: RunConfig, features: FeatureSet, training: bool
                 ) -> dict[str, pd.DataFrame]:
    """The feature rows drift is measured on: the sales features of one row per unit and
    origin (``forecast``: every training origin, tagged with its place in the year, or this
    run's origin) and the market table (``market``). Calendar features (month, trend index)
    are left out: they move by design."""
    target = config.data.columns.target_col
    if training:  # the training rows, of one horizon (read from a Dask build's files)
        unit = config.data.columns.unit_col
        names = features.train_table.columns
        rows = train_rows(features, unit, [c for c in names if c.startswith(f"{target}_")
                                           or c == "origin"], min_horizon(features))
    else:
        table = features.score_table
        rows = table[table["horizon"] == table["horizon"].min()]
    forecast = rows[[c for c in rows.columns if c.startswith(f"{target}_")]]
    if training:
        forecast = forecast.assign(**{SEASON: season_position(rows["origin"], config)})
    return {"forecast": forecast, "market": features.market_table}


def same_season(reference: drift.Reference, config: RunConfig, as_of: pd.Timestamp
                ) -> drift.Reference:
    """The reference with its sales features from training origins at the same place in the
    year as ``as_of`` (December against Decembers: seasonality is not drift), when it holds
    at least ``MIN_SEASON_ROWS`` of them."""
    table = reference.tables.get("forecast")
    if table is None or SEASON not in table:
        return reference
    same = table[table[SEASON] == season_position([as_of], config)[0]]
    chosen = same if len(same) >= MIN_SEASON_ROWS else table
    tables = {**reference.tables, "forecast": chosen.drop(columns=SEASON)}
    columns = {**reference.columns,
               "forecast": {k: v for k, v in reference.columns["forecast"].items()
                            if k != SEASON}}
    return drift.Reference(reference.as_of, tables, columns, reference.units, reference.quality)


def schema_tables(inputs) -> dict[str, pd.DataFrame | None]:
    """The input tables whose columns are checked (not sampled): sales, demographics, units."""
    units = pd.DataFrame(inputs.units.drop(columns="geometry", errors="ignore"))
    return {"sales": inputs.sales, "demographics": inputs.demographics, "units": units}


def quality_of(config: RunConfig, inputs, as_of: pd.Timestamp) -> dict[str, float]:
    """:func:`territory.features.drift.data_quality` of the run's sales up to ``as_of``."""
    unit_ids = inputs.units[config.data.columns.unit_col].to_numpy()
    return drift.data_quality(inputs.sales, unit_ids, config.data.columns,
                              config.features.season, as_of, config.features.frequency,
                              inputs.gaps.zero_coded)


def build_reference(config: RunConfig, inputs, features: FeatureSet) -> drift.Reference:
    """The drift reference of a training run (kept with it in MLflow)."""
    mc = config.monitoring
    return drift.build_reference(
        drift_tables(config, features, training=True),
        inputs.units[config.data.columns.unit_col].to_numpy(),
        quality_of(config, inputs, features.as_of), features.as_of, mc.reference_rows,
        mc.seed, schema_tables(inputs))


def write_reference(reference: drift.Reference, folder: Path) -> None:
    """``reference.json`` (columns, units, quality) and one parquet file per sampled table."""
    for name, frame in reference.tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "reference.json").write_text(json.dumps({
        "as_of": reference.as_of, "tables": list(reference.tables),
        "columns": reference.columns, "units": reference.units, "quality": reference.quality}))


def read_reference(folder: Path) -> drift.Reference:
    meta = json.loads((folder / "reference.json").read_text())
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in meta["tables"]}
    return drift.Reference(meta["as_of"], tables, meta["columns"], meta["units"],
                           meta["quality"])


def log_reference(config: RunConfig, inputs, features: FeatureSet) -> None:
    """In the active training run: log the drift reference of its training data."""
    if not config.monitoring.enabled:
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_reference(build_reference(config, inputs, features), Path(tmp))
        tracking_monitoring.log_reference(Path(tmp))


def load_reference(config: RunConfig, run_id: str | None) -> drift.Reference | None:
    """The drift reference of the model trained in ``run_id``; None when it has none."""
    if run_id is None:
        return None
    tracking.connect(config.tracking.tracking_uri, config.workspace, config.tracking.experiment)
    with tempfile.TemporaryDirectory() as tmp:
        folder = tracking_monitoring.download_reference(run_id, Path(tmp))
        return read_reference(folder) if folder is not None else None


@dataclass
class InputCheck:
    """This run's inputs against the champion's training data."""

    reference_as_of: str
    drift: pd.DataFrame  # territory.features.drift.DRIFT_COLUMNS, largest PSI first
    schema: pd.DataFrame  # territory.features.drift.SCHEMA_COLUMNS
    quality: dict[str, float]  # now
    reference_quality: dict[str, float]  # at training


def check_inputs(config: RunConfig, inputs, features: FeatureSet,
                 reference: drift.Reference) -> InputCheck:
    """Drift per feature, schema changes and data quality against ``reference``."""
    mc = config.monitoring
    current = drift_tables(config, features, training=False)
    reference = same_season(reference, config, features.as_of)
    table = drift.drift_table(reference, current, mc.reference_rows, mc.seed)
    schema = drift.schema_changes(reference, {**schema_tables(inputs), **current},
                                  inputs.units[config.data.columns.unit_col].to_numpy())
    return InputCheck(reference.as_of, table, schema, quality_of(config, inputs, features.as_of),
                      reference.quality)


# --- The monitoring step ---------------------------------------------------------------------


@dataclass
class Watch:
    """What the monitoring step of one run found (records; words come in the report)."""

    as_of: pd.Timestamp
    accuracy: pd.DataFrame  # rows measured now (they replace those keys in the history)
    history: pd.DataFrame  # the history once they are saved
    inputs: InputCheck | None = None  # None: the champion has no drift reference
    notes: list[str] = field(default_factory=list)  # why inputs were not checked
    accuracy_note: str | None = None  # why earlier forecasts were not measured
    alerts: list[mon.Alert] = field(default_factory=list)  # the rules that fired


def accuracy_watch(config: RunConfig, sales: pd.DataFrame, as_of: pd.Timestamp) -> Watch:
    """Measure the earlier forecasts with the actuals up to ``as_of`` (writes nothing)."""
    update = measure(config, sales, as_of)
    return Watch(pd.Timestamp(as_of), update, history_view(config, update))


def watch(config: RunConfig, inputs, features: FeatureSet, model_run_id: str | None
          ) -> Watch | None:
    """The monitoring step of a scoring run: earlier forecasts measured, inputs checked
    against the training data of the model that scored (its run ``model_run_id``).

    Reads the published folders, the history and the reference; writes nothing
    (:func:`publish_watch` does, once the run's own outputs are in place). None
    with ``monitoring.enabled`` false.
    """
    if not config.monitoring.enabled:
        return None
    try:
        found = accuracy_watch(config, inputs.sales, features.as_of)
    except InputError as exc:  # a damaged history must not stop the forecast: say so
        empty = pd.DataFrame(columns=mon.ACCURACY_COLUMNS)
        found = Watch(pd.Timestamp(features.as_of), empty, empty, accuracy_note=str(exc))
    reference = load_reference(config, model_run_id)
    if reference is None:
        found.notes.append("The model that scored keeps no copy of its training data's "
                           "profile (it was trained before monitoring), so input drift is not "
                           "measured; the next retrain adds it.")
    else:
        found.inputs = check_inputs(config, inputs, features, reference)
    found.alerts = alerts.evaluate(config, found.history, found.inputs)
    return found


def publish_watch(config: RunConfig, found: Watch | None) -> dict:
    """Save the accuracy history and log the measurement to MLflow."""
    if found is None:
        return {}
    history = save_accuracy(config, found.accuracy) if len(found.accuracy) else found.history
    run_id = log_accuracy(config, history, found.as_of) if len(found.accuracy) else None
    return {"accuracy": str(accuracy_path(config)), "mlflow_run_id": run_id,
            "forecasts_measured": int(found.accuracy[mon.KEYS].drop_duplicates().shape[0])
            if len(found.accuracy) else 0}
