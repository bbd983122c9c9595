"""Typed config for the models stage: forecast, potential and territory design."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from territory.features.config import FrozenModel


class BacktestConfig(FrozenModel):
    """Rolling-origin backtest run by the train stage (``windows: 0`` turns it off).

    The last origin is ``horizon`` periods before the as-of date and the
    others are ``step`` periods apart; the model is refit at each origin.
    """

    windows: int = Field(2, ge=0, le=24)
    step: int = Field(3, ge=1)
    baselines: list[Literal["seasonal_naive", "moving_average", "ets"]] = Field(
        default_factory=lambda: ["seasonal_naive", "moving_average"]
    )


class ForecastConfig(FrozenModel):
    """Global LightGBM forecaster, direct multi-horizon.

    ``gate_metric`` (lower is better) decides promotion: the challenger
    becomes champion only if it beats the champion's score on the same
    backtest windows by at least ``gate_margin`` (relative). With the
    backtest off (``backtest.windows: 0``) the gate uses the same metric on
    the validation window (WAPE in place of MASE, which it lacks).
    """

    horizon: int = Field(12, ge=1, le=36)
    objective: Literal["l2_log_ratio", "huber_log_ratio", "l2_scaled", "l2_log", "tweedie",
                       "poisson"] = "l2_log_ratio"
    interval_level: float = Field(0.8, gt=0.0, lt=1.0)
    validation_periods: int = Field(12, ge=1)
    n_estimators: int = Field(600, ge=1)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0.0, le=1.0)
    bagging_fraction: float = Field(0.8, gt=0.0, le=1.0)
    lambda_l2: float = Field(0.0, ge=0.0)
    weighting: Literal["scale", "sqrt_scale", "equal"] = "sqrt_scale"
    log_offset: float = Field(0.05, gt=0.0, le=10.0)  # zeros: log(y + c·level), c = log_offset
    early_stopping_rounds: int = Field(50, ge=1)
    max_train_rows: int = Field(400_000, ge=1000)
    max_bin: int = Field(63, ge=15, le=1023)
    n_jobs: int = Field(1, ge=1)  # LightGBM threads; >1 only pays on an otherwise idle machine
    min_history: int = Field(12, ge=1)
    seed: int = 42
    gate_metric: Literal["wape", "mase", "mae", "rmse"] = "wape"
    gate_margin: float = Field(0.0, ge=0.0, lt=1.0)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)


class PotentialConfig(FrozenModel):
    """LightGBM quantile model of annual sales on market features only."""

    quantile: float = Field(0.8, gt=0.0, lt=1.0)
    n_estimators: int = Field(500, ge=1)
    learning_rate: float = Field(0.03, gt=0.0, le=1.0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.8, gt=0.0, le=1.0)
    seed: int = 42


class TerritoryConfig(FrozenModel):
    """Territory design scenario.

    ``n_territories: auto`` chooses K from ``rep_capacity`` (workload one rep
    can carry, in the unit of ``workload_column`` per period, e.g. accounts)
    and optionally ``potential_per_rep``: the smallest K from
    ``ceil(total / capacity)`` up to ``auto_max_extra`` more whose design
    meets the balance (see ``territory.models.territory_planning``). ``regions`` nests
    the territories into that many balanced, contiguous regions, within
    ``region_tolerance``.
    """

    n_territories: Annotated[int, Field(ge=1)] | Literal["auto"] = 50
    balance_attributes: list[Literal["potential", "workload", "forecast", "units"]] = Field(
        default_factory=lambda: ["potential", "workload"]
    )
    tolerance: float = Field(0.05, gt=0.0, lt=1.0)
    workload_column: str | None = "accounts"
    mode: Literal["fresh", "rebalance"] = "fresh"
    keep_rep_homes: bool = True
    max_restarts: int = Field(0, ge=0)
    max_chains: int | None = Field(None, ge=0)
    time_limit_s: float = Field(120.0, gt=0.0)
    seed: int = 42
    rep_capacity: float | None = Field(None, gt=0.0)  # workload per rep, for n_territories: auto
    potential_per_rep: float | None = Field(None, gt=0.0)  # potential one rep can cover (auto)
    auto_max_extra: int = Field(5, ge=0)  # auto: candidates tried above the capacity bound
    regions: int | None = Field(None, ge=1)  # nest territories into this many regions
    region_tolerance: float = Field(0.10, gt=0.0, lt=1.0)

    @field_validator("balance_attributes")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("name at least one attribute to balance")
        return list(dict.fromkeys(values))

    @model_validator(mode="after")
    def _auto_and_regions(self) -> TerritoryConfig:
        if self.n_territories == "auto":
            if self.rep_capacity is None:
                raise ValueError("n_territories: auto needs rep_capacity (workload per rep)")
            if self.mode == "rebalance":
                raise ValueError("mode: rebalance keeps the current territories; "
                                 "set n_territories to their number, not auto")
        elif self.regions is not None and self.regions > self.n_territories:
            raise ValueError(f"regions ({self.regions}) cannot exceed n_territories "
                             f"({self.n_territories})")
        return self
