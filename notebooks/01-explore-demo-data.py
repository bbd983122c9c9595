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
# # 01 · Explore the demo data
#
# The demo company sells in 3,085 real US counties (PySAL's NAT data, 1990 census
# columns). Its sales, accounts, territories and reps are simulated; see
# `data/demo/README.md`. This notebook shows the inputs the pipeline reads:
# a map of the counties, the sales history, and how unbalanced today's
# alignment is. It only calls the package; nothing here is reused elsewhere.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from territory.features.spatial import build_adjacency, projected_xy
from territory.models.territories import evaluate_alignment
from territory.pipelines.config import load_config
from territory.pipelines.stages import load_inputs

ROOT = Path.cwd() if (Path.cwd() / "configs").exists() else Path.cwd().parent
config = load_config(ROOT / "configs" / "demo.yaml")
inputs = load_inputs(config)
units, sales, demographics = inputs.units, inputs.sales, inputs.demographics
print(f"{len(units):,} units, {len(sales):,} unit-months, "
      f"{sales['period'].min():%Y-%m} to {sales['period'].max():%Y-%m}")

# %% [markdown]
# ## Counties: population density

# %%
albers = units.to_crs(config.data.projected_crs)
density = albers[["unit_id", "geometry"]].merge(demographics, on="unit_id")
ax = density.plot(column=np.log10(density["population_density"].clip(lower=0.1)), cmap="viridis",
                  linewidth=0, legend=True, figsize=(10, 6),
                  legend_kwds={"label": "log10 people per km²", "shrink": 0.6})
ax.set_axis_off()
ax.set_title("Population density, 1990")
plt.show()

# %% [markdown]
# ## Sales history
# Total monthly sales, and the share of unit-months with no sale.

# %%
monthly = sales.groupby("period")["sales"].sum()
fig, ax = plt.subplots(figsize=(10, 3.5))
monthly.plot(ax=ax)
ax.set_ylabel("sales")
ax.set_title("Company sales per month")
plt.show()
print(f"zero months: {(sales['sales'] == 0).mean():.1%}")

# %% [markdown]
# ## Today's alignment is unbalanced
# Last-12-month sales and mean accounts per territory, against the mean.

# %%
last_year = sales[sales["period"] > sales["period"].max() - pd.DateOffset(months=12)]
per_unit = last_year.groupby("unit_id").agg(sales=("sales", "sum"), accounts=("accounts", "mean"))
uid = units["unit_id"].to_numpy()
attributes = per_unit.reindex(uid).fillna(0.0).reset_index(drop=True)
current = inputs.alignment.set_index("unit_id")["territory_id"].reindex(uid)
codes = pd.Categorical(current).codes
graph = build_adjacency(units, projected_crs=config.data.projected_crs)
report = evaluate_alignment(codes, projected_xy(units, config.data.projected_crs), graph.matrix,
                            attributes, tolerance=0.05)
summary = report.territories.assign(territory=pd.Categorical(current).categories)
ax = summary.sort_values("sales_deviation").plot.bar(x="territory", y="sales_deviation",
                                                      figsize=(12, 3.5), legend=False)
ax.axhspan(-0.05, 0.05, color="green", alpha=0.15)
ax.set_ylabel("sales vs mean")
plt.show()
print({k: v for k, v in report.overall.items() if k.startswith("max_abs_deviation")})
