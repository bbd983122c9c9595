"""What the served recommender does, as a plain object (no MLflow here).

``RecommenderBundle`` holds the fitted potential model, the champion's
forecasts as of the scoring date, the current and proposed alignment and the
peer table used for "comparable units". ``score`` takes unit feature rows
(``unit_id`` plus the market feature columns) and returns scores,
assignments, actions and reasons. Input problems raise
:class:`ScoringInputError`, which the serving layer turns into a 4xx reply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from territory.features.errors import shorten
from territory.models.potential import PotentialEstimator, describe_drivers
from territory.models.recommend import territory_deviation


class ScoringInputError(ValueError):
    """A request the recommender cannot score; the message names the problem.

    Messages echo at most :data:`territory.features.errors.MAX_VALUE_SHOWN`
    characters of any input value and five values in all.
    """


def _listed(values: list, n: int = 5) -> str:
    """The first ``n`` values, each shortened, and how many more there are."""
    shown = ", ".join(shorten(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def _to_float(value) -> float | None:
    """A request value as a float; NaN for null, None for text that is not a number."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if not np.isnan(number) else np.inf  # the text "nan" is not a value
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return np.inf


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floats, which are not numbers, which are infinite) of one request column."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(float, na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool), np.isinf(values)
    converted = [_to_float(v) for v in column.to_numpy(object)]
    wrong = np.array([v is None for v in converted], dtype=bool)
    values = np.array([np.nan if v is None else v for v in converted], dtype=float)
    return values, wrong, np.isinf(values)


OUTPUT_COLUMNS = [
    "unit_id", "forecast", "forecast_lo", "forecast_hi", "potential", "white_space",
    "penetration", "current_territory", "proposed_territory", "action", "reason", "drivers",
]


@dataclass
class RecommenderBundle:
    """Everything needed to score units without the training data."""

    potential_model: PotentialEstimator
    unit_forecasts: pd.DataFrame  # index unit: forecast, forecast_lo, forecast_hi (horizon sums)
    alignment: pd.DataFrame  # index unit: current_territory, proposed_territory
    peer_edges: np.ndarray  # potential decile upper edges
    peer_penetration: np.ndarray  # median penetration per decile
    current_deviation: pd.Series  # potential deviation by current territory
    proposed_deviation: pd.Series  # potential deviation by proposed territory
    unit_col: str = "unit_id"
    under_served_ratio: float = 0.7
    # Drivers of the units' own features, computed once: SHAP contributions are
    # ~50x slower than a prediction, and most requests send unchanged features.
    reference_features: pd.DataFrame | None = None
    reference_drivers: pd.Series | None = None

    def _drivers(self, features: pd.DataFrame) -> pd.Series:
        """Driver text per row; recomputed only for rows that differ from the reference."""
        out = pd.Series("", index=features.index, dtype=object)
        todo = np.ones(len(features), dtype=bool)
        if self.reference_features is not None and self.reference_drivers is not None:
            ref = self.reference_features.reindex(features.index)[self.feature_columns]
            same = np.isclose(ref.to_numpy(float), features.to_numpy(float), rtol=1e-9,
                              atol=0.0, equal_nan=True).all(axis=1)
            out[same] = self.reference_drivers.reindex(features.index[same]).to_numpy()
            todo = ~same
        if todo.any():
            changed = features.loc[todo]
            out[todo] = describe_drivers(self.potential_model.contributions(changed)).to_numpy()
        return out

    @property
    def feature_columns(self) -> list[str]:
        return list(self.potential_model.feature_names_)

    def _validate(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Feature rows indexed by unit, as floats; a bad request raises ScoringInputError.

        Missing values (null) are allowed, as in training; text that is not a
        number and infinite numbers (``Infinity``, ``1e999``, ``"inf"``) are not.
        """
        if self.unit_col not in rows.columns:
            raise ScoringInputError(f"missing column '{shorten(self.unit_col)}'")
        missing = [c for c in self.feature_columns if c not in rows.columns]
        if missing:
            raise ScoringInputError(f"missing feature column(s): {_listed(missing)}")
        ids = rows[self.unit_col].astype(str)
        unknown = sorted(set(ids) - set(self.alignment.index))
        if unknown:
            raise ScoringInputError(f"unknown {self.unit_col}: {_listed(unknown)}")
        features = {}
        for col in self.feature_columns:
            values, wrong, infinite = _numbers(rows[col])
            for bad, rule in ((wrong, "must be numeric"),
                              (infinite, "must be a finite number (null for a missing value)")):
                if bad.any():
                    pairs = [f"{shorten(u)}={shorten(repr(v))}"
                             for u, v in zip(ids[bad], rows.loc[bad, col], strict=True)]
                    raise ScoringInputError(f"column '{col}' {rule}; got {_listed(pairs)}")
            features[col] = values
        return pd.DataFrame(features, index=pd.Index(ids.to_numpy(), name=self.unit_col))

    def score(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Scores, territories, action and reason for each input row."""
        features = self._validate(rows)
        ids = features.index
        potential = pd.Series(self.potential_model.predict(features), index=ids)
        drivers = self._drivers(features)
        fc = self.unit_forecasts.reindex(ids)
        al = self.alignment.reindex(ids)
        out = pd.DataFrame({
            self.unit_col: ids,
            "forecast": fc["forecast"].to_numpy(),
            "forecast_lo": fc["forecast_lo"].to_numpy(),
            "forecast_hi": fc["forecast_hi"].to_numpy(),
            "potential": potential.to_numpy(),
        })
        out["white_space"] = out["potential"] - out["forecast"]
        out["penetration"] = np.where(out["potential"] > 0, out["forecast"] / out["potential"],
                                      np.nan)
        out["current_territory"] = al["current_territory"].to_numpy()
        out["proposed_territory"] = al["proposed_territory"].to_numpy()
        decile = np.minimum(np.searchsorted(self.peer_edges, out["potential"].to_numpy()),
                            len(self.peer_penetration) - 1)
        peer = self.peer_penetration[decile]
        actions, reasons = [], []
        for pen, peer_pen, cur, new in zip(out["penetration"], peer, out["current_territory"],
                                           out["proposed_territory"], strict=True):
            if str(cur) != str(new):
                dev = self.current_deviation.get(cur, np.nan)
                actions.append("move")
                reasons.append(f"move from {cur} to {new}: {cur} is {abs(dev):.0%} "
                               f"{'over' if dev > 0 else 'under'} potential balance; {new} ends "
                               f"{self.proposed_deviation.get(new, np.nan):+.0%} from balance")
            elif pen == pen and pen < self.under_served_ratio * peer_pen:
                actions.append("grow")
                reasons.append(f"under-served: penetration {pen:.0%} vs {peer_pen:.0%} "
                               "for comparable units")
            else:
                actions.append("keep")
                reasons.append(f"keep in {new}")
        out["action"] = actions
        out["reason"] = reasons
        out["drivers"] = drivers.to_numpy()
        return out[[self.unit_col, *OUTPUT_COLUMNS[1:]]].reset_index(drop=True)


def build_bundle(
    potential_model: PotentialEstimator,
    unit_recs: pd.DataFrame,
    unit_col: str = "unit_id",
    market_features: pd.DataFrame | None = None,
) -> RecommenderBundle:
    """Bundle from the pipeline's per-unit recommendations (index = unit).

    ``market_features`` (index = unit) lets the bundle cache each unit's drivers.
    """
    pot = unit_recs["potential"]
    edges = np.quantile(pot, np.linspace(0.1, 1.0, 10))
    decile = np.minimum(np.searchsorted(edges, pot.to_numpy()), 9)
    peer = unit_recs["penetration"].groupby(decile).median().reindex(range(10)).ffill().bfill()
    alignment = unit_recs[["current_territory", "proposed_territory"]].copy()
    alignment.index = alignment.index.astype(str)
    forecasts = unit_recs[["forecast", "forecast_lo", "forecast_hi"]].copy()
    forecasts.index = forecasts.index.astype(str)
    reference = drivers = None
    if market_features is not None:
        reference = market_features[list(potential_model.feature_names_)].astype(float)
        reference.index = reference.index.astype(str)
        drivers = describe_drivers(potential_model.contributions(reference))
    return RecommenderBundle(
        potential_model=potential_model,
        unit_forecasts=forecasts,
        alignment=alignment,
        peer_edges=edges,
        peer_penetration=peer.to_numpy(),
        current_deviation=territory_deviation(pot, unit_recs["current_territory"]),
        proposed_deviation=territory_deviation(pot, unit_recs["proposed_territory"]),
        unit_col=unit_col,
        reference_features=reference,
        reference_drivers=drivers,
    )
