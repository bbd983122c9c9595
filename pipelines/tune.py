"""``territory tune``: an Optuna search over the forecaster's LightGBM settings.

Each trial samples settings from :data:`SEARCH_SPACE`, refits the forecaster
at every origin of the config's own rolling-origin backtest
(``forecast.backtest``: the same windows, horizon and step as a training
run) and scores it by ``forecast.gate_metric`` (or ``metric``) over those
windows. Trial 0 is the config's current settings, so the best trial is
never worse than what you started with on these windows.

MLflow: one parent run (``tune-<run_name>``) holds the base config, the
search, the best settings and the written config; every trial is a run
nested under it with its sampled settings and its backtest metrics.

Reproducibility: the sampler is ``TPESampler(seed=seed)`` and LightGBM is
seeded and deterministic, so the same data, config and seed give the same
trials and the same best settings (``timeout`` aside, which can stop the
search after fewer trials).

The tuned config is the input config with the best ``forecast`` settings,
written atomically and checked with :func:`territory.pipelines.config.load_config`
before it replaces anything.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from territory.features.errors import InputError
from territory.models import backtest, tracking
from territory.models.forecast import forecaster_from_config
from territory.pipelines.config import FILES, RunConfig, load_config
from territory.pipelines.outputs import atomic_file

# name -> ("float" | "int", low, high, log) or ("categorical", choices)
SEARCH_SPACE: dict[str, tuple] = {
    "learning_rate": ("float", 0.02, 0.3, True),
    "num_leaves": ("int", 7, 127, True),
    "min_child_samples": ("int", 5, 400, True),
    "feature_fraction": ("float", 0.4, 1.0, False),
    "bagging_fraction": ("float", 0.5, 1.0, False),
    "lambda_l2": ("float", 1e-3, 30.0, True),
    "log_offset": ("float", 0.005, 0.5, True),
    "objective": ("categorical", ("l2_log_ratio", "huber_log_ratio", "l2_scaled")),
    "weighting": ("categorical", ("scale", "sqrt_scale", "equal")),
}
DEFAULT_PARAMS = ("learning_rate", "num_leaves", "min_child_samples", "feature_fraction",
                  "lambda_l2")
METRICS = ("wape", "mase", "mae", "rmse")


@dataclass
class TuneResult:
    """What a search found and where it is recorded."""

    best_params: dict[str, Any]
    best_value: float
    baseline_value: float
    metric: str
    trials: pd.DataFrame
    parent_run_id: str
    config_path: Path


def check_search(params: list[str] | None, n_trials: int, metric: str | None,
                 config: RunConfig) -> tuple[list[str], str]:
    """Validate the request; returns the settings to search and the metric."""
    if n_trials < 1:
        raise InputError("--trials", f"must be at least 1, got {n_trials}",
                         hint="pass --trials 20 (each trial is one rolling-origin backtest)")
    names = list(DEFAULT_PARAMS) if not params else list(dict.fromkeys(params))
    unknown = [n for n in names if n not in SEARCH_SPACE]
    if unknown:
        raise InputError("--params", f"unknown search space key(s) {unknown}",
                         rows=unknown,
                         hint=f"choose from {', '.join(SEARCH_SPACE)}")
    metric = metric or config.forecast.gate_metric
    if metric not in METRICS:
        raise InputError("--metric", f"unknown metric '{metric}'",
                         hint=f"choose from {', '.join(METRICS)}")
    if config.forecast.backtest.windows < 1:
        raise InputError("config", "tuning needs a rolling-origin backtest",
                         column="forecast.backtest.windows",
                         hint="set forecast.backtest.windows to 2 or more")
    return names, metric


def sample(trial: Any, names: list[str]) -> dict[str, Any]:
    """Draw one setting per name from :data:`SEARCH_SPACE`."""
    out: dict[str, Any] = {}
    for name in names:
        kind, *spec = SEARCH_SPACE[name]
        if kind == "float":
            out[name] = trial.suggest_float(name, spec[0], spec[1], log=spec[2])
        elif kind == "int":
            out[name] = trial.suggest_int(name, spec[0], spec[1], log=spec[2])
        else:
            out[name] = trial.suggest_categorical(name, list(spec[0]))
    return out


def _current(config: RunConfig, names: list[str]) -> dict[str, Any]:
    """The config's own values, clipped into the search space (trial 0)."""
    fc = config.forecast
    out = {}
    for name in names:
        kind, *spec = SEARCH_SPACE[name]
        value = getattr(fc, name)
        if kind in ("float", "int"):
            value = min(max(value, spec[0]), spec[1])
        elif value not in spec[0]:
            value = spec[0][0]
        out[name] = value
    return out


def tuned_config_text(config: RunConfig, source: Path, out: Path, best: dict[str, Any],
                      header: str) -> str:
    """YAML of ``config`` with ``best`` forecast settings; paths relative to ``out``'s folder."""
    raw = config.model_dump(mode="json")
    raw["forecast"] = {**raw["forecast"], **best}
    base = out.resolve().parent

    def rel(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return os.path.relpath(value, base)
        except ValueError:  # another drive
            return value

    raw["workspace"] = rel(raw["workspace"])
    for name in FILES:
        raw["data"][name] = rel(raw["data"][name])
    body = yaml.safe_dump(raw, sort_keys=False)
    return f"{header}# tuned from {source}\n{body}"


def write_config(text: str, out: Path) -> Path:
    """Write ``text`` to ``out`` atomically, only if it loads as a valid run config."""
    out = Path(out)
    with atomic_file(out) as tmp:
        tmp.write_text(text)
        load_config(tmp)  # raises InputError before anything is replaced
    return out


def tune(
    config: RunConfig,
    source: Path,
    out: Path,
    n_trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    params: list[str] | None = None,
    metric: str | None = None,
    show_progress: bool = True,
) -> TuneResult:
    """Search forecaster settings on the config's backtest windows; write the best config.

    Parameters
    ----------
    config
        Validated run config (``source`` is its file, named in the output header).
    out
        Where the tuned config goes.
    n_trials, timeout
        Stop after ``n_trials`` trials, or when ``timeout`` seconds have passed
        (no new trial starts after that).
    seed
        Seed of the TPE sampler.
    params
        Names in :data:`SEARCH_SPACE` to search (default :data:`DEFAULT_PARAMS`).
    metric
        Backtest metric to minimise (default ``forecast.gate_metric``).
    """
    import optuna
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from territory.pipelines import stages
    from territory.pipelines.publish import setup_tracking

    names, metric = check_search(params, n_trials, metric, config)
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    fc, cols = config.forecast, config.data.columns
    panel = backtest.panel_from_table(features.train_table, config.features.frequency, cols)
    scale_col = config.features.level_column(cols.target_col)
    key = f"backtest_{metric}"

    setup_tracking(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(_current(config, names))
    rows: list[dict[str, Any]] = []
    console = Console(stderr=True)

    with tracking.training_run(f"tune-{config.run_name}", tags={"territory.kind": "tune"}) as pid:
        tracking.log_config(config.model_dump(mode="json"))
        tracking.log_params({"tune.trials": n_trials, "tune.timeout_s": timeout,
                             "tune.seed": seed, "tune.metric": metric,
                             "tune.params": ",".join(names)})
        tracking.log_text(yaml.safe_dump({n: list(SEARCH_SPACE[n][1:]) for n in names}),
                          "search_space.yaml")

        def objective(trial: Any) -> float:
            sampled = sample(trial, names)
            with tracking.nested_run(f"trial-{trial.number:03d}",
                                     tags={"territory.kind": "tune-trial"}) as run_id:
                tracking.log_params({f"forecast.{k}": v for k, v in sampled.items()})
                started = time.perf_counter()
                result = backtest.rolling_origin_backtest(
                    panel, config.features, fc.horizon,
                    lambda: forecaster_from_config(fc, scale_col, cols.unit_col,
                                                   f"{cols.target_col}_",
                                                   season=config.features.season, **sampled),
                    n_windows=fc.backtest.windows, step=fc.backtest.step, columns=cols,
                    baselines=("seasonal_naive",), table=features.train_table,
                )
                summary = result.summary()
                tracking.log_metrics({**summary, "trial_seconds": time.perf_counter() - started})
                tracking.log_tags({"evaluation_windows": result.windows_key})
            value = float(summary[key])
            rows.append({"trial": trial.number, metric: value, **sampled, "run_id": run_id})
            return value

        progress = Progress(TextColumn("[bold]tuning[/bold]"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("best {task.fields[best]}"), TimeElapsedColumn(),
                            console=console, disable=not show_progress)

        def update(study: Any, trial: Any) -> None:
            best = f"{metric} {study.best_value:.4f}" if study.best_trial else "-"
            progress.update(task, advance=1, best=best)

        with progress:
            task = progress.add_task("trials", total=n_trials, best="-")
            study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[update])

        best = dict(study.best_params)
        header = (f"# written by `territory tune`: best backtest {metric} "
                  f"{study.best_value:.4f} (trial {study.best_trial.number} of {len(rows)}; "
                  f"current settings {rows[0][metric]:.4f}), MLflow run {pid}\n")
        text = tuned_config_text(config, source, out, best, header)
        path = write_config(text, out)
        tracking.log_params({f"best.forecast.{k}": v for k, v in best.items()})
        tracking.log_metrics({f"best_{key}": study.best_value, f"baseline_{key}": rows[0][metric],
                              "trials_completed": float(len(rows))})
        tracking.log_text(text, "tuned_config.yaml")
        trials = pd.DataFrame(rows)
        tracking.log_table(trials, "trials.csv")
    return TuneResult(best, float(study.best_value), float(rows[0][metric]), metric, trials,
                      pid, path)
