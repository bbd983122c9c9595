"""The report's monitoring sections: how earlier forecasts did, what moved in the inputs.

Content only (sentences, a plotly chart, tables), from the records that
:mod:`territory.pipelines.monitoring` computed; words are made here, once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from territory.models import monitoring as mon
from territory.pipelines.alerts import message
from territory.pipelines.monitoring import InputCheck, Watch

ACCURACY_SECTION = "How our forecasts did"
INPUTS_SECTION = "What moved in the inputs"
ALERTS_SECTION = "Alerts"


def _pct(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.0%}"


def accuracy_sentences(history: pd.DataFrame | None, interval_level: float) -> list[str]:
    """The latest forecasts measured, in words; why there is nothing yet when there is not."""
    overall = mon.overall_history(history)
    if overall.empty:
        return ["No earlier forecast has actuals yet: this section fills in as the months "
                "after each nightly run arrive (or run `territory backfill` for a history)."]
    latest = overall.iloc[-1]
    months = int(latest["months_observed"])
    words = [f"The forecast made as of {pd.Timestamp(latest['as_of']):%Y-%m} now has "
             f"{months} month{'s' if months != 1 else ''} of actuals: WAPE "
             f"{_pct(latest['wape'])} against {_pct(latest['promised_wape'])} promised by its "
             f"{latest['promise_source'] or 'evaluation'}, forecasts ran "
             f"{abs(latest['bias']):.1%} {'high' if latest['bias'] > 0 else 'low'}, and "
             f"{_pct(latest['coverage'])} of actuals fell inside the "
             f"{interval_level:.0%} ranges."]
    if len(overall) > 1:
        worse = overall["wape_vs_promised"] > 0
        words.append(f"Over the {len(overall)} forecasts measured so far, realised WAPE ran "
                     f"from {_pct(overall['wape'].min())} to {_pct(overall['wape'].max())}; "
                     f"{int(worse.sum())} of them did worse than promised.")
    return words


def accuracy_figure(history: pd.DataFrame, interval_level: float) -> go.Figure | None:
    """Realised against promised WAPE per forecast as-of date (all horizons and the first),
    and the interval coverage against its nominal level."""
    overall = mon.overall_history(history)
    if overall.empty:
        return None
    first = history[(history["level"] == "horizon") & (history["horizon"] == 1)] \
        .sort_values(["as_of", "source"]).drop_duplicates("as_of", keep="last")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["WAPE: realised against promised",
                                        "Share of actuals inside the forecast range"])
    x = pd.to_datetime(overall["as_of"])
    fig.add_trace(go.Scatter(x=x, y=overall["wape"] * 100, mode="lines+markers",
                             name="realised, all horizons", line={"color": "#4e79a7"}), 1, 1)
    if len(first):
        fig.add_trace(go.Scatter(x=pd.to_datetime(first["as_of"]), y=first["wape"] * 100,
                                 mode="lines+markers", name="realised, next month",
                                 line={"color": "#76b7b2"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=overall["promised_wape"] * 100, mode="lines",
                             name="promised (backtest)",
                             line={"color": "#e15759", "dash": "dash"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=overall["coverage"] * 100, mode="lines+markers",
                             name="realised coverage", line={"color": "#59a14f"}), 2, 1)
    fig.add_hline(y=interval_level * 100, line_dash="dot", line_color="#999", row=2, col=1)
    fig.update_yaxes(title_text="WAPE (%)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="coverage (%)", range=[0, 100], row=2, col=1)
    fig.update_xaxes(title_text="forecast as of", row=2, col=1)
    fig.update_layout(height=520, margin={"t": 40, "b": 10, "l": 60, "r": 10},
                      plot_bgcolor="white", legend={"orientation": "h", "y": -0.12})
    return fig


def accuracy_table(history: pd.DataFrame) -> pd.DataFrame:
    """Per forecast as-of date (newest first): realised against promised accuracy."""
    overall = mon.overall_history(history)
    table = overall[["as_of", "source", "model_version", "months_observed", "wape",
                     "promised_wape", "wape_vs_promised", "bias", "coverage",
                     "promised_coverage", "territory_wape"]].copy()
    table["as_of"] = pd.to_datetime(table["as_of"]).dt.strftime("%Y-%m-%d")
    return table.iloc[::-1].reset_index(drop=True)


def accuracy_by_horizon(history: pd.DataFrame) -> pd.DataFrame:
    """Realised and promised WAPE per horizon, over every forecast measured (row-weighted)."""
    rows = history[history["level"] == "horizon"]
    if rows.empty:
        return pd.DataFrame()
    weights = rows["actual"].where(rows["actual"] > 0, np.nan)
    frame = rows.assign(err=rows["wape"] * weights, prom=rows["promised_wape"] * weights,
                        w=weights)
    sums = frame.groupby("horizon")[["err", "prom", "w"]].sum(min_count=1)
    return pd.DataFrame({"horizon": sums.index.astype(int), "wape": sums["err"] / sums["w"],
                         "promised_wape": sums["prom"] / sums["w"],
                         "forecasts": rows.groupby("horizon")["as_of"].nunique().to_numpy()})


def _moved(row) -> str:
    change = "" if pd.isna(row.mean_change) else f", mean {row.mean_change:+.0%}"
    return f"{row.feature} ({row.table}: PSI {row.psi:.2f}, KS {row.ks:.2f}{change})"


def input_sentences(check: InputCheck, psi_threshold: float | None) -> list[str]:
    """What moved since the champion's training data, by how much; schema and zeros."""
    table = check.drift.dropna(subset=["psi"])
    threshold = psi_threshold if psi_threshold is not None else 0.25
    moved = table[table["psi"] > threshold]
    words = [f"Compared with the champion's training data (as of {check.reference_as_of}), "]
    if len(moved):
        words[0] += (f"{len(moved)} of {len(table)} features moved beyond PSI {threshold:.2f}: "
                     + "; ".join(_moved(r) for r in moved.head(8).itertuples()) + ".")
    elif len(table):
        words[0] += (f"no feature moved beyond PSI {threshold:.2f}; the largest shift is "
                     f"{_moved(table.iloc[0])}.")
    else:
        words[0] += "no feature could be compared."
    if len(check.schema):
        words.append("Schema changes since training: " + "; ".join(
            f"{r.table} {r.what} {r.name}: {r.change}" for r in check.schema.head(8).itertuples())
            + ".")
    else:
        words.append("No column or unit is new, missing or of another type since training.")
    now, then = check.quality, check.reference_quality
    words.append(
        f"In the last year of sales, {now['zero_share']:.1%} of values are exact zeros "
        f"({then.get('zero_share', float('nan')):.1%} in training), "
        f"{now['zero_coded_units']:.0f} units end in a year of zeros after years of sales "
        f"({then.get('zero_coded_units', float('nan')):.0f} in training), and "
        f"{now['missing_share']:.1%} of unit-periods have no value.")
    return words


def monitoring_content(found: Watch, interval_level: float, psi_threshold: float | None = None
                       ) -> tuple[dict[str, list[str]], dict[str, go.Figure],
                                  dict[str, pd.DataFrame]]:
    """The report's monitoring sentences, charts and tables for one run's :class:`Watch`."""
    history = found.history
    sections = {ACCURACY_SECTION: [found.accuracy_note] if found.accuracy_note else
                accuracy_sentences(history, interval_level)}
    if found.inputs is not None:
        sections[INPUTS_SECTION] = input_sentences(found.inputs, psi_threshold)
    elif found.notes:
        sections[INPUTS_SECTION] = list(found.notes)
    sections[ALERTS_SECTION] = ([message(a) for a in found.alerts] if found.alerts else
                                ["No alert rule fired (monitoring.alerts in the config)."])
    figures, tables = {}, {}
    figure = accuracy_figure(history, interval_level)
    if figure is not None:
        figures[f"{ACCURACY_SECTION}: realised against promised"] = figure
        tables[f"{ACCURACY_SECTION}: per forecast"] = accuracy_table(history)
        tables[f"{ACCURACY_SECTION}: per horizon"] = accuracy_by_horizon(history)
    if found.inputs is not None:
        tables[f"{INPUTS_SECTION}: per feature"] = found.inputs.drift.head(30).round(4)
        if len(found.inputs.schema):
            tables[f"{INPUTS_SECTION}: schema"] = found.inputs.schema
    return sections, figures, tables
