# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Territory what-if
#
# Compare scenarios on the demo: 40, 50 or 60 territories designed fresh, and a
# minimal-disruption rebalance of today's 50 territories. Each scenario is
# balanced on estimated potential and workload at ±5%. The notebook only calls
# the package: the pipeline's stages estimate potential, the designer draws
# the territories.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from territory.models.territories import (
    TerritoryDesigner,
    evaluate_alignment,
    rebalance_lower_bound,
)
from territory.pipelines.config import load_config
from territory.pipelines.stages import feature_stage, load_inputs, score_stage, train_stage

ROOT = Path.cwd() if (Path.cwd() / "configs").exists() else Path.cwd().parent
config = load_config(ROOT / "configs" / "demo.yaml")
inputs = load_inputs(config)
features = feature_stage(config, inputs)
scores = score_stage(config, features, train_stage(config, features))
uid = inputs.units["unit_id"].to_numpy()
attributes = pd.DataFrame({
    "potential": scores.unit_totals["potential"].reindex(uid).to_numpy(),
    "workload": features.workload.reindex(uid).to_numpy(),
})
current = pd.Categorical(inputs.alignment.set_index("unit_id")["territory_id"].reindex(uid))

# %% [markdown]
# ## Scenarios

# %%
TIME_LIMIT_S = 60.0  # a safety net; the chain budget below bounds the work
MAX_CHAINS = 50  # ejection chains per repair round: fewer is faster, more balances better
scenarios = {"today (current alignment)": None}
results = {}
why = {}  # each design's diagnosis: blocks of territories that cannot balance, and why
today = evaluate_alignment(current.codes, features.xy, features.graph.matrix, attributes,
                           tolerance=0.05)
results["today (current alignment)"] = today.overall
for k in (40, 50, 60):
    designer = TerritoryDesigner(n_territories=k, tolerance=0.05, seed=1,
                                 time_limit_s=TIME_LIMIT_S, max_restarts=0,
                                 max_chains=MAX_CHAINS)
    designer.fit(features.xy, features.graph.matrix, attributes)
    results[f"fresh design, K={k}"] = designer.report_.overall
    why[f"fresh design, K={k}"] = designer.report_.diagnosis
# A rebalance needs long chains of moves to carry surplus across territories: no chain cap.
rebalance = TerritoryDesigner(n_territories=50, tolerance=0.05, seed=1, time_limit_s=TIME_LIMIT_S)
rebalance.fit(features.xy, features.graph.matrix, attributes, current_labels=current.codes)
results["rebalance today's 50"] = rebalance.report_.overall
why["rebalance today's 50"] = rebalance.report_.diagnosis

columns = ["max_abs_deviation_potential", "max_abs_deviation_workload", "balance_index",
           "contiguous", "n_violations", "total_dispersion", "disruption_units_pct", "run_time_s"]
table = pd.DataFrame(results).T.reindex(columns=columns)
table

# %% [markdown]
# ## Worst imbalance per scenario
# Bars inside the green band meet the ±5% tolerance.

# %%
ax = table[["max_abs_deviation_potential", "max_abs_deviation_workload"]].astype(float).plot.barh(
    figsize=(9, 4))
ax.axvline(0.05, color="green", linestyle="--")
ax.set_xlabel("largest |deviation| from the mean territory")
plt.show()

# %% [markdown]
# ## How little can a rebalance move?
# A provable floor, whatever the algorithm: each territory over its upper bound
# must shed at least its largest units covering the surplus, each one under its
# lower bound must gain as many, and every moved unit leaves one territory and
# enters one (`rebalance_lower_bound`; it ignores contiguity, so the true
# minimum can be higher).

# %%
bound = rebalance_lower_bound(current.codes, attributes, 50, 0.05)
pd.Series({
    "units that must move, at least (%)": bound["units_pct"],
    "potential that must move, at least (%)": bound["potential_pct"],
    "units the rebalance moved (%)": rebalance.report_.overall["disruption_units_pct"],
    "violations left by the rebalance": rebalance.report_.overall["n_violations"],
}).round(1)

# %% [markdown]
# ## Why balance is not reached
# Each report's `diagnosis` names the blocks of territories that deviate the same
# way, their joint deviation and the tolerance their own units would need. On the
# demo, the metropolitan north-east is potential-heavy and short of workload.

# %%
for name, lines in why.items():
    print(f"{name}: {len(lines)} block(s)")
    for line in lines[:2]:
        print("  -", line)
