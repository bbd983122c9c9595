"""Write a run's outputs, its report and its MLflow record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from models import tracking
from models.serving import build_bundle
from pipelines import report as rpt
from pipelines.config import RunConfig
from pipelines.report_map import interactive_map
from pipelines.stages import Design, FeatureSet, Inputs, Recommendations, Scores, Trained


def tracking_uri(config: RunConfig) -> str:
    """Configured URI, or a SQLite store in the workspace."""
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    return f"sqlite:///{(Path(config.workspace) / 'mlflow.db').resolve()}"


def setup_tracking(config: RunConfig) -> str:
    """Point MLflow at the config's store and experiment (artifacts in the workspace)."""
    return tracking.setup_tracking(tracking_uri(config), config.tracking.experiment,
                                   Path(config.workspace) / "mlartifacts")


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.0%}"


def _hover_text(recs: pd.DataFrame, unit_ids: np.ndarray) -> pd.Series:
    r = recs.reindex(unit_ids)
    name = r["name"].astype(str) + " " if "name" in r else ""
    return (name + "(" + r.index.astype(str) + ") · " + r["proposed_territory"].astype(str)
            + " (now " + r["current_territory"].astype(str) + ")"
            + " · forecast " + r["forecast"].map("{:,.0f}".format)
            + " · potential " + r["potential"].map("{:,.0f}".format)
            + " · " + r["action"].astype(str))


def quality_sentences(config: RunConfig, trained: Trained, scores: Scores) -> list[str]:
    """Model quality in plain words."""
    m = trained.metrics
    sentences = [
        f"Over the last {config.forecast.validation_periods} months held out from training, "
        f"forecasts were within ±{m['valid_wape']:.0%} of actual sales in total (WAPE), "
        f"against ±{m['valid_wape_seasonal_naive']:.0%} for repeating last year's months.",
        f"Forecasts ran {abs(m['valid_bias']):.1%} "
        f"{'high' if m['valid_bias'] > 0 else 'low'} overall on that window.",
        f"Forecast ranges are built to hold {config.forecast.interval_level:.0%} of outcomes.",
    ]
    for key, value in m.items():
        if key.startswith("backtest_coverage") and np.isfinite(value):
            sentences[-1] += f" In the backtest they held {value:.0%}."
            break
    if "potential_spearman_vs_truth" in scores.metrics:
        sentences.append(
            "On this simulated company, estimated potential ranks units with a rank "
            f"correlation of {scores.metrics['potential_spearman_vs_truth']:.2f} against the "
            "true potential.")
    return sentences


def report_content(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: Recommendations,
) -> rpt.ReportContent:
    """Assemble the map, charts, headline numbers, sentences and tables for the report."""
    cols, tc = config.data.columns, config.territories
    units = inputs.units.to_crs(config.data.projected_crs or inputs.units.estimate_utm_crs())
    uid = units[cols.unit_col].to_numpy()
    u = recs.units.reindex(uid)
    territory_layers = {"Proposed territories": u["proposed_territory"].reset_index(drop=True)}
    if design.current is not None:
        territory_layers["Current alignment"] = u["current_territory"].fillna("unassigned") \
            .reset_index(drop=True)
    value_layers = {
        "Potential": u["potential"].reset_index(drop=True),
        "White space": u["white_space"].reset_index(drop=True),
        "Penetration": u["penetration"].fillna(0.0).reset_index(drop=True),
    }
    figures = {"Map": interactive_map(units.reset_index(drop=True), territory_layers,
                                      value_layers, _hover_text(recs.units, uid))}
    if design.current_summary is not None:
        deviations = {}
        for attr in tc.balance_attributes:
            col = f"{attr}_deviation"
            if col in design.summary and col in design.current_summary:
                deviations[attr] = (design.current_summary.set_index("territory")[col],
                                    design.summary.set_index("territory")[col])
        if deviations:
            figures["Balance before and after"] = rpt.balance_chart(deviations, tc.tolerance)

    ov = design.overall
    headline = [
        ("As of", f"{features.as_of:%Y-%m}"),
        ("Units", f"{len(uid):,}"),
        ("Territories", f"{design.n_territories or tc.n_territories}"),
        (f"Forecast, next {config.forecast.horizon} periods", f"{u['forecast'].sum():,.0f}"),
        (f"Potential, next {config.forecast.horizon} periods", f"{u['potential'].sum():,.0f}"),
    ]
    for attr in tc.balance_attributes:
        now = (design.current_overall or {}).get(f"max_abs_deviation_{attr}")
        new = ov.get(f"max_abs_deviation_{attr}")
        headline.append((f"Worst {attr} imbalance", f"{_pct(now)} → {_pct(new)}"
                         if now is not None else _pct(new)))
    headline.append(("Units moved", f"{len(recs.moves):,} ({len(recs.moves) / len(uid):.0%})"))
    if design.region_summary is not None:
        headline.append(("Regions", f"{len(design.region_summary)}"))
    tables = {
        "Territories": recs.territories.round(3),
        "White-space opportunities": recs.opportunities.head(100)[
            [c for c in ["rank", cols.unit_col, "name", "proposed_territory", "forecast",
                         "potential", "white_space", "penetration", "action", "reason",
                         "drivers"] if c in recs.opportunities]],
    }
    if recs.reps is not None:
        tables["Reps: what changes"] = recs.reps.round(1)
    tables["Moves"] = recs.moves.head(500)
    if design.region_summary is not None:
        tables["Regions"] = design.region_summary.round(3)
    if design.auto_k:
        tables["Number of territories"] = pd.DataFrame({"why": [design.auto_k]})
    if design.violations:
        tables["Violations"] = pd.DataFrame({"violation": design.violations})
    return rpt.ReportContent(
        title=f"Territory plan: {config.run_name}",
        subtitle=f"As of {features.as_of:%Y-%m-%d}; {len(uid):,} units; "
                 f"balanced on {', '.join(tc.balance_attributes)} at ±{tc.tolerance:.0%}.",
        headline=headline,
        quality_sentences=quality_sentences(config, trained, scores),
        figures=figures,
        tables=tables,
    )


def summary_markdown(content: rpt.ReportContent, report_path: Path) -> str:
    """The report's headline and quality sentences as markdown (for Prefect's UI)."""
    lines = [f"# {content.title}", "", content.subtitle, "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in content.headline]
    lines += ["", "**Model quality**", ""] + [f"- {s}" for s in content.quality_sentences]
    lines += ["", f"Report: `{report_path}`"]
    return "\n".join(lines)


def artifact_key(run_name: str, what: str) -> str:
    """Stable Prefect artifact key: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_name.lower()).strip("-") or "run"
    return f"{slug}-{what}"


def write_outputs(
    out: Path,
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: Recommendations,
) -> rpt.ReportContent:
    """Write every output file of a run into ``out`` (a temporary folder)."""
    cols = config.data.columns
    scores.scores.to_parquet(out / "scores.parquet", index=False)
    alignment = pd.DataFrame({
        cols.unit_col: design.proposed.index,
        cols.territory_col: design.proposed.to_numpy(),
        "current_territory": design.current.reindex(design.proposed.index).to_numpy()
        if design.current is not None else None,
    })
    if design.region is not None:
        alignment["region"] = design.region.reindex(design.proposed.index).to_numpy()
    alignment.to_parquet(out / "alignment.parquet", index=False)
    territories = inputs.units[[cols.unit_col, "geometry"]].merge(alignment, on=cols.unit_col)
    territories = territories.dissolve(cols.territory_col).reset_index()
    territories[[cols.territory_col, "geometry"]].to_file(out / "territories.geojson",
                                                          driver="GeoJSON")
    design.summary.to_csv(out / "territory_summary.csv", index=False)
    if design.region_summary is not None:
        design.region_summary.to_csv(out / "region_summary.csv", index=False)
    recs.moves.to_csv(out / "moves.csv", index=False)
    recs.units.reset_index().to_csv(out / "recommendations.csv", index=False)
    recs.territories.to_csv(out / "territory_recommendations.csv", index=False)
    recs.opportunities.to_csv(out / "opportunities.csv", index=False)
    if recs.reps is not None:
        recs.reps.to_csv(out / "rep_changes.csv", index=False)
    content = report_content(config, inputs, features, trained, scores, design, recs)
    (out / "report.html").write_text(rpt.render_html(content), encoding="utf-8")
    rpt.write_excel({**content.tables, "Units": recs.units.reset_index(),
                     "Territory summary": design.summary}, out / "report.xlsx")
    return content


def track_run(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    out: Path,
    recs: Recommendations | None = None,
) -> tuple[str, dict]:
    """Log the run to MLflow, register the models and apply the promotion gate.

    The forecaster and the recommender pyfunc are registered in the same run
    and pass the same gate, on the same metric and windows.
    """
    setup_tracking(config)
    with tracking.training_run(f"{config.run_name}-{features.as_of:%Y-%m}") as run_id:
        tracking.log_tags({"as_of": f"{features.as_of:%Y-%m-%d}",
                           "evaluation_windows": trained.evaluation_windows,
                           "config_hash": config.fingerprint()})
        tracking.log_config(json.loads(config.model_dump_json()))
        tracking.log_dataset(inputs.sales, Path(config.data.sales), "sales")
        for name, digest in inputs.file_hashes.items():
            tracking.log_tags({f"input_sha256.{name}": digest})
        overall = {f"territory_{k}": v for k, v in design.overall.items()
                   if isinstance(v, int | float | np.floating | np.integer)
                   and not isinstance(v, bool)}
        tracking.log_metrics({**trained.metrics, **scores.metrics, **overall})
        tracking.log_table(trained.forecaster.feature_importance().rename("gain").reset_index()
                           .rename(columns={"index": "feature"}), "forecast_importance.csv")
        tracking.log_table(trained.potential.feature_importance().rename("gain").reset_index()
                           .rename(columns={"index": "feature"}), "potential_importance.csv")
        tracking.log_table(scores.unit_totals.reset_index(), "unit_drivers.csv")
        if trained.backtest is not None:
            tracking.log_backtest(trained.backtest)
        version = tracking.log_scoring_model(
            trained.forecaster, features.score_table.head(5), config.tracking.registered_model)
        fc = config.forecast
        gate = next((m for m in (f"backtest_{fc.gate_metric}", f"valid_{fc.gate_metric}")
                     if m in trained.metrics), "valid_wape")
        decision = tracking.promote_if_better(
            config.tracking.registered_model, version, gate, trained.metrics[gate],
            trained.evaluation_windows, margin=fc.gate_margin)
        if recs is not None:
            bundle = build_bundle(trained.potential, recs.units, config.data.columns.unit_col,
                                  features.market_table)
            rec_version = tracking.log_recommender(bundle, features.market_table)
            decision["recommender"] = tracking.promote_if_better(
                tracking.RECOMMENDER, rec_version, gate,
                trained.metrics[gate], trained.evaluation_windows, margin=fc.gate_margin,
                artifact_name="recommender_promotion_decision.json")
    return run_id, decision
