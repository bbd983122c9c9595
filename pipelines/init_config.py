"""``territory init``: read the user's files, detect what the config needs, write it.

:func:`plan_config` is pure: from the tables (read by :func:`read_for_detection`,
CSV as text so ids keep their leading zeros) it detects the id, period and
target columns, the frequency, the date format, the CRS and the territories,
with the evidence for each (:mod:`territory.features.detect`). :func:`render_config`
turns the plan into YAML with the structure of ``configs/demo.yaml``: every key
the pipeline needs, each with a comment that says what it is and, where it was
detected, why. :func:`write_config` writes it atomically and never overwrites
a config unless asked.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from territory.features import detect
from territory.features import io as fio
from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.errors import InputError
from territory.features.frequency import frequency_spec

FILE_KEYS = ("units", "sales", "demographics", "alignment", "reps")
EXCEL_SUFFIXES = (".xlsx", ".xls")



@dataclass(frozen=True)
class Item:
    """One detected setting: the config key, its value and why."""

    key: str
    value: Any
    evidence: str
    confirm: bool = False


@dataclass
class Plan:
    """What init found: the config values (dotted keys), their evidence, and what is missing."""

    values: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def set(self, key: str, value: Any, evidence: str, confirm: bool = False) -> None:
        self.values[key] = value
        self.items.append(Item(key, value, evidence, confirm))
        if confirm:
            self.missing.append(f"confirm {key}: {evidence}")

    @property
    def comments(self) -> dict[str, str]:
        return {i.key: ("CONFIRM: " if i.confirm else "detected: ") + i.evidence
                for i in self.items}


# --- reading -------------------------------------------------------------------------------


def read_for_detection(path: Path, key: str) -> pd.DataFrame:
    """Read one input file for detection; CSV columns as text (ids keep their leading zeros).

    Raises
    ------
    InputError
        The file is missing, unreadable, or a format the pipeline cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file not found" if not path.exists() else "not a file",
                         key=f"--{key}", hint=f"pass --{key} with the path of your {key} file")
    if path.suffix.lower() in EXCEL_SUFFIXES and path.suffix.lower() not in fio.SUPPORTED_SUFFIXES:
        raise InputError(str(path), "the pipeline does not read Excel workbooks",
                         key=f"--{key}", hint="save the sheet as CSV (UTF-8) with File > Save "
                                              f"As, then pass that file to --{key}")
    frame = fio.read_table(path)
    if path.suffix.lower() == ".csv":
        frame = fio.read_table(path, text_columns=[str(c) for c in frame.columns])
    return frame


# --- detection -----------------------------------------------------------------------------


def _schedule(code: str, n_periods: int) -> tuple[dict[str, Any], str, bool]:
    """Lags, windows, horizon and backtest for ``code`` that fit ``n_periods`` of history."""
    spec = frequency_spec(code)
    base = {"lags": list(spec.lags), "windows": list(spec.windows), "horizon": spec.horizon}
    lags, windows, horizon, step = list(spec.lags), list(spec.windows), spec.horizon, \
        spec.backtest_step
    backtest = 2

    def needed() -> int:
        return 2 * max(lags + windows) + 2 * horizon + backtest * step

    while needed() > n_periods and len(windows) > 1:
        windows.pop()
        lags = [lag for lag in lags if lag <= max(windows)] or [1]
    if needed() > n_periods:
        backtest = 0
    while needed() > n_periods and horizon > 1:
        horizon -= 1
    words = spec.plural
    short = needed() > n_periods or (lags, windows, horizon) != (
        base["lags"], base["windows"], base["horizon"]) or backtest == 0
    why = (f"{n_periods} {words} of history: lags {lags}, windows {windows}, horizon "
           f"{horizon} {words}, {backtest} backtest windows")
    if short:
        why += f" (shortened to fit; {needed()} {words} would be comfortable)"
    values = {"features.lags": lags, "features.rolling_windows": windows,
              "features.spatial_lag_columns": None, "forecast.horizon": horizon,
              "forecast.validation_periods": horizon, "forecast.backtest.windows": backtest,
              "forecast.backtest.step": step}
    return values, why, short


def _sales_columns(plan: Plan, units: pd.DataFrame, sales: pd.DataFrame,
                   sources: dict[str, str]) -> dict[str, dict[str, str]]:
    """Detect the sales columns and frequency; the per-table contract names found."""
    ids = detect.detect_id_columns(units, sales, sources["units"], sources["sales"])
    time = detect.detect_time_column(sales, sources["sales"], exclude=[ids.sales.column])
    target = detect.detect_target(sales, sources["sales"], [ids.sales.column, time.column],
                                  unit=ids.sales.column)
    plan.set("data.columns.unit_col", ids.sales.column,
             f"units.{ids.units} <-> sales.{ids.sales.column}: {ids.sales.evidence}")
    plan.set("data.columns.time_col", time.column, f"sales.{time.column} parses as dates")
    plan.set("data.columns.target_col", target.column,
             f"sales.{target.column}: {target.evidence}", target.confirm)
    fmt = time.date_format
    plan.set("data.date_format", fmt.format, f"sales.{time.column}: {fmt.evidence}", fmt.confirm)
    freq = detect.detect_frequency(time.periods)
    plan.set("features.frequency", freq.code, freq.evidence, freq.confirm)
    if freq.code == "YS":
        plan.set("features.seasonality", False, "annual data has no season within the year")
    schedule, why, short = _schedule(freq.code, freq.n_periods)
    plan.values.update(schedule)
    plan.items.append(Item("features.lags", schedule["features.lags"], why, short))
    if short:
        plan.missing.append(f"the history is short for {freq.code}: {why}")
    gaps = ids.sales.n_units - ids.sales.n_matched
    if gaps:
        plan.missing.append(f"{gaps:,} of {ids.sales.n_units:,} units have no sales history; "
                            "data.gaps decides what happens to them")
    plan.values["_gaps"] = gaps
    workload = detect.detect_workload(sales, [ids.sales.column, time.column, target.column])
    plan.set("territories.workload_column", workload,
             f"sales.{workload} measures the effort per unit" if workload else
             "no accounts/visits/orders column in sales: every unit counts as one")
    plan.values["_unit_ids"] = detect.id_text(units[ids.units])
    return {"units": {"unit_col": ids.units},
            "sales": {"unit_col": ids.sales.column, "time_col": time.column,
                      "target_col": target.column}}


def _unit_column(table: pd.DataFrame, unit_ids: pd.Series, key: str, source: str,
                 units_source: str) -> detect.UnitColumn:
    found = detect.detect_unit_column(table, unit_ids)
    if found is None:
        raise InputError(source, f"no column matches the unit ids of {units_source}",
                         key=f"--{key}", rows=[f"columns: {', '.join(map(str, table.columns))}"],
                         hint=f"give the {key} file a column with the same unit ids as the "
                              "units file, or leave it out")
    return found


def _other_tables(plan: Plan, tables: dict[str, pd.DataFrame], sources: dict[str, str],
                  names: dict[str, dict[str, str]]) -> None:
    """Detect the id, territory, rep and year columns of demographics, alignment and reps."""
    unit_ids = plan.values.pop("_unit_ids")
    territories = None
    if (demo := tables.get("demographics")) is not None:
        found = _unit_column(demo, unit_ids, "demographics", sources["demographics"],
                             sources["units"])
        names["demographics"] = {"unit_col": found.column}
        plan.items.append(Item("data.demographics", found.column,
                               f"demographics.{found.column}: {found.evidence}"))
        year = detect.detect_named_column(demo, ("year", "period", "date"), [found.column])
        if year is not None:
            names["demographics"]["year_col"] = year
        if found.n_units > found.n_matched:
            plan.missing.append(f"{found.n_units - found.n_matched:,} units have no demographics")
    if (alignment := tables.get("alignment")) is not None:
        found = _unit_column(alignment, unit_ids, "alignment", sources["alignment"],
                             sources["units"])
        rest = [str(c) for c in alignment.columns if c != found.column]
        territory = detect.detect_named_column(alignment, ("territory_id", "territory"),
                                               [found.column]) or (rest[0] if rest else None)
        if territory is None:
            raise InputError(sources["alignment"], "no territory column besides the unit id",
                             key="--alignment", hint="add a territory_id column")
        names["alignment"] = {"unit_col": found.column, "territory_col": territory}
        territories = alignment[territory].dropna().astype(str)
        plan.items.append(Item("data.alignment", territory,
                               f"alignment.{found.column}: {found.evidence}; "
                               f"{territories.nunique()} territories in alignment.{territory}"))
    if (reps := tables.get("reps")) is not None:
        match = detect.detect_unit_column(reps, territories) if territories is not None else None
        territory = match.column if match is not None else detect.detect_named_column(
            reps, ("territory_id", "territory"))
        rep = detect.detect_named_column(reps, ("rep_id", "rep", "salesperson"), [territory or ""])
        if territory is None or rep is None:
            raise InputError(sources["reps"], "the reps file needs a territory and a rep column",
                             key="--reps", rows=[f"columns: {', '.join(map(str, reps.columns))}"],
                             hint="name them territory_id and rep_id, or leave --reps out")
        names["reps"] = {"territory_col": territory, "rep_col": rep}
        plan.items.append(Item("data.reps", rep, f"{reps[rep].nunique()} reps in reps.{rep}, "
                                                 f"territories in reps.{territory}"))


def _contract_names(plan: Plan, tables: dict[str, pd.DataFrame],
                    names: dict[str, dict[str, str]]) -> None:
    """``data.columns`` keeps the contract names; each file's own names go per table.

    Inside the run every table then speaks the contract (``unit_id``,
    ``period``, ``sales``), as the outputs do. A contract name that a file
    already uses for another column would clash, so that field keeps the
    sales file's (or the first file's) own name instead.
    """
    default = ColumnsConfig()
    columns: dict[str, str] = {}
    for field_name in ColumnsConfig.model_fields:
        own = {t: n[field_name] for t, n in names.items() if field_name in n}
        contract = getattr(default, field_name)
        clash = any(contract in tables[t].columns and name != contract for t, name in own.items())
        columns[field_name] = own.get("sales", next(iter(own.values()), contract)) if clash \
            else contract
        plan.values[f"data.columns.{field_name}"] = columns[field_name]
    overrides = {table: {f: v for f, v in own.items() if v != columns[f]}
                 for table, own in names.items()}
    overrides = {table: own for table, own in overrides.items() if own}
    why = "; ".join(f"{t}: " + ", ".join(f"{f}={v}" for f, v in o.items())
                    for t, o in overrides.items())
    plan.set("data.table_columns", overrides or None,
             f"each file's own names for the contract columns ({why})" if overrides else
             "every file uses the contract's column names")


def _territory_count(plan: Plan, tables: dict[str, pd.DataFrame],
                     names: dict[str, dict[str, str]], n_units: int) -> None:
    if "alignment" in names:
        n = int(tables["alignment"][names["alignment"]["territory_col"]].nunique())
        plan.set("territories.n_territories", n, f"{n} territories in the current alignment")
    elif "reps" in names:
        n = int(tables["reps"][names["reps"]["rep_col"]].nunique())
        plan.set("territories.n_territories", n, f"{n} reps in the reps file")
    else:
        n = max(2, min(50, n_units // 10))
        plan.set("territories.n_territories", n,
                 f"no alignment or reps file: {n} for {n_units:,} units; set your number of reps",
                 confirm=True)


def plan_config(tables: dict[str, pd.DataFrame], sources: dict[str, str]) -> Plan:
    """Detect every setting the config needs from the user's tables.

    Parameters
    ----------
    tables
        ``units`` and ``sales`` (required), ``demographics``, ``alignment``,
        ``reps`` (optional), as read by :func:`read_for_detection`.
    sources
        The file of each table, for messages.

    Raises
    ------
    InputError
        No shared id column, no period column, no target, or an optional
        table that matches no unit.
    """
    plan = Plan()
    units = tables["units"]
    names = _sales_columns(plan, units, tables["sales"], sources)
    _other_tables(plan, tables, sources, names)
    _contract_names(plan, tables, names)
    crs = detect.detect_crs(units)
    plan.set("data.projected_crs", crs.projected, f"units CRS {crs.source}: {crs.evidence}"
             if crs.source else crs.evidence, crs.confirm and crs.source is not None)
    if crs.source is None:
        fixed = Path(sources["units"]).with_suffix(".gpkg")
        plan.missing.append(
            f"{sources['units']} has no CRS, and the pipeline refuses a units file without one. "
            "If its coordinates are longitude/latitude, save a copy with its CRS: python -c "
            f"\"import geopandas as g; g.read_file('{sources['units']}').set_crs('EPSG:4326')"
            f".to_file('{fixed}')\" and pass --units {fixed} to territory init again")
    _territory_count(plan, tables, names, len(units))
    _name_columns(plan, units, names["units"]["unit_col"])
    return plan


def _name_columns(plan: Plan, units: pd.DataFrame, unit_col: str) -> None:
    """The units file's text columns (at most three, e.g. county and state) name a unit."""
    text = [c for c in units.columns if c not in (unit_col, "geometry")
            and (pd.api.types.is_object_dtype(units[c]) or pd.api.types.is_string_dtype(units[c]))
            and units[c].notna().any()][:3]
    if text:
        plan.set("data.name_columns", text, f"text columns of the units file: {', '.join(text)}")


# --- writing -------------------------------------------------------------------------------

#: Every key of ``configs/demo.yaml``, in its order, with its default here and what it means.
TEMPLATE: list[tuple[str, Any, str]] = [
    ("run_name", "territory", "names the run folders and the MLflow runs"),
    ("workspace", "workspace", "runs, MLflow store and Prefect home; relative to this file"),
    ("as_of", None, "null = the last period in the sales history"),
    ("runner", "local", "local | dask (see README, \"Scale out on Dask\")"),
    ("data", None, "your files; relative paths are read from this file's folder"),
    ("data.units", None, "geography: one row per unit"),
    ("data.sales", None, "sales history: one row per unit and period"),
    ("data.demographics", None, "market features per unit (null: none)"),
    ("data.alignment", None, "the current unit-to-territory assignment (null: none)"),
    ("data.reps", None, "reps per territory (null: none)"),
    ("data.truth", None, "evaluation only (simulated data); leave null for real data"),
    ("data.edits", None, "a manager's edits.csv from the report's editor: locked units"),
    ("data.projected_crs", None, "metres, for distances and areas; null = the UTM zone"),
    ("data.date_format", None, "strptime format of the period column; null = ISO dates"),
    ("data.name_columns", None, "units columns that name a unit, e.g. [name, region]"),
    ("data.gaps", "stop", "units with no sales or no demographics: stop | exclude | estimate"),
    ("data.columns", None, "names inside the run; a file's own names: table_columns"),
    ("data.columns.unit_col", "unit_id", "unit id"),
    ("data.columns.time_col", "period", "period"),
    ("data.columns.target_col", "sales", "what is forecast"),
    ("data.columns.territory_col", "territory_id", "territory id (alignment, reps)"),
    ("data.columns.rep_col", "rep_id", "rep id (reps)"),
    ("data.table_columns", {}, "each file's own names where they differ from data.columns"),
    ("features", None, "features; lags and windows count periods of features.frequency"),
    ("features.frequency", "MS", "YS | QS | MS | W-MON"),
    ("features.lags", [1, 2, 3, 6, 12], "past values used, in periods"),
    ("features.rolling_windows", [3, 6, 12], "rolling statistics over these many periods"),
    ("features.rolling_stats", ["mean", "std"], "statistics of each window (mean required)"),
    ("features.seasonality", True, "period-of-year features"),
    ("features.trend", True, "growth over each window"),
    ("features.demographic_columns", None, "null = every numeric demographic column"),
    ("features.spatial_lag_columns", None, "neighbours' mean of these features"),
    ("features.contiguity", "queen", "queen (corners touch) | rook (edges only)"),
    ("forecast", None, "LightGBM forecaster"),
    ("forecast.horizon", 12, "periods ahead"),
    ("forecast.objective", "l2_log_ratio", "chosen by backtest: see models/forecast.py"),
    ("forecast.weighting", "sqrt_scale", "rows weighted by sqrt(unit level)"),
    ("forecast.interval_level", 0.8, "coverage of the forecast interval"),
    ("forecast.validation_periods", 12, "held-out periods for early stopping and WAPE"),
    ("forecast.n_estimators", 600, "boosting rounds (early stopping picks fewer)"),
    ("forecast.learning_rate", 0.1, "`territory tune` can search it"),
    ("forecast.num_leaves", 31, "tree size"),
    ("forecast.max_train_rows", 150000, "training rows kept, most recent first"),
    ("forecast.max_bin", 63, "histogram bins"),
    ("forecast.seed", 42, "randomness is explicit"),
    ("forecast.gate_metric", "wape", "champion moves only if the challenger's backtest"),
    ("forecast.gate_margin", 0.0, "metric is lower by this relative margin"),
    ("forecast.backtest", None, "rolling-origin evaluation"),
    ("forecast.backtest.windows", 2, "rolling origins, refit at each; 0 = off"),
    ("forecast.backtest.step", 3, "periods between origins"),
    ("forecast.backtest.baselines", ["seasonal_naive", "moving_average"], "compared each time"),
    ("forecast.combination", None, "published: LightGBM + members if that beats each alone"),
    ("forecast.combination.members", ["auto_theta"], "statsforecast members; [] = LightGBM"),
    ("forecast.reconcile", None, "units, territories (and regions) add up to the total"),
    ("forecast.reconcile.methods", ["bottom_up", "ols", "wls_struct", "wls_var", "mint_shrink"],
     "chosen on the backtest"),
    ("forecast.reconcile.unit_tolerance", 0.0,
     "never unit forecasts worse than BottomUp's by more than this"),
    ("potential", None, "what comparable markets achieve"),
    ("potential.method", "rep_adjusted", "market part at a good rep's effect; or quantile"),
    ("potential.quantile", 0.8, "method quantile: the conditional quantile of sales"),
    ("potential.seed", 42, "randomness is explicit"),
    ("territories", None, "the design"),
    ("territories.n_territories", 50, "how many territories (reps)"),
    ("territories.balance", [{"attribute": "potential", "tolerance": 0.05, "role": "hard"},
                             {"attribute": "workload", "tolerance": 0.05, "role": "soft"}],
     "hard: met wherever feasible; soft: as tight as the hard ones allow"),
    ("territories.frontier", [0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1],
     "soft tolerances tried (plans.csv)"),
    ("territories.plan", "best", "the tightest plan holding the hard rule and shape; or e.g. 0.3"),
    ("territories.max_elongation", 2.0, "shape limit: span / diameter of the circle of its area"),
    ("territories.compactness_weight", 40.0, "pull towards the centre while balancing"),
    ("territories.workload_column", "accounts", "sales column of workload; null = 1 per unit"),
    ("territories.mode", "fresh", "fresh | rebalance (moves as few units as it can)"),
    ("territories.keep_rep_homes", False, "true keeps each rep's home unit in their territory"),
    ("territories.max_restarts", 0, "extra multistarts; each costs a full design"),
    ("territories.max_chains", 100, "ejection chains per repair round (null = half the units)"),
    ("territories.minimal_change", True, "also design the smallest change to today's alignment"),
    ("territories.robust", False, "true: publish the plan whose least sure territory is surest"),
    ("territories.time_limit_s", 600, "safety net only: budgets are iteration counts"),
    ("territories.seed", 42, "randomness is explicit"),
    ("tracking", None, "MLflow"),
    ("tracking.tracking_uri", None, "null = sqlite in the workspace"),
    ("tracking.experiment", "territory", "MLflow experiment"),
    ("tracking.registered_model", "territory-forecaster", "registered forecaster"),
    ("schedule", None, "used by `territory deploy` / `territory schedule`"),
    ("schedule.timezone", "UTC", "an IANA name, e.g. America/Chicago"),
    ("schedule.nightly_cron", "0 2 * * *", "nightly forecast at 02:00 local time"),
    ("schedule.retrain_cron", "0 3 * * 0", "weekly retrain, Sundays 03:00"),
    ("schedule.work_pool", "territory-process", "Prefect work pool"),
    ("schedule.lock_timeout_s", 600, "wait this long for a run publishing the same folder"),
    ("cache", None, "the feature cache: one file per build, pruned after each"),
    ("cache.max_size_gb", 20, "least recently used builds go past this size"),
    ("cache.max_age_days", 30, "builds unused this long go"),
    ("monitoring", None, "the nightly run measures earlier forecasts and watches its inputs"),
    ("monitoring.enabled", True, "measure, compare with training, raise alerts"),
    ("monitoring.reference_rows", 20000, "rows of the champion's training data kept"),
    ("monitoring.seed", 0, "randomness is explicit"),
    ("monitoring.alerts", None, "a rule set to null is off"),
    ("monitoring.alerts.wape_excess", 0.25, "realised WAPE this much worse than promised..."),
    ("monitoring.alerts.wape_runs", 2, "...for the last 2 forecasts measured"),
    ("monitoring.alerts.coverage_floor", 0.5, "fewer actuals than this inside the ranges"),
    ("monitoring.alerts.drift_psi", 0.25, "a feature moved this far from training (PSI)"),
    ("monitoring.alerts.zero_share_increase", 0.05, "more points of zeros in the last year"),
    ("monitoring.alerts.schema_changes", True, "columns or units new, missing or changed"),
    ("monitoring.webhook", None, "POST each alert as JSON here"),
    ("monitoring.webhook_timeout_s", 10, "seconds"),
    ("monitoring.retrain_on_alert", False, "true: an alert starts the retrain deployment"),
]
SECTIONS = frozenset(k for k, v, _ in TEMPLATE if v is None and any(
    t.startswith(k + ".") for t, _, _ in TEMPLATE))
#: Keys added by issue #12, written only once this version's config models know them.
NEW_KEYS = ("data.date_format", "data.table_columns", "data.gaps", "data.name_columns")
_INLINE = 56  # longer comments go on their own line above the key


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf,
                          allow_unicode=True, sort_keys=False).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text


def _known_keys() -> set[str]:
    """Dotted keys the config models accept, among :data:`NEW_KEYS`."""
    from territory.pipelines.config import DataConfig

    return {k for k in NEW_KEYS if k.split(".")[1] in DataConfig.model_fields}


def config_values(plan: Plan, paths: dict[str, str], run_name: str) -> dict[str, Any]:
    """Every template key's value: the plan's where it detected one, the template's otherwise."""
    values = {key: default for key, default, _ in TEMPLATE if key not in SECTIONS}
    values.update({k: v for k, v in plan.values.items() if k in values})
    values.update({f"data.{name}": path for name, path in paths.items()})
    values["run_name"] = run_name
    values["tracking.experiment"] = f"territory-{run_name}"
    target, windows = values["data.columns.target_col"], values["features.rolling_windows"]
    level = FeaturesConfig(frequency=values["features.frequency"], rolling_windows=windows)
    values["features.spatial_lag_columns"] = [level.level_column(target)]
    if plan.values.get("_gaps"):
        values["data.gaps"] = "exclude"
    values["data.table_columns"] = values["data.table_columns"] or {}
    known = _known_keys()
    for key in NEW_KEYS:  # a new key is left out while it is not needed and not yet known
        needed = key == "data.table_columns" and values[key] or key == "data.date_format" \
            and values[key] is not None
        if key not in known and not needed:
            del values[key]
    return values


def _comments(plan: Plan, values: dict[str, Any]) -> dict[str, str]:
    comments = {key: text for key, _, text in TEMPLATE}
    comments.update(plan.comments)
    if values.get("data.gaps") == "exclude":
        comments["data.gaps"] = ("CONFIRM: units with no sales history are left out of the "
                                 "design; estimate gives them a potential from neighbours")
    return comments


def render_config(plan: Plan, paths: dict[str, str], run_name: str) -> str:
    """The config as commented YAML, in the order of ``configs/demo.yaml``."""
    values = config_values(plan, paths, run_name)
    comments = _comments(plan, values)
    lines = ["# Written by `territory init` from your files. Keys marked CONFIRM need your",
             "# check; the others were detected (the evidence follows each) or are defaults.",
             "# Next: territory validate --config <this file>, then territory run."]
    for key, _, _ in TEMPLATE:
        if key not in SECTIONS and key not in values:
            continue
        depth, name = key.count("."), key.rsplit(".", 1)[-1]
        indent, comment = "  " * depth, comments.get(key, "")
        if depth == 0 and key in SECTIONS:
            lines.append("")
        value = values.get(key)
        head = f"{indent}{name}:"
        if key not in SECTIONS and not (isinstance(value, list) and value
                                        and isinstance(value[0], dict)):
            head += f" {_scalar(value)}"
        if len(comment) > _INLINE:
            lines.append(f"{indent}# {comment}")
        elif comment:
            head += f"  # {comment}"
        lines.append(head)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines += [f"{indent}  - {_scalar(item)}" for item in value]
    return "\n".join(lines) + "\n"


def write_config(text: str, out: Path, force: bool = False) -> Path:
    """Write ``text`` to ``out`` atomically; refuse an existing file unless ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise InputError(str(out), "a config already exists here and is kept", key="--out",
                         hint="pass --force to overwrite it, or --out with another file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def relative_path(path: Path, out: Path) -> str:
    """``path`` relative to the config's folder when it can be, absolute otherwise."""
    path, base = Path(path).resolve(), Path(out).resolve().parent
    try:
        shared = os.path.commonpath([path, base])
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if shared == path.anchor else os.path.relpath(path, base)


def init_config(files: dict[str, Path | None], out: Path, force: bool = False,
                run_name: str | None = None) -> tuple[Plan, Path]:
    """Read the files, detect, and write the config to ``out``; nothing is written on error.

    Raises
    ------
    InputError
        No units or sales file, an unreadable file, a failed detection, or
        ``out`` exists without ``force``.
    """
    from territory.pipelines.config import check_safe_name

    for key in ("units", "sales"):
        if files.get(key) is None:
            raise InputError(f"--{key}", f"no {key} file given", key=f"--{key}",
                             hint=f"pass --{key} with your {key} file (units: Shapefile, "
                                  "GeoPackage or GeoJSON; sales: CSV or Parquet)")
    out = Path(out)
    if out.exists() and not force:
        write_config("", out, force)  # raises before any file is read
    given = {k: Path(p) for k, p in files.items() if p is not None}
    tables = {key: read_for_detection(path, key) for key, path in given.items()}
    plan = plan_config(tables, {key: str(path) for key, path in given.items()})
    name = run_name or out.stem
    try:
        check_safe_name(name, "run_name")
    except ValueError:
        name = "territory"
    text = render_config(plan, {k: relative_path(p, out) for k, p in given.items()}, name)
    return plan, write_config(text, out, force)
