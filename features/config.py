"""Typed config for the features stage.

Each stage has one frozen pydantic model with ``extra="forbid"``; the YAML is
read once, in ``territory.pipelines.config``, and these objects are passed down.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from territory.features.frequency import FREQUENCIES, FrequencySpec, frequency_spec


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
    """Which features to build; column names derive from these parameters.

    Lags, windows and the level window count periods of ``frequency``; left
    out, they take that frequency's defaults (:mod:`territory.features.frequency`).
    The level window's rolling mean is each unit's recent level (the
    forecaster's scale and, unless ``spatial_lag_columns`` says otherwise, the
    feature whose neighbour mean is added); it is always among the windows.
    """

    frequency: Literal["YS", "QS", "MS", "W-MON"] = "MS"
    lags: list[int]
    rolling_windows: list[int]
    level_window: int = Field(ge=1)
    rolling_stats: list[Literal["mean", "std", "min", "max"]] = Field(
        default_factory=lambda: ["mean", "std"]
    )
    seasonality: bool = True
    trend: bool = True
    demographic_columns: list[str] | None = None
    # null: the level column (``<target>_roll_mean_w<level_window>``)
    spatial_lag_columns: list[str] | None = None
    contiguity: Literal["queen", "rook"] = "queen"

    @model_validator(mode="before")
    @classmethod
    def _frequency_defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        # an unknown frequency is named by the Literal; its defaults would be noise
        spec = FREQUENCIES.get(data.get("frequency", "MS"), FREQUENCIES["MS"])
        data = dict(data)
        data.setdefault("lags", list(spec.lags))
        windows = data.setdefault("rolling_windows", list(spec.windows))
        if not isinstance(windows, list) or not all(isinstance(w, int) for w in windows):
            return data  # the field validators say what is wrong
        if data.get("level_window") is None:
            data["level_window"] = (spec.level_window if spec.level_window in windows or
                                    not windows else max(windows))
        if data["level_window"] not in windows:
            data["rolling_windows"] = [*windows, data["level_window"]]
        return data

    @property
    def spec(self) -> FrequencySpec:
        """The frequency's season, words and defaults."""
        return frequency_spec(self.frequency)

    @property
    def season(self) -> int:
        """Periods in a year (1 for annual data: no seasonal features)."""
        return self.spec.season

    def level_column(self, target: str) -> str:
        """The feature holding each unit's recent level."""
        return f"{target}_roll_mean_w{self.level_window}"

    def spatial_lag_features(self, target: str) -> list[str]:
        """Features whose neighbour means are added (the level column by default)."""
        if self.spatial_lag_columns is None:
            return [self.level_column(target)]
        return list(self.spatial_lag_columns)

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
