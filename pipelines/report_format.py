"""How the report and the workbook show a table: headers in words, numbers formatted by kind.

A column's *kind* is read from its code name (``potential_deviation`` is a
share, ``diameter_km`` a distance, ``potential`` an amount). The HTML shows
each kind as text (``+3.2%``, ``10,028,417``, ``12.5``); the workbook keeps
the numbers and gives each kind an Excel format, so a manager can still add
them up. The CSV files keep the code names: they are for machines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

# kind -> (HTML text of a value, Excel number format)
SHARE = "share"  # a fraction shown as a percentage: 0.032 -> 3.2%
SIGNED_SHARE = "signed share"  # a deviation: 0.032 -> +3.2%
PERCENT = "percent"  # already in percent: 3.2 -> 3.2%
AMOUNT = "amount"  # money and counts: rounded to whole numbers
DECIMAL = "decimal"  # distances, ratios, seconds: one or two decimals
TEXT = "text"

EXCEL_FORMATS = {SHARE: "0.0%", SIGNED_SHARE: "+0.0%;-0.0%;0.0%", PERCENT: '0.0"%"',
                 AMOUNT: "#,##0", DECIMAL: "#,##0.0#"}

WORDS = {
    "territory": "Territory", "territory_id": "Territory", "name": "Name", "rank": "Rank",
    "n_units": "Units", "units": "Units", "centre": "Centre unit",
    "n_components": "Pieces", "contiguous": "Contiguous", "dispersion": "Dispersion",
    "diameter_km": "Span (km)", "radius_km": "Farthest unit from the centre (km)",
    "mean_distance_km": "Mean distance to the centre (km)", "area_km2": "Area (km²)",
    "elongation": "Elongation (span ÷ circle diameter)",
    "polsby_popper": "Compactness (Polsby-Popper, 0-1)",
    "moved_in": "Units moved in", "moved_out": "Units moved out",
    "forecast": "Forecast", "forecast_lo": "Forecast, low", "forecast_hi": "Forecast, high",
    "potential": "Potential", "index": "Workload index", "white_space": "White space",
    "penetration": "Penetration",
    "peer_penetration": "Penetration of comparable units",
    "top_white_space_units": "Units with the most white space",
    "current_territory": "Current territory", "proposed_territory": "Proposed territory",
    "from_territory": "From territory", "to_territory": "To territory",
    "action": "Action", "reason": "Reason", "drivers": "Drivers",
    "rep_id": "Rep id", "rep_name": "Rep", "region": "Region", "territories": "Territories",
    "n_territories": "Territories", "plan": "Plan", "soft_tolerance": "Soft tolerance",
    "published": "Published", "hard_violations": "Hard violations",
    "shape_over_limit": "Territories over the shape limit",
    "median_elongation": "Median elongation", "max_elongation": "Largest elongation",
    "max_span_km": "Longest span (km)", "total_dispersion": "Total dispersion",
    "units_moved_pct": "Units moved (%)", "cpu_s": "CPU time (s)",
    "violation": "Violation", "diagnosis": "Why", "why": "Why",
    "capacity": "Capacity (workload)", "load_before": "Load before (% of capacity)",
    "load_after": "Load after (% of capacity)",
    "locked_to": "Locked to territory", "kept": "Kept", "units_moved": "Units moved",
    "rep_travel_km": "Rep travel: mean distance to the centre, by workload (km)",
    "as_of": "Forecast as of", "source": "Run", "model_version": "Model version",
    "months_observed": "Months with actuals", "wape": "WAPE", "promised_wape": "WAPE promised",
    "wape_vs_promised": "WAPE vs promised", "bias": "Bias", "coverage": "Interval coverage",
    "promised_coverage": "Coverage promised", "territory_wape": "WAPE of territory totals",
    "horizon": "Horizon", "target_period": "Period",
    "reconciled_with": "Reconciled with", "psi": "PSI", "ks": "KS",
    "feature": "Feature", "table": "Table",
    "reference_mean": "Mean in training", "current_mean": "Mean now",
    "mean_change": "Mean change", "change": "Change", "rule": "Rule", "value": "Value",
    "threshold": "Threshold", "message": "What happened",
    "p_within_tolerance": "Chance potential is within tolerance, in truth",
    "potential_lo": "Potential, low end of interval", "potential_hi": "Potential, high end",
    "min_p_within": "Least sure territory: chance within tolerance",
    "median_p_within": "Median territory: chance within tolerance",
    "predicted_share": "Predicted share of the moved units' sales",
    "actual_share": "Actual share of the moved units' sales", "share_error": "Share error",
}

SHARE_NAMES = {"penetration", "peer_penetration", "soft_tolerance", "mean_utilisation",
               "max_utilisation", "load_before", "load_after"}
SHARE_NAMES |= {"wape", "promised_wape", "coverage", "promised_coverage", "territory_wape",
                "reference_missing", "current_missing", "min_p_within", "median_p_within",
                "share_error"}
SIGNED_NAMES = {"bias", "wape_vs_promised", "mean_change"}
DECIMAL_NAMES = {"psi", "ks", "elongation", "median_elongation", "max_elongation",
                 "polsby_popper", "cpu_s"}


def column_kind(name: str, values: pd.Series) -> str:
    """The kind of a column, from its code name and its dtype."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return TEXT
    if name in SIGNED_NAMES or name.endswith(("_deviation", "_change_pct")):
        return SIGNED_SHARE
    if name in SHARE_NAMES or name.endswith(("_within_tolerance", "_share", "_utilisation")):
        return SHARE
    if name.endswith("_pct"):
        return PERCENT
    if (name in DECIMAL_NAMES or name.endswith(("_km", "_km2", "_s"))
            or name.startswith(("mean_km", "max_km"))):
        return DECIMAL
    return AMOUNT


def header(name: str) -> str:
    """A code name in words, with its unit: ``potential_deviation`` -> "Potential vs target"."""
    if name in WORDS:
        return WORDS[name]
    for suffix, words in (("_max_abs_deviation", ": worst deviation from target"),
                          ("_within_tolerance", ": share of territories within tolerance"),
                          ("_deviation", " vs target"), ("_total", ""), ("_target", " target"),
                          ("_role", ": role"), ("_before", " before"), ("_after", " after"),
                          ("_change", " change")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return header(name[: -len(suffix)]) + words
    match = re.fullmatch(r"(mean|max)_km_from_home_(before|after)", name)
    if match:
        what = "Mean" if match.group(1) == "mean" else "Longest"
        return f"{what} distance from the rep's home, {match.group(2)} (km)"
    for suffix, unit in (("_km2", " (km²)"), ("_km", " (km)"), ("_pct", " (%)")):
        if name.endswith(suffix):
            return header(name[: -len(suffix)]) + unit
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _text(value, kind: str) -> str:
    if value is None or pd.isna(value) or not np.isfinite(value):
        return ""
    if kind == SHARE:
        return f"{100 * value:.1f}%"
    if kind == SIGNED_SHARE:
        return f"{100 * value:+.1f}%"
    if kind == PERCENT:
        return f"{value:.1f}%"
    if kind == AMOUNT:
        return f"{value:,.0f}"
    if kind == DECIMAL:
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


@dataclass(frozen=True)
class Presented:
    """A table with its headers in words and the kind of each column (by new header)."""

    frame: pd.DataFrame
    kinds: dict[str, str]


def present(frame: pd.DataFrame) -> Presented:
    """Headers in words; numbers untouched (the kinds say how to show them).

    Two columns that would read the same keep their code name in brackets.
    """
    names = [header(str(c)) for c in frame.columns]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    names = [n if seen[n] == 1 else f"{n} [{c}]" for n, c in zip(names, frame.columns,
                                                                  strict=True)]
    kinds = {new: column_kind(str(old), frame[old]) for new, old in zip(names, frame.columns,
                                                                       strict=True)}
    return Presented(frame.set_axis(names, axis=1), kinds)


def as_text(presented: Presented) -> pd.DataFrame:
    """The table as the HTML shows it: every number formatted by its column's kind."""
    out = presented.frame.copy()
    for col, kind in presented.kinds.items():
        if kind != TEXT:
            out[col] = [_text(v, kind) for v in out[col]]
    return out
