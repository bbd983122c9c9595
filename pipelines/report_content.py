"""What a run's report says: map, charts, headline numbers, sentences and tables.

Content only; :mod:`territory.pipelines.publish` writes it to files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from territory.features.feature_set import FeatureSet
from territory.features.frequency import frequency_spec, periods_in_words
from territory.models import alignment
from territory.models.alignment import Design
from territory.models.plans import with_soft_tolerance
from territory.models.recommend import Recommendations
from territory.models.scoring import Scores
from territory.models.training import Trained
from territory.pipelines import report as rpt
from territory.pipelines.config import RunConfig
from territory.pipelines.report_editor import editor_payload
from territory.pipelines.report_map import interactive_map
from territory.pipelines.stages import Inputs


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.0%}"


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


def period_word(frequency: str) -> str:
    """The calendar word of a frequency code: MS -> "month", W-MON -> "week"."""
    return frequency_spec(frequency).singular


def period_words(frequency: str, n: int) -> str:
    """``n`` periods of ``frequency`` in words: ("QS", 4) -> "4 quarters"."""
    return periods_in_words(int(n), frequency)


def _hover_text(recs: pd.DataFrame, unit_ids: np.ndarray,
                locked: pd.Series | None = None) -> pd.Series:
    r = recs.reindex(unit_ids)
    name = r["name"].astype(str) + " " if "name" in r else ""
    text = (name + "(" + r.index.astype(str) + ") · " + r["proposed_territory"].astype(str)
            + " (now " + r["current_territory"].astype(str) + ")"
            + " · forecast " + r["forecast"].map("{:,.0f}".format)
            + " · potential " + r["potential"].map("{:,.0f}".format)
            + " · " + r["action"].astype(str))
    if locked is not None:
        text = text.where(~r.index.isin(locked.index), text + " · locked by a manager")
    return text


def locked_table(design: Design, recs: Recommendations, unit_col: str) -> pd.DataFrame | None:
    """The units a manager locked: where they were locked to and where the plan put them."""
    if design.locked is None:
        return None
    units = recs.units.reindex(design.locked.index)
    table = pd.DataFrame({unit_col: design.locked.index,
                          "locked_to": design.locked.to_numpy(),
                          "proposed_territory": design.proposed.reindex(
                              design.locked.index).to_numpy()})
    if "name" in units:
        table.insert(1, "name", units["name"].to_numpy())
    table["kept"] = np.where(table["locked_to"] == table["proposed_territory"], "yes", "no")
    return table


def quality_sentences(config: RunConfig, trained: Trained, scores: Scores) -> list[str]:
    """Model quality in plain words; a measure that could not be computed is left out."""
    m, freq = trained.metrics, config.features.frequency
    held_out = period_words(freq, config.forecast.validation_periods)
    wape, naive, bias = (m.get(k) for k in ("valid_wape", "valid_wape_seasonal_naive",
                                            "valid_bias"))
    if _finite(wape):
        first = (f"Over the last {held_out} held out from training, forecasts were within "
                 f"±{wape:.0%} of actual sales in total (WAPE)")
        word = period_word(freq)
        same = "last year's value" if word == "year" else f"last year's {word}s"
        first += (f", against ±{naive:.0%} for repeating {same}." if _finite(naive) else
                  "; the history is too short to compare with repeating last year.")
        sentences = [first]
    else:
        sentences = [f"The forecast could not be scored on the last {held_out}: the history is "
                     "too short to hold them out."]
    sentences += published_sentences(trained)
    sentences += reconcile_sentences(scores, config.forecast.reconcile.level)
    if _finite(bias):
        sentences.append(f"Forecasts ran {abs(bias):.1%} {'high' if bias > 0 else 'low'} "
                         "overall on that window.")
    sentences.append(
        f"Forecast ranges are built to hold {config.forecast.interval_level:.0%} of outcomes.")
    for key, value in m.items():
        if key.startswith("backtest_coverage") and _finite(value):
            sentences[-1] += f" In the backtest they held {value:.0%}."
            break
    spearman = scores.metrics.get("potential_spearman_vs_truth")
    if _finite(spearman):
        sentences.append(
            "On this simulated company, estimated potential ranks units with a rank "
            f"correlation of {spearman:.2f} against the true potential.")
    return sentences + potential_accuracy_sentences(trained, scores)


def published_sentences(trained: Trained) -> list[str]:
    """Which forecast is published and why, in words (none without a combination)."""
    published, m = getattr(trained, "published", None), trained.metrics
    if published is None:
        return []
    gate = published.gate
    best = "LightGBM" if gate["best_member"] in ("forecast", "lightgbm") else gate["best_member"]
    versus = (f"MASE {gate['territory_mase']:.3f} against {gate['best_member_mase']:.3f} for "
              f"the best single model, {best}")
    if published.method == "territory":
        words = (f"The published forecast combines LightGBM with {', '.join(published.members)} "
                 f"(mean weights {published.describe()}): on the backtest windows it beat every "
                 f"single model ({versus}).")
    else:
        words = (f"The published forecast is {best} alone: the combination with "
                 f"{', '.join(published.members)} did not beat it on the backtest windows "
                 f"({versus}).")
    held = m.get("heldout_wape_published")
    if _finite(held):
        words += (f" On the last backtest window, fitted without it, the published forecast "
                  f"was within ±{held:.1%} (WAPE; LightGBM alone "
                  f"±{m['heldout_wape_lightgbm']:.1%}).")
    return [words]


METHOD_WORDS = {"bottom_up": "BottomUp", "ols": "OLS", "wls_struct": "WLS (structural)",
                "wls_var": "WLS (variance)", "mint_shrink": "MinTrace (shrink)"}


def reconcile_sentences(scores: Scores, level: str = "territory") -> list[str]:
    """Which reconciliation the run published and why, in words (none when it is off)."""
    record = getattr(scores, "reconciliation", None)
    if record is None:
        return []
    name = METHOD_WORDS.get(record.method, record.method)
    if getattr(record, "chosen_in", None) is not None:
        return champion_reconcile_sentences(record)
    if record.table is None:
        return [f"Unit forecasts are added up to territories as they are ({name}): there was "
                "no backtest to choose a reconciliation on, so territory totals carry no "
                "forecast range of their own."]
    wape_ = record.table[record.table["level"] == level].set_index("method")["wape"]
    windows = int(record.table["windows"].iloc[0]) if "windows" in record.table else None
    on = f"the {windows} backtest windows" if windows else "the backtest windows"
    candidates = wape_.drop(index=["base", "bottom_up"], errors="ignore")
    if record.method != "bottom_up" and "bottom_up" not in wape_:
        return [f"Unit, territory and total forecasts are reconciled with {name} so they add "
                f"up: {level} WAPE {wape_[record.method]:.1%} on {on} (BottomUp was not among "
                "the methods compared, forecast.reconcile.methods)."]
    if record.method == "bottom_up":
        runner = str(candidates.idxmin()) if len(candidates) else None
        best = (f"; best alternative {METHOD_WORDS.get(runner, runner)} "
                f"{candidates[runner]:.1%}" if runner is not None else "")
        return [f"Territory totals are the units' forecasts added up ({name}): no "
                f"reconciliation beat it on {on} ({level} WAPE "
                f"{wape_.get('bottom_up', np.nan):.1%}{best})."]
    return [f"Unit, territory and total forecasts are reconciled with {name} so they add up: "
            f"{level} WAPE {wape_['bottom_up']:.1%} → {wape_[record.method]:.1%} on {on}, "
            "against adding up the units' forecasts (BottomUp)."]


def champion_reconcile_sentences(record) -> list[str]:
    """A scoring run's reconciliation in words: the method its champion's training run
    chose (``record.chosen_in``), or why it is BottomUp instead."""
    name = METHOD_WORDS.get(record.method, record.method)
    run = f"the champion's training run ({str(record.chosen_in)[:8]})"
    aggregates = record.nodes[record.nodes["level"] != "unit"]
    ranged = bool(np.isfinite(aggregates["forecast_lo"].to_numpy(dtype=float)).any())
    ranges = ("Territory ranges are calibrated on that run's backtest forecasts, rebuilt on "
              "this alignment and this run's sales." if ranged else
              "Territory totals carry no forecast range of their own: that run kept no "
              "backtest forecasts to calibrate one on.")
    if record.fallback == "untagged":
        return [f"Territory totals are the units' forecasts added up ({name}): {run} recorded "
                "no reconciliation method (it was trained before runs were reconciled, or "
                f"without a complete current alignment). {ranges}"]
    if record.fallback == "no_errors":
        return [f"Territory totals are the units' forecasts added up ({name}): the method "
                f"{run} chose needs its backtest errors, and it kept none. {ranges}"]
    if record.method == "bottom_up":
        return [f"Territory totals are the units' forecasts added up ({name}), as {run} chose "
                f"on its backtest windows: no reconciliation beat it there. {ranges}"]
    return [f"Unit, territory and total forecasts are reconciled with {name} so they add up: "
            f"the method {run} chose on its backtest windows, applied to this run's "
            f"forecasts, with each territory's own base forecast refitted on this run's sales. "
            f"{ranges}"]


def territory_forecast_table(scores: Scores) -> pd.DataFrame | None:
    """Each territory's forecast and range per horizon, from the reconciled hierarchy
    (``forecast_hierarchy.csv``); None without reconciliation."""
    record = getattr(scores, "reconciliation", None)
    if record is None:
        return None
    nodes = record.nodes[record.nodes["level"] == "territory"]
    table = nodes[["node", "horizon", "target_period", "forecast", "forecast_lo",
                   "forecast_hi"]].rename(columns={"node": "territory"})
    table = table.assign(target_period=pd.to_datetime(table["target_period"])
                         .dt.strftime("%Y-%m-%d"),
                         reconciled_with=METHOD_WORDS.get(record.method, record.method))
    return table.sort_values(["territory", "horizon"], kind="stable").reset_index(drop=True)


def potential_accuracy_sentences(trained: Trained, scores: Scores) -> list[str]:
    """How far each territory's share of potential can be trusted, in words."""
    m, sm = trained.metrics, scores.metrics
    if not m.get("potential_rep_adjusted", 0.0):
        words = ["Potential is a high quantile of comparable markets' sales, so the reps' "
                 "effect on sales stays in it (no current alignment was given, or "
                 "potential.method is quantile)."]
    else:
        words = [f"Potential takes each rep's effect out of sales: held-out sales are "
                 f"predicted within {m['potential_cv_log_rmse_rep']:.2f} (log RMSE) with the "
                 f"rep's effect, against {m['potential_cv_log_rmse_market']:.2f} from the "
                 f"market alone; each territory's share of held-out sales is off by "
                 f"{m['potential_cv_sales_share_error_p90']:.0%} or less in 9 territories "
                 "of 10."]
    if "potential_share_error_p90_vs_truth" in sm:
        words.append(f"Against the true potential, each current territory's share of potential "
                     f"is off by {sm['potential_share_error_p50_vs_truth']:.1%} at the median "
                     f"and {sm['potential_share_error_p90_vs_truth']:.1%} at the 90th "
                     "percentile: balance within a tighter tolerance than that is not real.")
    else:
        words.append("The territories' potential share error against true potential is not "
                     "measured (real data has no true potential).")
    if "potential_rep_change_share_error_p90" in m:
        words.append(f"On the {m['potential_rep_change_units']:.0f} units whose rep changed "
                     "(data.previous_alignment), a potential fitted before the change predicts "
                     f"each receiving territory's share of their sales after it within "
                     f"{m['potential_rep_change_share_error_p50']:.1%} at the median and "
                     f"{m['potential_rep_change_share_error_p90']:.1%} at the 90th percentile "
                     f"({m['potential_rep_change_territories']:.0f} territories).")
    return words


def potential_accuracy_table(trained: Trained, scores: Scores) -> pd.DataFrame | None:
    """Per current territory: its rep's index, held-out sales error and (demo) truth error."""
    table = trained.potential_territories
    if table is None:
        return scores.territory_truth
    if scores.territory_truth is not None:
        table = table.merge(scores.territory_truth, on="territory", how="left")
    return table


def rep_change_table(trained: Trained) -> pd.DataFrame | None:
    """Per territory that received units whose rep changed (``data.previous_alignment``):
    units moved in, its predicted and actual share of their sales after the change, the
    error (code names: :mod:`territory.pipelines.report_format` words them); None without
    the table."""
    table = trained.rep_change_territories
    if table is None:
        return None
    return pd.DataFrame({
        "territory": table["territory"].to_numpy(),
        "moved_in": table["n_units"].astype(int).to_numpy(),
        "predicted_share": table["predicted_share"].to_numpy(dtype=float),
        "actual_share": table["actual_share"].to_numpy(dtype=float),
        "share_error": table["share_error"].to_numpy(dtype=float),
    }).sort_values("share_error", ascending=False, kind="stable").reset_index(drop=True)


def balance_mode_words(overall: dict) -> str:
    """Which plan robust mode (``territories.robust``) published, and why, in words."""
    rows = overall.get("robust_candidates")
    if not rows:
        return "balanced on the estimate (robust mode off)"
    base = rows[0]
    won = next(r for r in rows if r["published"])
    if won is base:
        return (f"robust: no tighter design made the least sure territory surer "
                f"({base['min_p_within']:.0%}), so the plan balanced on the estimate stays")
    return (f"robust: balanced to ±{won['potential_tolerance']:.1%} on the estimate, which "
            f"lifts the least sure territory from {base['min_p_within']:.0%} to "
            f"{won['min_p_within']:.0%} (on the draws that chose it)")


def _headline(config: RunConfig, features: FeatureSet, design: Design, recs: Recommendations,
              uid, u: pd.DataFrame) -> tuple[list[tuple[str, str]], pd.DataFrame | None]:
    """The report's headline numbers, and the table of units a manager locked (or None)."""
    cols, tc = config.data.columns, config.territories
    ov = design.overall
    ahead = period_words(config.features.frequency, config.forecast.horizon)
    monthly = period_word(config.features.frequency) in ("month", "quarter", "year")
    headline = [
        ("As of", f"{features.as_of:%Y-%m}" if monthly else f"{features.as_of:%Y-%m-%d}"),
        ("Units", f"{len(uid):,}"),
        ("Territories", f"{design.n_territories or tc.n_territories}"),
        (f"Forecast, next {ahead}", f"{u['forecast'].sum():,.0f}"),
        (f"Potential, next {ahead}", f"{u['potential'].sum():,.0f}"),
    ]
    for attr in tc.balance_attributes:
        now = (design.current_overall or {}).get(f"max_abs_deviation_{attr}")
        new = ov.get(f"max_abs_deviation_{attr}")
        headline.append((f"Worst {attr} imbalance", f"{_pct(now)} → {_pct(new)}"
                         if now is not None else _pct(new)))
    if "p_within_tolerance" in design.summary:
        sure = design.summary["p_within_tolerance"]
        tolerance = tc.tolerances.get("potential")
        headline.append((f"Potential within ±{_pct(tolerance)}, in truth",
                         f"{int((sure >= 0.8).sum())} of {len(sure)} territories at ≥ 80% "
                         f"probability (least sure {sure.min():.0%})"))
        headline.append(("Balance mode", balance_mode_words(ov)))
    headline.append(("Units moved", f"{len(recs.moves):,} ({len(recs.moves) / len(uid):.0%})"
                      if design.current is not None else "none: no current alignment, a first "
                      "design"))
    if recs.reps is not None and "load_after" in recs.reps:
        known = recs.reps["load_after"].dropna()
        over = int((known > 1 + 1e-9).sum())
        headline.append(("Reps over capacity", f"{over} of {len(known)} (busiest at "
                                               f"{_pct(known.max())})"))
    if design.region_summary is not None:
        headline.append(("Regions", f"{len(design.region_summary)}"))
    locked = locked_table(design, recs, cols.unit_col)
    if locked is not None:
        kept = int((locked["kept"] == "yes").sum())
        headline.append(("Units locked by a manager", f"{len(locked):,} ({kept:,} kept)"))
    return headline, locked


def report_content(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: Recommendations,
    watch=None,
) -> rpt.ReportContent:
    """Assemble the map, charts, headline numbers, sentences and tables for the report.

    ``watch`` (a :class:`territory.pipelines.monitoring.Watch`, nightly runs) adds the
    monitoring sections: how earlier forecasts did and what moved in the inputs.
    """
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
                                      value_layers, _hover_text(recs.units, uid, design.locked),
                                      value_formats={"Penetration": "{:.0%}"})}
    if design.current_summary is not None:
        deviations = {}
        for attr in tc.balance_attributes:
            col = f"{attr}_deviation"
            if col in design.summary and col in design.current_summary:
                deviations[attr] = (design.current_summary.set_index("territory")[col],
                                    design.summary.set_index("territory")[col])
        if deviations:
            figures["Balance before and after"] = rpt.balance_chart(deviations, tc.tolerance)

    headline, locked = _headline(config, features, design, recs, uid, u)
    tables = {
        "Territories": recs.territories,
        **({"Compare plans": design.comparison} if design.comparison is not None else {}),
        "White-space opportunities": recs.opportunities.head(100)[
            [c for c in ["rank", cols.unit_col, "name", "proposed_territory", "forecast",
                         "potential", "white_space", "penetration", "action", "reason",
                         "drivers"] if c in recs.opportunities]],
    }
    by_horizon = territory_forecast_table(scores)
    if by_horizon is not None:
        tables["Territory forecast"] = by_horizon
    if recs.reps is not None:
        tables["Reps: what changes"] = recs.reps
    tables["Moves"] = recs.moves.head(500)
    if locked is not None:
        tables["Locked by a manager"] = locked
    accuracy = potential_accuracy_table(trained, scores)
    if accuracy is not None:
        tables["Potential by current territory"] = accuracy.round(3)
    moved_in = rep_change_table(trained)
    if moved_in is not None:
        tables["Potential where the rep changed"] = moved_in
    if inputs.gaps:
        tables["Data gaps"] = inputs.gaps.table(config.data.gaps, config.data.columns.unit_col)
    if design.region_summary is not None:
        tables["Regions"] = design.region_summary
    if design.plans is not None and len(design.plans) > 1 and design.comparison is None:
        tables["The price of balance: plans tried"] = design.plans
    if design.auto_k:
        tables["Number of territories"] = pd.DataFrame({"why": [design.auto_k]})
    if design.violations:
        tables["Violations"] = pd.DataFrame({"violation": design.violations})
    if design.diagnosis:
        tables["Why balance is not reached"] = pd.DataFrame({"diagnosis": design.diagnosis})
    sections: dict[str, list[str]] = {}
    if watch is not None:
        from territory.pipelines.report_monitoring import monitoring_content

        sections, more_figures, more_tables = monitoring_content(
            watch, config.forecast.interval_level, config.monitoring.alerts.drift_psi)
        figures, tables = {**figures, **more_figures}, {**more_tables, **tables}
    return rpt.ReportContent(
        editor=plan_editor(config, features, scores, design, recs, uid,
                           f"figure-{list(figures).index('Map') + 1}"),
        title=f"Territory plan: {config.run_name}",
        subtitle=f"As of {features.as_of:%Y-%m-%d}; {len(uid):,} units; "
                 f"balanced on {_balance_words(tc, design)}.",
        headline=headline,
        quality_sentences=quality_sentences(config, trained, scores),
        figures=figures,
        tables=tables,
        sections=sections,
    )


def plan_editor(config: RunConfig, features: FeatureSet, scores: Scores, design: Design,
                recs: Recommendations, unit_ids: np.ndarray, map_figure: str) -> dict | None:
    """The editor's data: the published plan, its targets and tolerances, the graph.

    None when the summary lacks a target of a balanced attribute, or a unit has no
    territory of the summary (nothing to edit against).
    """
    tc = config.territories
    attributes = tc.balance_attributes
    if any(f"{a}_target" not in design.summary for a in attributes):
        return None
    if not set(design.proposed.reindex(unit_ids).astype(str)) <= set(
            design.summary["territory"].astype(str)):
        return None
    measures = alignment.unit_measures(scores.unit_totals, features.workload, unit_ids)
    tolerances = with_soft_tolerance(tc, design.overall.get("soft_tolerance")).tolerances
    names = recs.units["name"] if "name" in recs.units else None
    cols = config.data.columns
    return editor_payload(
        unit_ids, design.proposed, design.summary, {a: measures[a] for a in attributes},
        tolerances, features.graph.matrix, soft=tc.soft_attributes, unit_names=names,
        locked=design.locked, map_figure=map_figure, unit_col=cols.unit_col,
        territory_col=cols.territory_col)


def _balance_words(tc, design) -> str:
    """E.g. "potential at ±5% (hard), workload at ±30% (soft, the tightest that holds)"."""
    soft = design.overall.get("soft_tolerance")
    words = []
    for rule in tc.balance:
        if rule.role == "hard":
            words.append(f"{rule.attribute} at ±{_pct(rule.tolerance)} (hard)")
        elif soft is not None and soft < 0.99:
            words.append(f"{rule.attribute} at ±{_pct(soft)} (soft: the tightest plan that "
                         "holds the hard attributes)")
        else:
            words.append(f"{rule.attribute} (soft, measured only)")
    return ", ".join(words)


def summary_markdown(content: rpt.ReportContent, report_path: Path) -> str:
    """The report's headline and quality sentences as markdown (for Prefect's UI)."""
    lines = [f"# {content.title}", "", content.subtitle, "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in content.headline]
    lines += ["", "**Model quality**", ""] + [f"- {s}" for s in content.quality_sentences]
    lines += ["", f"Report: `{report_path}`"]
    return "\n".join(lines)
