"""Study: the combination's interval rule chosen on early origins, scored on later ones.

The interval variants of :mod:`forecast_rule_study` looked promising on the
scored origins, which is look-ahead. Here one rule is chosen for every panel
on the EARLY scored origins only (the first ``--early`` of each panel), by the
mean over panels of ``|coverage - nominal|``, and its coverage is then reported
on the LATER scored origins, which played no part in the choice. At every
origin a rule sees only the errors of the origins before it (targets known at
that origin), as the run does.

It also prints a rule chosen per panel on that panel's own early origins (what a
run could do on its own backtest). Candidates: the current rule (log errors
pooled per horizon, every earlier origin weighing the same), recency weighting
with a half-life of 0.5, 1 or 2 origins, the common-shock variant, and adaptive
conformal levels (:func:`territory.models.combination.adaptive_level`: the
quantile level that would have covered 80% at the earlier origins, each scored
with the origins before it; ``adaptive_half`` moves half-way to it).

Needs the captures of ``forecast_rule_study.py --capture`` in the benchmark
cache (seconds once they are there). Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_interval_study.py
"""

from __future__ import annotations

import argparse

import forecast_rule_study as rs  # same folder
import numpy as np
import pandas as pd

from territory.models import combination as cb

CANDIDATES = {"current": None, "recent_hl0.5": 0.5, "recent_hl1": 1.0, "recent_hl2": 2.0,
              "shock": "shock", "adaptive": "adaptive", "adaptive_half": "adaptive_half",
              "adaptive_per_h": "adaptive_per_h"}


def _adaptive_per_horizon(at: pd.DataFrame, earlier: pd.DataFrame, horizon: int, level: float,
                          short_periods: int):
    """Conformal bounds with an adaptive level of each horizon's own."""
    lo, hi = np.full(len(at), np.nan), np.full(len(at), np.nan)
    for h in range(1, horizon + 1):
        mine, rows = (at["horizon"] == h).to_numpy(), earlier[earlier["horizon"] == h]
        found = cb.adaptive_level(rows, "territory", level, horizon, short_periods)
        table = cb.conformal_table(rows, "territory", found, horizon, short_periods)
        nan = np.full(int(mine.sum()), np.nan)
        lo[mine], hi[mine] = cb.conformal_bounds(at[mine], "territory", table, short_periods,
                                                 nan, nan)
    return lo, hi


def _adaptive(at: pd.DataFrame, earlier: pd.DataFrame, rule: str, horizon: int, level: float,
              short_periods: int):
    """Conformal bounds at the level that covered ``level`` at the earlier origins
    (``adaptive``), or half-way between it and ``level`` (``adaptive_half``)."""
    found = cb.adaptive_level(earlier, "territory", level, horizon, short_periods)
    quantile = found if rule == "adaptive" else (found + level) / 2
    table = cb.conformal_table(earlier, "territory", quantile, horizon, short_periods)
    nan = np.full(len(at), np.nan)
    return cb.conformal_bounds(at, "territory", table, short_periods, nan, nan)


def _bounds(at: pd.DataFrame, earlier: pd.DataFrame, rule, horizon: int, level: float):
    """The 80% bounds of ``at`` from the log errors of ``earlier`` under ``rule``."""
    f = at["territory"].to_numpy()
    lo, hi = np.full(len(at), np.nan), np.full(len(at), np.nan)
    ages = {o: k for k, o in enumerate(sorted(earlier["origin"].unique(), reverse=True))}
    age = earlier["origin"].map(ages).to_numpy(dtype=float)
    weight = 0.5 ** (age / rule) if isinstance(rule, float) else np.ones(len(earlier))
    variant = "shock" if rule == "shock" else "log"
    for h in range(1, horizon + 1):
        m, r = (earlier["horizon"] == h).to_numpy(), (at["horizon"] == h).to_numpy()
        e = earlier[m]
        err = cb._log_ratio(e["actual"].to_numpy(), e["territory"].to_numpy())
        ql, qh = rs._quantiles(err, weight[m], e["origin"].to_numpy(), variant, level)
        c = 0.05 * np.maximum(f[r], 0) + 1e-9
        lo[r] = np.maximum((f[r] + c) * np.exp(ql) - c, 0)
        hi[r] = (f[r] + c) * np.exp(qh) - c
    return lo, hi


def coverage_by_origin(name: str) -> pd.DataFrame:
    """Coverage per scored origin and rule (rows: origins oldest first; columns: rules)."""
    pred, members, horizon, kw, scored = rs.load(name)
    out, used = cb.add_combination(pred, members, horizon, adaptive=False, **kw)
    adapted, _ = cb.add_combination(pred, members, horizon, adaptive=True, **kw)  # as a run does
    records = []
    for origin in scored:
        at = out[out["origin"] == origin].copy()
        earlier = out[(out["origin"] < origin) & (out["target_period"] <= origin)]
        earlier = earlier.assign(territory=cb.combine(earlier, used[origin])[0])
        raw = earlier  # what add_combination calibrates on (scale not required)
        earlier = earlier[earlier[["actual", "territory"]].notna().all(axis=1)
                          & (earlier["scale"] > 0)]
        keep = at[["actual", "territory"]].notna().all(axis=1) & (at["scale"] > 0)
        for label, rule in CANDIDATES.items():
            if rule is None:
                lo, hi = at["territory_lo"].to_numpy(), at["territory_hi"].to_numpy()
            elif rule == "adaptive":
                mine = adapted[adapted["origin"] == origin]
                lo, hi = mine["territory_lo"].to_numpy(), mine["territory_hi"].to_numpy()
            elif rule == "adaptive_per_h":
                lo, hi = _adaptive_per_horizon(at, raw, horizon, kw["level"], kw["short_periods"])
            elif rule == "adaptive_half":
                lo, hi = _adaptive(at, raw, rule, horizon, kw["level"], kw["short_periods"])
            else:
                lo, hi = _bounds(at, earlier, rule, horizon, kw["level"])
            a = at["actual"].to_numpy()
            inside = (a >= lo) & (a <= hi)
            short = (at["history_periods"] < kw["short_periods"]).to_numpy()
            records.append({"origin": origin, "rule": label, "rows": int(keep.sum()),
                            "inside": int(inside[keep].sum()),
                            "short_rows": int((keep & short).sum()),
                            "short_inside": int(inside[keep & short].sum())})
    return pd.DataFrame(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panels", default="aus_retail,us_income,tourism,tourism_ragged")
    parser.add_argument("--early", type=int, default=2, help="scored origins to choose on")
    parser.add_argument("--nominal", type=float, default=0.8)
    args = parser.parse_args()
    frames = []
    for name in args.panels.split(","):
        table = coverage_by_origin(name)
        origins = sorted(table["origin"].unique())
        table["part"] = np.where(table["origin"].isin(origins[: args.early]), "early", "later")
        frames.append(table.assign(panel=name))
    rows = pd.concat(frames)
    sums = rows.groupby(["part", "panel", "rule"])[["rows", "inside", "short_rows",
                                                    "short_inside"]].sum()
    cov = (sums["inside"] / sums["rows"]).rename("coverage")
    early = cov.loc["early"].unstack("rule")
    miss = (early - args.nominal).abs().mean()
    chosen = str(miss.idxmin())
    pd.set_option("display.width", 160)
    print(f"early origins (the first {args.early} scored of each panel): coverage")
    print(early.round(3).to_string())
    print("mean |coverage - nominal| over panels:", miss.round(4).to_dict())
    print(f"chosen on early origins: {chosen}\n")
    later = cov.loc["later"].unstack("rule")
    print("later origins (not used in the choice): coverage")
    print(later.round(3).to_string())
    short = (sums["short_inside"] / sums["short_rows"].replace(0, np.nan)).loc["later"]
    print("\nlater origins, series with < 3 years of history (rows):")
    print(pd.DataFrame({"coverage": short.unstack("rule")[chosen].round(3),
                        "rows": sums["short_rows"].loc["later"].unstack("rule")[chosen]})
          .to_string())
    target = later[chosen].between(0.77, 0.83)
    print(f"\n{chosen} on later origins within 0.77-0.83: {target.to_dict()}")
    own = (early - args.nominal).abs().idxmin(axis=1)  # each panel on its own early origins
    per_panel = pd.DataFrame({"chosen_on_early": own, "early": [early.loc[p, r] for p, r in
                                                               own.items()],
                              "later": [later.loc[p, r] for p, r in own.items()]})
    per_panel["later_in_0.77-0.83"] = per_panel["later"].between(0.77, 0.83)
    print("\na rule chosen per panel on its own early origins:")
    print(per_panel.round(3).to_string())


if __name__ == "__main__":
    main()
