"""Write a run's outputs, its report and its MLflow record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models import tracking
from pipelines import report as rpt
from pipelines.config import RunConfig
from pipelines.stages import Design, FeatureSet, Inputs, Scores, Trained


def tracking_uri(config: RunConfig) -> str:
    """Configured URI, or a SQLite store in the workspace."""
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    return f"sqlite:///{(Path(config.workspace) / 'mlflow.db').resolve()}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.0%}"


def report_content(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: pd.DataFrame,
    moves: pd.DataFrame,
) -> rpt.ReportContent:
    """Assemble figures, headline numbers, sentences and tables for the report."""
    cols = config.data.columns
    units = inputs.units.to_crs(config.data.projected_crs) if config.data.projected_crs \
        else inputs.units
    uid = units[cols.unit_col].to_numpy()
    proposed = design.proposed.reindex(uid)
    totals = scores.unit_totals.reindex(uid)
    figures = {"map:Proposed territories": rpt.figure_to_data_uri(
        rpt.territory_map(units, proposed.reset_index(drop=True), "Proposed territories"))}
    if design.current is not None:
        figures["map:Current alignment"] = rpt.figure_to_data_uri(rpt.territory_map(
            units, design.current.reindex(uid).fillna("unassigned").reset_index(drop=True),
            "Current alignment"))
    figures["map:Potential"] = rpt.figure_to_data_uri(rpt.value_map(
        units, totals["potential"].reset_index(drop=True), "Potential (next 12 months)", "viridis"))
    figures["map:White space"] = rpt.figure_to_data_uri(rpt.value_map(
        units, (totals["potential"] - totals["forecast"]).reset_index(drop=True),
        "White space: potential − forecast", "magma"))
    first = config.territories.balance_attributes[0]
    dev_col = f"{first}_deviation"
    if design.current_summary is not None and dev_col in design.summary:
        figures["Balance before and after"] = rpt.figure_to_data_uri(rpt.balance_chart(
            design.current_summary[dev_col], design.summary[dev_col],
            config.territories.tolerance, first))

    m = trained.metrics
    sentences = [
        f"Over the last {config.forecast.validation_periods} months held out from training, "
        f"monthly unit forecasts were off by {_pct(m['valid_wape'])} in total absolute error "
        f"(WAPE), against {_pct(m['valid_wape_seasonal_naive'])} for repeating last year.",
        f"Forecast bias over that window: {m['valid_bias']:+.1%} "
        f"({'over' if m['valid_bias'] > 0 else 'under'}-forecasting).",
        f"Forecast ranges cover {config.forecast.interval_level:.0%} of outcomes by design "
        "(conformal intervals calibrated on the held-out window).",
    ]
    if "potential_spearman_vs_truth" in scores.metrics:
        sentences.append(
            "On this simulated company, estimated potential ranks units in a rank "
            f"correlation of {scores.metrics['potential_spearman_vs_truth']:.2f} with the true "
            "potential.")
    ov = design.overall
    headline = [
        ("As of", f"{features.as_of:%Y-%m}"),
        ("Units", f"{len(uid):,}"),
        ("Territories", f"{config.territories.n_territories}"),
        ("Forecast, next 12 months", f"{totals['forecast'].sum():,.0f}"),
        ("Potential, next 12 months", f"{totals['potential'].sum():,.0f}"),
        (f"Max {first} deviation, proposed", _pct(ov.get(f"max_abs_deviation_{first}"))),
    ]
    if design.current_overall is not None:
        headline.append((f"Max {first} deviation, current",
                         _pct(design.current_overall.get(f"max_abs_deviation_{first}"))))
    headline.append(("Units moved", f"{len(moves):,}"))
    top = recs.head(25).reset_index()
    tables = {
        "Territory summary": design.summary.round(3),
        "Top white-space units": top[[c for c in [cols.unit_col, "forecast", "potential",
                                                   "white_space", "penetration", "action",
                                                   "reason", "drivers"] if c in top]],
        "Moves": moves.head(200),
    }
    if design.violations:
        tables["Violations"] = pd.DataFrame({"violation": design.violations})
    return rpt.ReportContent(
        title=f"Territory plan: {config.run_name}",
        subtitle=f"As of {features.as_of:%Y-%m-%d}; {len(uid):,} units; "
                 f"balanced on {', '.join(config.territories.balance_attributes)} at "
                 f"±{config.territories.tolerance:.0%}.",
        headline=headline,
        quality_sentences=sentences,
        figures=figures,
        tables=tables,
    )


def write_outputs(
    out: Path,
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: pd.DataFrame,
    moves: pd.DataFrame,
) -> None:
    """Write every output file of a run into ``out`` (a temporary folder)."""
    cols = config.data.columns
    scores.scores.to_parquet(out / "scores.parquet", index=False)
    alignment = pd.DataFrame({
        cols.unit_col: design.proposed.index,
        cols.territory_col: design.proposed.to_numpy(),
        "current_territory": design.current.reindex(design.proposed.index).to_numpy()
        if design.current is not None else None,
    })
    alignment.to_parquet(out / "alignment.parquet", index=False)
    territories = inputs.units[[cols.unit_col, "geometry"]].merge(alignment, on=cols.unit_col)
    territories.dissolve(cols.territory_col).reset_index()[[cols.territory_col, "geometry"]].to_file(
        out / "territories.geojson", driver="GeoJSON")
    design.summary.to_csv(out / "territory_summary.csv", index=False)
    moves.to_csv(out / "moves.csv", index=False)
    recs.reset_index().to_csv(out / "recommendations.csv", index=False)
    content = report_content(config, inputs, features, trained, scores, design, recs, moves)
    (out / "report.html").write_text(rpt.render_html(content), encoding="utf-8")
    rpt.write_excel({**content.tables, "Recommendations": recs.reset_index()}, out / "report.xlsx")


def track_run(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    out: Path,
) -> tuple[str, dict]:
    """Log the run to MLflow, register the model and apply the promotion gate."""
    workspace = Path(config.workspace)
    tracking.setup_tracking(tracking_uri(config), config.tracking.experiment,
                            workspace / "mlartifacts")
    with tracking.training_run(f"{config.run_name}-{features.as_of:%Y-%m}") as run_id:
        tracking.log_tags({"as_of": f"{features.as_of:%Y-%m-%d}",
                           "evaluation_windows": trained.evaluation_windows,
                           "config_hash": config.fingerprint()})
        tracking.log_config(json.loads(config.model_dump_json()))
        tracking.log_dataset(inputs.sales, Path(config.data.sales), "sales")
        for name, digest in inputs.file_hashes.items():
            tracking.log_tags({f"input_sha256.{name}": digest})
        overall = {f"territory_{k}": v for k, v in design.overall.items()
                   if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}
        tracking.log_metrics({**trained.metrics, **scores.metrics, **overall})
        tracking.log_table(trained.forecaster.feature_importance().rename("gain").reset_index()
                           .rename(columns={"index": "feature"}), "forecast_importance.csv")
        tracking.log_table(trained.potential.feature_importance().rename("gain").reset_index()
                           .rename(columns={"index": "feature"}), "potential_importance.csv")
        tracking.log_table(scores.unit_totals.reset_index(), "unit_drivers.csv")
        version = tracking.log_scoring_model(
            trained.forecaster, features.score_table.head(5), config.tracking.registered_model)
        decision = tracking.promote_if_better(
            config.tracking.registered_model, version, "valid_wape",
            trained.metrics["valid_wape"], trained.evaluation_windows)
    return run_id, decision
