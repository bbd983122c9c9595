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
# # 02 · Model diagnostics
#
# How good are the forecast and the potential on the demo company, measured
# out of sample? The train stage refits the forecaster at each origin of a
# rolling-origin backtest (`forecast.backtest` in the config) and compares it
# with seasonal naive and a moving average on the same windows. This notebook
# shows those numbers, the interval coverage, and the drivers a manager sees.
# It only calls the package.

# %%
from pathlib import Path

import matplotlib.pyplot as plt

from territory.models.backtest import backtest_figures
from territory.pipelines import stages
from territory.pipelines.config import load_config

ROOT = Path.cwd() if (Path.cwd() / "configs").exists() else Path.cwd().parent
config = load_config(ROOT / "configs" / "demo.yaml")
inputs = stages.load_inputs(config)
features = stages.feature_stage(config, inputs)
trained = stages.train_stage(config, features)
result = trained.backtest
print(f"objective {config.forecast.objective}; origins "
      f"{', '.join(f'{o:%Y-%m}' for o in result.origins)}; horizon {result.horizon}")

# %% [markdown]
# ## Accuracy against the baselines, overall
# WAPE is total absolute error over total sales; MASE divides each error by the
# unit's in-sample seasonal-naive error, so 1.0 means "as good as repeating last
# year was in the past".

# %%
result.table(by=None).round(3)

# %% [markdown]
# ## Error by horizon, and totals from each origin

# %%
figures = backtest_figures(result)
plt.show()

# %% [markdown]
# ## Intervals
# The 80% interval should hold about 80% of outcomes it has not seen.

# %%
result.interval_table().round(3)

# %% [markdown]
# ## Drivers in words
# Forecast drivers are multiplicative effects on the unit's forecast (the model
# works on the log ratio of sales to the unit's recent level); potential
# drivers are multiplicative effects of market features.

# %%
scores = stages.score_stage(config, features, trained)
scores.unit_totals[["forecast", "potential", "forecast_drivers", "drivers"]].head(10)

# %%
print({k: round(v, 3) for k, v in scores.metrics.items()})
trained.forecaster.feature_importance().head(10)
