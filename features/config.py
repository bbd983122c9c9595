"""Typed config for the features stage.

Each stage has one frozen pydantic model with ``extra="forbid"``; the YAML is
read once, in ``territory.pipelines.config``, and these objects are passed down.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FrozenModel(BaseModel):
    """Base for every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnsConfig(FrozenModel):
    """Names of the contract columns in the user's files."""

    unit_col: str = "unit_id"
    time_col: str = "period"
    target_col: str = "sales"
    territory_col: str = "territory_id"
    rep_col: str = "rep_id"
    year_col: str = "year"


class FeaturesConfig(FrozenModel):
    """Which features to build; column names derive from these parameters."""

    frequency: Literal["MS", "W-MON", "QS"] = "MS"
    lags: list[int] = Field(default_factory=lambda: [1, 2, 3, 6, 12])
    rolling_windows: list[int] = Field(default_factory=lambda: [3, 6, 12])
    rolling_stats: list[Literal["mean", "std", "min", "max"]] = Field(
        default_factory=lambda: ["mean", "std"]
    )
    seasonality: bool = True
    trend: bool = True
    demographic_columns: list[str] | None = None
    spatial_lag_columns: list[str] = Field(default_factory=lambda: ["sales_roll_mean_w12"])
    contiguity: Literal["queen", "rook"] = "queen"

    @field_validator("lags", "rolling_windows")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("must be positive integers")
        return sorted(set(values))

    @field_validator("rolling_stats")
    @classmethod
    def _includes_mean(cls, values: list[str]) -> list[str]:
        if "mean" not in values:
            raise ValueError("rolling_stats must include 'mean' (it sets each unit's scale)")
        return values
