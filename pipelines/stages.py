"""The pipeline's stages as plain functions over typed config.

Each stage loads, calls pure code in ``features``/``models``, and returns a
small dataclass. ``territory.pipelines.flows`` wraps them as Prefect tasks; tests can
call them directly.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from territory.features import io as fio
from territory.features.build import (
    build_forecast_table,
    build_market_table,
    training_origins,
)
from territory.features.errors import InputError
from territory.features.panel import make_panel
from territory.features.spatial import AdjacencyGraph, build_adjacency, projected_xy
from territory.features.temporal import rolling_name
from territory.models import backtest
from territory.models import recommend as rec
from territory.models.forecast import SalesForecaster, forecaster_from_config
from territory.models.potential import PotentialEstimator, describe_drivers
from territory.models.territories import TerritoryDesigner, evaluate_alignment
from territory.models.territory_planning import choose_n_territories, design_regions
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import file_sha256

PERIODS_PER_YEAR = {"MS": 12, "W-MON": 52, "QS": 4}


@dataclass
class Inputs:
    units: gpd.GeoDataFrame
    sales: pd.DataFrame
    demographics: pd.DataFrame | None
    alignment: pd.DataFrame | None
    reps: pd.DataFrame | None
    file_hashes: dict[str, str]


@dataclass
class FeatureSet:
    graph: AdjacencyGraph
    xy: np.ndarray
    as_of: pd.Timestamp
    train_table: pd.DataFrame
    score_table: pd.DataFrame
    market_table: pd.DataFrame
    annual_sales: pd.Series
    workload: pd.Series


@dataclass
class Trained:
    forecaster: SalesForecaster
    potential: PotentialEstimator
    metrics: dict[str, float]
    validation: pd.DataFrame
    evaluation_windows: str
    backtest: backtest.BacktestResult | None = None


@dataclass
class Design:
    proposed: pd.Series
    current: pd.Series | None
    summary: pd.DataFrame
    overall: dict
    current_overall: dict | None
    current_summary: pd.DataFrame | None
    violations: list[str]
    n_territories: int | None = None  # K used (resolved when the config says auto)
    auto_k: str | None = None  # why that K, when chosen automatically
    region: pd.Series | None = None  # unit -> region, when territories.regions is set
    region_summary: pd.DataFrame | None = None
    diagnosis: list[str] = field(default_factory=list)  # why balance violations remain


@dataclass
class Scores:
    scores: pd.DataFrame
    unit_totals: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)


def load_inputs(config: RunConfig) -> Inputs:
    """Read and validate every input file named in the config."""
    data, cols = config.data, config.data.columns
    units = fio.load_units(data.units, cols)
    unit_ids = units[cols.unit_col].to_numpy()
    sales = fio.load_sales(data.sales, unit_ids, cols, config.features.frequency)
    demographics = (
        fio.load_demographics(data.demographics, unit_ids, cols) if data.demographics else None
    )
    alignment = fio.load_alignment(data.alignment, unit_ids, cols) if data.alignment else None
    territory_ids = (
        alignment[cols.territory_col].unique() if alignment is not None else None
    )
    reps = fio.load_reps(data.reps, unit_ids, territory_ids, cols) if data.reps else None
    hashes = {
        name: file_sha256(Path(path))
        for name in ("units", "sales", "demographics", "alignment", "reps")
        if (path := getattr(data, name)) is not None and Path(path).is_file()
    }
    return Inputs(units, sales, demographics, alignment, reps, hashes)


def build_features(config: RunConfig, inputs: Inputs) -> FeatureSet:
    """Panel, adjacency, forecast tables and market table as of the as-of date."""
    cols, feats = config.data.columns, config.features
    if "mean" not in feats.rolling_stats:
        raise InputError(
            "config", "rolling_stats must include 'mean' (it sets each unit's scale)",
            column="features.rolling_stats",
        )
    unit_ids = inputs.units[cols.unit_col].to_numpy()
    as_of = pd.Timestamp(config.as_of) if config.as_of else inputs.sales[cols.time_col].max()
    graph = build_adjacency(inputs.units, cols.unit_col, feats.contiguity,
                            config.data.projected_crs)
    xy = projected_xy(inputs.units, config.data.projected_crs)
    panel = make_panel(inputs.sales, unit_ids, feats.frequency, cols, end=as_of)
    periods = pd.DatetimeIndex(sorted(panel[cols.time_col].unique()))
    demo = inputs.demographics
    train = build_forecast_table(
        panel, feats, config.forecast.horizon, training_origins(periods, feats), demo, graph, cols
    )
    score = build_forecast_table(panel, feats, config.forecast.horizon, [periods[-1]], demo, graph,
                                 cols)

    year = PERIODS_PER_YEAR[feats.frequency]
    recent = panel[panel[cols.time_col] > periods[-1] - year * pd.tseries.frequencies.to_offset(
        feats.frequency)]
    by_unit = recent.groupby(cols.unit_col)
    observed = by_unit[cols.target_col].count()
    annual = (by_unit[cols.target_col].sum(min_count=1) * year / observed.clip(lower=1)).where(
        observed >= year // 2
    )
    wl_col = config.territories.workload_column
    if wl_col and wl_col in panel.columns:
        workload = by_unit[wl_col].mean().fillna(0.0)
    else:
        workload = pd.Series(1.0, index=observed.index)

    market = market_features(config, inputs, graph)
    return FeatureSet(graph, xy, as_of, train, score, market,
                      annual.reindex(unit_ids), workload.reindex(unit_ids).fillna(0.0))


def market_features(config: RunConfig, inputs: Inputs, graph: AdjacencyGraph) -> pd.DataFrame:
    """Market features per unit for the potential model: demographics, neighbours, size."""
    cols = config.data.columns
    unit_ids = inputs.units[cols.unit_col].to_numpy()
    crs = config.data.projected_crs or inputs.units.estimate_utm_crs()
    area_km2 = pd.Series(inputs.units.geometry.to_crs(crs).area.to_numpy() / 1e6,
                         index=pd.Index(unit_ids, name=cols.unit_col), name="unit_area_km2")
    if inputs.demographics is not None:
        market = build_market_table(inputs.demographics, graph, cols,
                                    config.features.demographic_columns)
    else:
        market = pd.DataFrame(index=area_km2.index)
    if "area_km2" not in market.columns:
        market = market.join(area_km2)
    return market.reindex(unit_ids)


def train_models(config: RunConfig, features: FeatureSet, fit_forecaster=None) -> Trained:
    """Fit the forecaster and the potential model; score them out of sample.

    ``fit_forecaster(estimator, table)`` replaces ``estimator.fit(table)`` for
    the main fit (the Dask runner passes :func:`territory.models.distributed.fit_distributed`).

    The forecaster is scored on its validation window and, unless
    ``forecast.backtest.windows`` is 0, by a rolling-origin backtest that
    refits it at each origin; the backtest windows then define which runs
    the promotion gate may compare.
    """
    fc, cols = config.forecast, config.data.columns
    scale_col = rolling_name(cols.target_col, "mean", max(config.features.rolling_windows))

    def make_forecaster() -> SalesForecaster:
        return forecaster_from_config(fc, scale_col, cols.unit_col, f"{cols.target_col}_")

    forecaster = (fit_forecaster(make_forecaster(), features.train_table) if fit_forecaster
                  else make_forecaster().fit(features.train_table))
    pc = config.potential

    def make_potential() -> PotentialEstimator:
        return PotentialEstimator(
            quantile=pc.quantile, n_estimators=pc.n_estimators, learning_rate=pc.learning_rate,
            num_leaves=pc.num_leaves, min_child_samples=pc.min_child_samples,
            feature_fraction=pc.feature_fraction, random_state=pc.seed,
        )

    potential = make_potential().fit(features.market_table, features.annual_sales.to_numpy())

    val = forecaster.validation_
    metrics = {
        "valid_wape": backtest.wape(val["actual"], val["forecast"]),
        "valid_mae": backtest.mae(val["actual"], val["forecast"]),
        "valid_rmse": backtest.rmse(val["actual"], val["forecast"]),
        "valid_bias": backtest.bias(val["actual"], val["forecast"]),
        "valid_wape_seasonal_naive": backtest.wape(val["actual"], val["seasonal_naive"]),
        "valid_coverage": backtest.coverage(val["actual"], val["forecast_lo"],
                                            val["forecast_hi"]),
        "best_iteration": float(forecaster.best_iteration_),
    }
    for h, grp in val.groupby("horizon"):
        metrics[f"valid_wape_h{int(h):02d}"] = backtest.wape(grp["actual"], grp["forecast"])
    windows = f"{val['target_period'].min():%Y-%m}..{val['target_period'].max():%Y-%m}"
    metrics.update(backtest.potential_cross_validation(
        make_potential, features.market_table, features.annual_sales.to_numpy(), pc.quantile,
        n_folds=3, seed=pc.seed))

    result = None
    if fc.backtest.windows > 0:
        panel = backtest.panel_from_table(features.train_table, config.features.frequency, cols)
        result = backtest.rolling_origin_backtest(
            panel, config.features, fc.horizon, make_forecaster, n_windows=fc.backtest.windows,
            step=fc.backtest.step, columns=cols, baselines=fc.backtest.baselines,
            table=features.train_table,
        )
        metrics.update(result.summary())
        windows = result.windows_key
    return Trained(forecaster, potential, metrics, val, windows, result)


def score_units(config: RunConfig, features: FeatureSet, trained: Trained) -> Scores:
    """Scores per (unit, horizon) as in DESIGN.md, plus per-unit horizon totals."""
    cols = config.data.columns
    table = features.score_table
    point, lo, hi = trained.forecaster.predict_interval(table)
    per_year = PERIODS_PER_YEAR[config.features.frequency]
    annual_potential = pd.Series(
        trained.potential.predict(features.market_table), index=features.market_table.index
    )
    drivers = describe_drivers(trained.potential.contributions(features.market_table))
    unit_index = table[cols.unit_col].to_numpy()
    potential_per_period = annual_potential.reindex(unit_index).to_numpy() / per_year
    scores = pd.DataFrame(
        {
            cols.unit_col: unit_index,
            "as_of": features.as_of,
            "horizon": table["horizon"].to_numpy(),
            "target_period": table["target_period"].to_numpy(),
            "forecast": point,
            "forecast_lo": lo,
            "forecast_hi": hi,
            "potential": potential_per_period,
        }
    )
    scores["white_space"] = scores["potential"] - scores["forecast"]
    scores["drivers"] = drivers.reindex(unit_index).to_numpy()
    totals = scores.groupby(cols.unit_col).agg(
        forecast=("forecast", "sum"), forecast_lo=("forecast_lo", "sum"),
        forecast_hi=("forecast_hi", "sum"), potential=("potential", "sum"),
    )
    totals["drivers"] = drivers.reindex(totals.index)
    forecast_drivers = trained.forecaster.drivers(table)  # e.g. "last 3 months +12%"
    scores["forecast_drivers"] = forecast_drivers.reindex(unit_index).to_numpy()
    totals["forecast_drivers"] = forecast_drivers.reindex(totals.index)
    # A unit without recent history still gets its potential; its forecast is 0.
    totals["forecast"] = totals["forecast"].fillna(0.0)
    metrics = {}
    if config.data.truth is not None:
        truth = pd.read_parquet(config.data.truth).set_index(cols.unit_col)
        if "true_potential" in truth:
            est = annual_potential.reindex(truth.index).to_numpy()
            metrics["potential_spearman_vs_truth"] = backtest.spearman(
                est, truth["true_potential"].to_numpy())
            metrics["potential_wape_vs_truth"] = backtest.wape(truth["true_potential"], est)
    return Scores(scores, totals, metrics)


def unit_measures(unit_ids: np.ndarray, features: FeatureSet, scores: Scores
                  ) -> dict[str, np.ndarray]:
    """What a territory can be balanced on, per unit in ``unit_ids`` order."""
    totals = scores.unit_totals.reindex(unit_ids)
    return {
        "potential": totals["potential"].fillna(0.0).to_numpy(),
        "forecast": totals["forecast"].fillna(0.0).to_numpy(),
        "workload": features.workload.to_numpy(),
        "units": np.ones(len(unit_ids)),
    }


def design_territories(
    config: RunConfig, inputs: Inputs, features: FeatureSet, scores: Scores
) -> Design:
    """Propose an alignment balanced on the configured attributes."""
    cols, tc = config.data.columns, config.territories
    unit_ids = inputs.units[cols.unit_col].to_numpy()
    columns = unit_measures(unit_ids, features, scores)
    attributes = pd.DataFrame({a: columns[a] for a in tc.balance_attributes})
    n_terr, auto = tc.n_territories, None
    if n_terr == "auto":
        auto = choose_n_territories(
            features.xy, features.graph.matrix, attributes, workload=columns["workload"],
            rep_capacity=tc.rep_capacity, potential=columns["potential"],
            potential_per_rep=tc.potential_per_rep, tolerance=tc.tolerance,
            max_extra=tc.auto_max_extra, seed=tc.seed, unit_ids=unit_ids,
            workload_label=tc.workload_column or "workload",
            designer_params={"time_limit_s": tc.time_limit_s, "max_restarts": tc.max_restarts,
                             "max_chains": tc.max_chains},
        )
        n_terr = auto.n_territories

    current = None
    current_codes = None
    if inputs.alignment is not None:
        current = inputs.alignment.set_index(cols.unit_col)[cols.territory_col].reindex(unit_ids)
        current_ids = sorted(current.dropna().unique())
        current_codes = pd.Categorical(current, categories=current_ids).codes

    fixed = None
    position = {u: i for i, u in enumerate(unit_ids)}
    rep_terr_ids: list[str] | None = None
    if (
        tc.keep_rep_homes and inputs.reps is not None and "home_unit_id" in inputs.reps
        and inputs.reps["home_unit_id"].notna().all()
        and len(inputs.reps) == n_terr
    ):
        reps = inputs.reps.sort_values(cols.territory_col)
        fixed = {k: position[str(h)] for k, h in enumerate(reps["home_unit_id"])}
        rep_terr_ids = list(reps[cols.territory_col].astype(str))

    start_labels = None
    if tc.mode == "rebalance":
        if current_codes is None or (current_codes < 0).any():
            raise InputError(
                "config", "rebalance needs a current alignment that covers every unit",
                column="territories.mode", hint="set data.alignment or use mode: fresh",
            )
        if len(np.unique(current_codes)) != tc.n_territories:
            raise InputError(
                "config",
                f"rebalance keeps the current {len(np.unique(current_codes))} territories "
                f"but n_territories is {tc.n_territories}",
                column="territories.n_territories",
            )
        start_labels = current_codes
        rep_terr_ids = list(pd.Categorical(current).categories)
        if fixed is not None:
            reps = inputs.reps.set_index(cols.territory_col)
            fixed = {k: position[str(reps.loc[t, "home_unit_id"])] for k, t in
                     enumerate(rep_terr_ids)}

    if auto is not None and fixed is None:  # the auto-K design is already this one
        labels, centres, report = auto.labels, auto.centres, auto.report
    else:
        designer = TerritoryDesigner(
            n_territories=n_terr, tolerance=tc.tolerance, seed=tc.seed,
            time_limit_s=tc.time_limit_s, max_restarts=tc.max_restarts, max_chains=tc.max_chains,
        ).fit(
            features.xy, features.graph.matrix, attributes, unit_ids=unit_ids,
            current_labels=start_labels, fixed_centres=fixed,
        )
        labels, centres, report = designer.labels_, designer.centres_, designer.report_
    if rep_terr_ids is not None:
        names = np.asarray(rep_terr_ids, dtype=object)[labels]
    elif current is not None:
        names = rec.match_territory_ids(labels, current.to_numpy(), columns["potential"])
    else:
        names = np.asarray([f"T{k + 1:02d}" for k in range(n_terr)], dtype=object)[labels]
    proposed = pd.Series(names, index=unit_ids, name="proposed_territory")

    current_overall = current_summary = None
    if current_codes is not None and (current_codes >= 0).all():
        rep_current = evaluate_alignment(
            current_codes, features.xy, features.graph.matrix, attributes,
            tolerances={a: tc.tolerance for a in attributes},
        )
        current_overall, current_summary = rep_current.overall, rep_current.territories
        current_summary["territory"] = list(pd.Categorical(current).categories)
    summary = report.territories.copy()
    summary["territory"] = [str(names[labels == k][0]) if (labels == k).any() else f"empty-{k}"
                            for k in range(len(summary))]
    overall = dict(report.overall)
    if current is not None:
        movement = rec.movement_by_territory(current, proposed).set_index("territory")
        summary = summary.drop(columns=["moved_in", "moved_out"], errors="ignore").join(
            movement, on="territory")
        overall.update(rec.disruption(current, proposed,
                                      pd.Series(columns["potential"], index=unit_ids)))
    violations = list(report.violations)
    region = region_summary = None
    if tc.regions is not None and np.bincount(labels, minlength=n_terr).min() == 0:
        violations.append("regions were not designed: the alignment has an empty territory")
    elif tc.regions is not None:
        if tc.regions > n_terr:
            raise InputError("config", f"regions ({tc.regions}) exceeds the {n_terr} territories",
                             column="territories.regions")
        hier = design_regions(
            features.xy, features.graph.matrix, attributes, labels, tc.regions,
            tolerance=tc.region_tolerance, seed=tc.seed, centres=centres, unit_ids=unit_ids,
            territory_names=summary["territory"].to_numpy(),
        )
        region_names = hier.regions["name"].to_numpy()
        region = pd.Series(region_names[hier.unit_region], index=unit_ids, name="region")
        summary.insert(2, "region", region_names[hier.territory_region])
        region_summary = hier.report.territories.assign(territories=hier.regions["territories"])
        violations += [f"region {v}" for v in hier.report.violations]
        overall["n_regions"] = tc.regions
        overall["region_max_abs_deviation"] = max(
            hier.report.overall[f"max_abs_deviation_{a}"] for a in attributes)
        overall["region_contiguous"] = hier.report.overall["contiguous"]
    overall["n_territories"] = n_terr
    return Design(proposed, current, summary, overall, current_overall,
                  current_summary, violations, n_terr, auto.explanation if auto else None,
                  region, region_summary, list(report.diagnosis))


@dataclass
class Recommendations:
    units: pd.DataFrame
    territories: pd.DataFrame
    reps: pd.DataFrame | None
    opportunities: pd.DataFrame
    moves: pd.DataFrame


def recommendations(
    config: RunConfig, inputs: Inputs, features: FeatureSet, scores: Scores, design: Design
) -> Recommendations:
    """Per unit, territory and rep recommendations, white space and moves."""
    cols = config.data.columns
    current = design.current if design.current is not None else design.proposed
    totals = scores.unit_totals
    if "name" in inputs.units:
        totals = totals.join(inputs.units.set_index(cols.unit_col)["name"])
    units = rec.unit_recommendations(totals, current, design.proposed)
    units.index.name = cols.unit_col
    territories = rec.territory_recommendations(units, design.summary)
    reps = None
    if inputs.reps is not None:
        xy = pd.DataFrame(features.xy, columns=["x", "y"],
                          index=inputs.units[cols.unit_col].to_numpy())
        reps = rec.rep_changes(inputs.reps, units, features.workload, xy,
                               territory_col=cols.territory_col, rep_col=cols.rep_col)
    uid = design.proposed.index.to_numpy()
    moves = rec.moves_table(uid, current.reindex(uid).to_numpy(), design.proposed.to_numpy(),
                            totals["potential"].reindex(uid).to_numpy(), cols.unit_col)
    return Recommendations(units, territories, reps, rec.white_space_opportunities(units), moves)


def manifest(config: RunConfig, inputs: Inputs, run_id: str | None, started: float) -> dict:
    """Provenance of one run: config hash, input hashes, versions, MLflow run id."""
    packages = ["territory", "lightgbm", "mlflow", "prefect", "pandas", "scikit-learn",
                "geopandas", "libpysal"]
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "config_hash": config.fingerprint(),
        "config": json.loads(config.model_dump_json()),
        "input_hashes": inputs.file_hashes,
        "versions": {"python": platform.python_version(), **versions},
        "mlflow_run_id": run_id,
        "wall_time_s": round(time.time() - started, 2),
    }


# --- Orchestration helpers: cache keys, run keys, the nightly design, backfill accuracy ---

FEATURE_CODE = ("features", "pipelines/stages.py")


def _code_fingerprint() -> str:
    """SHA-256 of the feature code, so a code change invalidates cached features."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for entry in FEATURE_CODE:
        path = root / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def features_cache_key(config: RunConfig, file_hashes: dict[str, str]) -> str:
    """Cache key of :func:`build_features`: input file hashes, the config it reads, the code.

    Only the parts of the config that change the feature set take part, so
    retuning the forecaster or the territory scenario reuses the features.
    DataFrames are never hashed: the files they come from are.
    """
    relevant = {
        "as_of": config.as_of,
        # file contents count through their hashes, not their paths
        "data": config.data.model_dump(mode="json", include={"projected_crs", "columns"}),
        "features": config.features.model_dump(mode="json"),
        "horizon": config.forecast.horizon,
        "workload_column": config.territories.workload_column,
        "inputs": dict(sorted(file_hashes.items())),
        "code": _code_fingerprint(),
    }
    payload = json.dumps(relevant, sort_keys=True, default=str)
    return "features-" + hashlib.sha256(payload.encode()).hexdigest()


def resolved_as_of(config: RunConfig, inputs: Inputs) -> pd.Timestamp:
    """The configured as-of date, or the last period of the sales history."""
    if config.as_of:
        return pd.Timestamp(config.as_of)
    return pd.Timestamp(inputs.sales[config.data.columns.time_col].max())


def run_key(config: RunConfig, file_hashes: dict[str, str], as_of: pd.Timestamp,
            kind: str) -> str:
    """Identity of a tracked run: same inputs, config and as-of date give the same key.

    A re-run with the same key reuses the tracked run instead of registering a
    duplicate model version. Settings that do not change results (progress
    display, schedules, the runner) are left out.
    """
    cfg = config.model_dump(mode="json", exclude={"progress", "schedule", "runner", "dask"})
    payload = json.dumps({"kind": kind, "as_of": f"{as_of:%Y-%m-%d}", "config": cfg,
                          "inputs": dict(sorted(file_hashes.items()))}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def current_design(
    config: RunConfig, inputs: Inputs, features: FeatureSet, scores: Scores
) -> Design:
    """The current alignment as a :class:`Design` (nightly runs recommend, they don't redesign).

    Proposed equals current, so there are no moves; the summary holds today's
    balance, compactness and contiguity of each territory.
    """
    cols, tc = config.data.columns, config.territories
    if inputs.alignment is None:
        raise InputError("config", "the nightly forecast needs the current alignment",
                         column="data.alignment",
                         hint="set data.alignment, or run the design flow for a fresh design")
    unit_ids = inputs.units[cols.unit_col].to_numpy()
    current = inputs.alignment.set_index(cols.unit_col)[cols.territory_col].reindex(unit_ids)
    if current.isna().any():
        missing = list(current.index[current.isna()][:5])
        raise InputError(str(config.data.alignment), "units without a territory",
                         column=cols.territory_col, rows=missing,
                         hint="assign every unit to a territory in the alignment file")
    columns = unit_measures(unit_ids, features, scores)
    attributes = pd.DataFrame({a: columns[a] for a in tc.balance_attributes})
    categories = pd.Categorical(current, categories=sorted(current.unique()))
    report = evaluate_alignment(categories.codes, features.xy, features.graph.matrix, attributes,
                                tolerances={a: tc.tolerance for a in attributes})
    summary = report.territories.copy()
    summary["territory"] = list(categories.categories)
    movement = rec.movement_by_territory(current, current).set_index("territory")
    summary = summary.drop(columns=["moved_in", "moved_out"], errors="ignore").join(
        movement, on="territory")
    overall = dict(report.overall)
    overall.update(rec.disruption(current, current,
                                  pd.Series(columns["potential"], index=unit_ids)))
    proposed = current.rename("proposed_territory")
    return Design(proposed, current, summary, overall, dict(report.overall),
                  summary.copy(), list(report.violations), diagnosis=list(report.diagnosis))


def forecast_accuracy(
    scores: pd.DataFrame,
    actuals: pd.DataFrame,
    columns,
    alignment: pd.Series | None = None,
) -> dict[str, float]:
    """Forecast against the actuals observed after the as-of date.

    Parameters
    ----------
    scores
        ``scores.parquet`` rows: unit, ``horizon``, ``target_period``,
        ``forecast``, ``forecast_lo``, ``forecast_hi``.
    actuals
        Sales history (unit, period, sales), including periods after the as-of date.
    columns
        The column names (``unit_col``, ``time_col``, ``target_col``).
    alignment
        Territory per unit; adds the WAPE of territory totals per month.

    Returns
    -------
    dict
        ``months_observed`` (target periods with actuals), ``wape``, ``bias``,
        ``coverage``, ``wape_h1`` and ``wape_territory``; NaN when no actual is
        known yet.
    """
    u, t, y = columns.unit_col, columns.time_col, columns.target_col
    truth = actuals[[u, t, y]].rename(columns={t: "target_period", y: "actual"})
    both = scores.merge(truth, on=[u, "target_period"], how="inner").dropna(subset=["actual"])
    nan = float("nan")
    out = {"months_observed": float(both["target_period"].nunique()), "wape": nan, "bias": nan,
           "coverage": nan, "wape_h1": nan, "wape_territory": nan}
    if both.empty:
        return out
    out["wape"] = backtest.wape(both["actual"], both["forecast"])
    out["bias"] = backtest.bias(both["actual"], both["forecast"])
    out["coverage"] = backtest.coverage(both["actual"], both["forecast_lo"], both["forecast_hi"])
    first = both[both["horizon"] == both["horizon"].min()]
    out["wape_h1"] = backtest.wape(first["actual"], first["forecast"])
    if alignment is not None:
        terr = both.assign(territory=alignment.reindex(both[u]).to_numpy()).dropna(
            subset=["territory"])
        sums = terr.groupby(["territory", "target_period"])[["actual", "forecast"]].sum()
        if len(sums):
            out["wape_territory"] = backtest.wape(sums["actual"], sums["forecast"])
    return out
