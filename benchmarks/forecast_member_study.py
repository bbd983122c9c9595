"""Study: which forecast members ``territory`` combines, chosen on early origins only.

Works on the captures of ``forecast_rule_study.py --capture`` (every origin's
member predictions, calibration origins included). ``--extra`` adds the
candidate statsforecast members AutoCES and DynamicOptimizedTheta, fit once per
origin on the same history the captured members saw (ten seasons at most, all
of an annual history), and keeps them next to the captures with their CPU
seconds. Every member set (LightGBM and the current members always in the
pool; subsets with and without the candidates) is then combined with the
published rule (inverse MASE per horizon, trim 1.5, weights of the origins
before each one only) and scored on the EARLY scored origins (the first
``--early`` of each panel) against the best of AutoETS, AutoTheta and AutoARIMA
on the same rows. One set for every panel is chosen there, by the mean gap
over panels; its gap on the LATER scored origins, which played no part, and
on all scored origins (what ``territory backtest`` prints) is reported.

Run (not part of the test suite; seconds once the extra members are cached)::

    nice .venv/bin/python benchmarks/forecast_member_study.py --extra
    .venv/bin/python benchmarks/forecast_member_study.py
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import time

import forecast_rule_study as rs  # same folder
import forecast_statsforecast as fs
import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.features.frequency import frequency_spec
from territory.features.panel import make_panel, to_wide
from territory.models import combination as cb
from territory.models.statistical import statistical_forecasts

CANDIDATES = ("auto_ces", "dynamic_theta")
NAMED = ("auto_ets", "auto_theta", "auto_arima")  # the "best statistical model"
PANELS = ("aus_retail", "us_income", "tourism", "tourism_ragged")


def _wide(name: str) -> pd.DataFrame:
    loader, frequency, *_ = fs.PANELS[name]
    sales = loader()
    if name.startswith("tourism"):
        sales = fs.read_as_the_cli_does(sales, frequency)
    cols = ColumnsConfig()
    units = sorted(sales[cols.unit_col].unique())
    return to_wide(make_panel(sales, units, frequency, cols), cols.target_col, cols)


def capture_extra(name: str) -> None:
    """Fit the candidate members at every captured origin; keep their columns and CPU."""
    pred, members, horizon, kw, scored = rs.load(name)
    _, frequency, *_ = fs.PANELS[name]
    season = frequency_spec(frequency).season
    wide = _wide(name)
    periods = pd.DatetimeIndex(wide.columns)
    values = wide.to_numpy(dtype=float)
    columns, cpu = {}, {}
    for member in CANDIDATES:
        started = time.process_time()
        parts = []
        for origin in sorted(pred["origin"].unique()):
            t = periods.get_loc(origin)
            stat = statistical_forecasts(values[:, : t + 1], origin, horizon, season, frequency,
                                         (member,), level=kw["level"],
                                         max_history=10 * season if season > 1 else None)
            at = pred[pred["origin"] == origin]
            row = wide.index.get_indexer(at["unit_id"])
            hcol = at["horizon"].to_numpy().astype(int) - 1
            parts.append(pd.DataFrame({
                member: stat.point[member][row, hcol], f"{member}_lo": stat.lo[member][row, hcol],
                f"{member}_hi": stat.hi[member][row, hcol]}, index=at.index))
        cpu[member] = time.process_time() - started
        columns[member] = pd.concat(parts).reindex(pred.index)
        print(f"{name:15s} {member:14s} CPU {cpu[member]:.1f} s "
              f"({pred['origin'].nunique()} origins)", flush=True)
    with open(fs.CACHE / f"study_{name}.extra.pkl", "wb") as fh:
        pickle.dump((pd.concat(columns.values(), axis=1), cpu), fh)


def load(name: str):
    pred, members, horizon, kw, scored = rs.load(name)
    with open(fs.CACHE / f"study_{name}.extra.pkl", "rb") as fh:
        extra, cpu = pickle.load(fh)
    return pd.concat([pred, extra], axis=1), members, horizon, kw, scored, cpu


def member_sets() -> list[tuple[str, ...]]:
    """Every set of LightGBM plus at least two statistical members (AutoARIMA counts only
    where the panel's default has it: not for monthly data, as ``territory backtest``)."""
    pool = [*NAMED, *CANDIDATES]
    sets = []
    for k in range(2, len(pool) + 1):
        sets += [("forecast", *c) for c in itertools.combinations(pool, k)]
    return sets


def gaps(name: str, sets: list[tuple[str, ...]], early: int) -> pd.DataFrame:
    """Row-mean MASE gap of each set's combination to the best named member, per part."""
    pred, members, horizon, kw, scored, _ = load(name)
    named = [m for m in NAMED if m in pred]
    needed = ["actual", "scale", "forecast", *named, *CANDIDATES]
    records = []
    for chosen in sets:
        here = [m for m in chosen if m in pred]
        if len(here) < 3:
            continue
        out, _ = cb.add_combination(pred, here, horizon)
        s = out[out["origin"].isin(scored)]
        s = s[s[needed].notna().all(axis=1) & (s["scale"] > 0)]
        part = np.where(s["origin"].isin(sorted(scored)[:early]), "early", "later")
        for label, rows in (("early", s[part == "early"]), ("later", s[part == "later"]),
                            ("all", s)):
            err = {m: ((rows["actual"] - rows[m]).abs() / rows["scale"]).mean()
                   for m in ["territory", *named, *CANDIDATES]}
            best = min(named, key=err.get)
            records.append({"panel": name, "set": "+".join(chosen[1:]), "part": label,
                            "territory": err["territory"], "best": best, "best_mase": err[best],
                            "gap": err["territory"] / err[best] - 1,
                            **{f"mase_{m}": err[m] for m in CANDIDATES}})
    return pd.DataFrame(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panels", default=",".join(PANELS))
    parser.add_argument("--extra", action="store_true", help="fit the candidate members first")
    parser.add_argument("--early", type=int, default=2)
    args = parser.parse_args()
    names = args.panels.split(",")
    if args.extra:
        for name in names:
            capture_extra(name)
    pd.set_option("display.width", 200)
    frames = []
    for name in names:
        frames.append(gaps(name, member_sets(), args.early))
    rows = pd.concat(frames)
    for name in names:
        cand = rows[(rows["panel"] == name) & (rows["part"] == "all")].iloc[0]
        print(f"{name}: all scored origins, AutoCES {cand['mase_auto_ces']:.4f}, "
              f"DynamicOptimizedTheta {cand['mase_dynamic_theta']:.4f}, best named "
              f"{cand['best']} {cand['best_mase']:.4f}")
    table = rows.pivot_table(index="set", columns=["part", "panel"], values="gap")
    complete = table.dropna()  # sets every panel can form (auto_arima is monthly-absent)
    choice = complete["early"].mean(axis=1).sort_values()
    print("\nmean early gap over panels (sets every panel has), best first:")
    print(choice.round(4).to_string())
    chosen = str(choice.index[0])
    print(f"\nchosen on early origins: {chosen}")
    for part in ("early", "later", "all"):
        print(f"\n{part} origins: gap of territory to the best named statistical model")
        print((table[part] * 100).round(2).to_string())
    print(f"\nchosen set {chosen}, later origins: "
          f"{(table['later'].loc[chosen] * 100).round(2).to_dict()}")


if __name__ == "__main__":
    main()
