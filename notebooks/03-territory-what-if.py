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
# minimal-disruption rebalance of today's 50 territories. Each scenario follows
# the demo config's priorities: potential is hard at ±5% (met wherever
# feasible), workload is soft (balanced as tightly as potential and the shape
# limit allow, here at ±40%). The notebook only calls the package: the
# pipeline's stages estimate potential, the designer draws the territories.

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
from territory.pipelines.stages import (
    feature_stage,
    load_inputs,
    score_stage,
    train_stage,
    unit_geography,
)

ROOT = Path.cwd() if (Path.cwd() / "configs").exists() else Path.cwd().parent
config = load_config(ROOT / "configs" / "demo.yaml")
inputs = load_inputs(config)
features = feature_stage(config, inputs)
scores = score_stage(config, features, train_stage(config, features))
geo = unit_geography(config, inputs, features)
uid = geo.unit_ids
attributes = pd.DataFrame({
    "potential": scores.unit_totals["potential"].reindex(uid).to_numpy(),
    "workload": features.workload.reindex(uid).to_numpy(),
})
current = pd.Categorical(inputs.alignment.set_index("unit_id")["territory_id"].reindex(uid))

# %% [markdown]
# ## Scenarios

# %%
TOLERANCES = {"potential": 0.05, "workload": 0.40}  # potential hard, workload soft
tc = config.territories
results = {}
why = {}  # each design's diagnosis: blocks of territories that cannot balance, and why
today = evaluate_alignment(current.codes, geo.xy, geo.adjacency, attributes,
                           tolerances=TOLERANCES, areas=geo.areas)
results["today (current alignment)"] = today.overall
for k in (40, 50, 60):
    designer = TerritoryDesigner(n_territories=k, seed=1, soft_attributes=("workload",),
                                 max_elongation=tc.max_elongation,
                                 compactness_weight=tc.compactness_weight)
    designer.fit(geo.xy, geo.adjacency, attributes, tolerances=TOLERANCES, areas=geo.areas)
    results[f"fresh design, K={k}"] = designer.report_.overall
    why[f"fresh design, K={k}"] = designer.report_.diagnosis
rebalance = TerritoryDesigner(n_territories=50, seed=1, soft_attributes=("workload",))
rebalance.fit(geo.xy, geo.adjacency, attributes, current_labels=current.codes,
              tolerances=TOLERANCES, areas=geo.areas)
results["rebalance today's 50"] = rebalance.report_.overall
why["rebalance today's 50"] = rebalance.report_.diagnosis

columns = ["max_abs_deviation_potential", "max_abs_deviation_workload", "balance_index",
           "median_elongation", "max_elongation", "n_violations", "disruption_units_pct",
           "run_time_s"]
table = pd.DataFrame(results).T.reindex(columns=columns)
table

# %% [markdown]
# ## Worst imbalance per scenario
# Potential bars inside the green band meet its ±5% tolerance; workload is soft (±40%).

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
bound = rebalance_lower_bound(current.codes, attributes, 50, tolerances=TOLERANCES)
pd.Series({
    "units that must move, at least (%)": bound["units_pct"],
    "potential that must move, at least (%)": bound["potential_pct"],
    "units the rebalance moved (%)": rebalance.report_.overall["disruption_units_pct"],
    "violations left by the rebalance": rebalance.report_.overall["n_violations"],
}).round(1)

# %% [markdown]
# ## Why balance is not reached
# Each report's `diagnosis` names the blocks of territories that deviate the same
# way, their joint deviation and the tolerance their own units would need, and the
# giant units that hold more than a territory's share on their own. No lines: every
# hard rule holds. On the demo, the metropolitan north-east is potential-heavy and
# short of workload, which is why workload is soft.

# %%
for name, lines in why.items():
    print(f"{name}: {len(lines)} block(s)")
    for line in lines[:2]:
        print("  -", line)
