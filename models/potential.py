"""PotentialEstimator: what comparable markets achieve.

A unit's sales are its market times the share its rep captures. Its own
sales history says how well it is served, not what it could sell, so the
estimator never sees it. Instead it learns, across all units, the
conditional distribution of annual sales given *market* features only:
demographics, neighbours' markets and the unit's size. A high conditional
quantile (0.8 by default) of that distribution is "what comparable markets
achieve" when they are served well, which is the potential. A badly served
unit then shows a potential well above its sales: white space.

The quantile is fitted on ``log1p(sales)``; quantiles commute with monotone
transforms, so ``expm1`` of the fitted quantile is the quantile of sales.
LightGBM does not allow monotone constraints with the quantile objective,
so "more population never lowers potential" is a tendency the model learns
from the data; the test suite checks it.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from territory.features.errors import InputError


class PotentialEstimator(BaseEstimator, RegressorMixin):
    """LightGBM quantile regression of annual sales on market features.

    Parameters
    ----------
    quantile
        Conditional quantile that defines potential.
    random_state
        Seed for LightGBM's bagging.
    """

    def __init__(
        self,
        quantile: float = 0.8,
        n_estimators: int = 500,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        feature_fraction: float = 0.8,
        random_state: int = 42,
    ) -> None:
        self.quantile = quantile
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: pd.Series | np.ndarray) -> PotentialEstimator:
        """Fit on market features ``X`` (one row per unit) and annual sales ``y``."""
        y = np.asarray(y, dtype=float)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if X.index.is_unique:  # bagging depends on row order; fix it by unit
            order = np.argsort(X.index.to_numpy(), kind="stable")
            X, y = X.iloc[order], y[order]
        keep = ~np.isnan(y)
        if (y[keep] < 0).any():
            raise InputError("potential target", "annual sales must be >= 0", column="sales")
        if keep.sum() < 20:
            raise InputError(
                "potential target",
                f"only {int(keep.sum())} units have a full year of sales; need at least 20",
            )
        self.feature_names_ = list(X.columns)
        params = {
            "objective": "quantile",
            "alpha": self.quantile,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,  # a few thousand rows: threads only add OpenMP overhead
            "verbosity": -1,
        }
        data = lgb.Dataset(X.loc[keep].astype(np.float32), np.log1p(y[keep]))
        self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        self.n_features_in_ = len(self.feature_names_)
        return self

    def _design(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "booster_")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InputError(
                "market features",
                "columns the potential model was trained with are missing",
                column=missing[0],
                rows=missing,
            )
        return X[self.feature_names_].astype(np.float32)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Annual potential per row of ``X``."""
        return np.maximum(np.expm1(self.booster_.predict(self._design(X))), 0.0)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-unit contributions on the log scale (sum + bias = log1p potential)."""
        contrib = self.booster_.predict(self._design(X), pred_contrib=True)
        return pd.DataFrame(contrib[:, :-1], columns=self.feature_names_, index=X.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        check_is_fitted(self, "booster_")
        gain = self.booster_.feature_importance("gain")
        return pd.Series(gain, index=self.feature_names_).sort_values(ascending=False)


def describe_drivers(
    contributions: pd.DataFrame, top: int = 3, log_scale: bool = True
) -> pd.Series:
    """Top drivers per row in words a manager reads, e.g. ``"population +18%"``.

    With ``log_scale`` a contribution ``c`` is shown as the multiplicative
    effect ``exp(c) - 1``; otherwise as a signed share of the prediction.
    """
    names = np.asarray([c.replace("_nbr_mean", " (neighbours)").replace("_", " ")
                        for c in contributions.columns])
    values = contributions.to_numpy()
    order = np.argsort(-np.abs(values), axis=1)[:, :top]
    texts = []
    for row, idx in zip(values, order, strict=True):
        parts = []
        for j in idx:
            effect = np.expm1(row[j]) if log_scale else row[j]
            parts.append(f"{names[j]} {effect:+.0%}")
        texts.append("; ".join(parts))
    return pd.Series(texts, index=contributions.index)
