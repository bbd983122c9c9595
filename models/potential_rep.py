"""RepAdjustedPotential: the market's part of sales, with the rep's effect taken out.

A unit's sales are its market times the share its territory's rep captures.
A quantile of comparable markets' sales (:class:`PotentialEstimator`) mixes
the two: regions served by strong reps look rich, regions served by weak
reps look poor, and a territory plan balanced on it is not balanced in truth.

This estimator models log annual sales as a market part plus a territory
(rep) effect::

    log1p(sales_i) = f(market features_i) + r_territory(i) + noise

fitted by backfitting: LightGBM (L2) learns ``f`` with the current rep
effects as a fixed offset, then each territory's effect is its units' mean
residual shrunk towards zero (``shrinkage`` pseudo-units), centred; a few
rounds. The rep's id is never a feature, so ``f`` cannot tell territories
apart except through the markets themselves. Potential is the market part
at a reference rep effect, the ``reference_quantile`` of the estimated
effects: "what this market sells with a good rep".

A year of a small unit's sales is noisy (few, large orders), a large
unit's is not. When the features give each unit's split-half log ratio
(:func:`territory.features.feature_set.annual_split_log_ratio`),
:func:`sampling_variance` turns it into each unit's noise variance ``s_i^2``,
pooled over units of similar size, and the fit uses it twice:

* units are weighted by ``1 / (market_variance + s_i^2)`` in the market
  model and in each territory's mean residual, so a territory's effect is
  not set by its noisiest units;
* the unit's own residual (its sales, less its market part and its
  territory's effect) is credited to its potential with weight
  ``market_variance / (market_variance + s_i^2)``: a large unit's potential
  follows its own sales with the rep taken out, a tiny unit's follows
  comparable markets (``own_sales: false`` turns this off).

Without split-half ratios (annual data) the noise is unknown: units are
weighted equally and potential is the market part alone.

``market_variance`` (the spread of real markets around ``f``, log scale) was
chosen on next-year sales (benchmarks/potential_next_year.py). Potential
still never depends on who serves a unit in a plan: the rep of the current
territory is taken out once, when fitting.

:func:`rep_effect_cross_validation` is the criterion for choosing it that
real data also has: units held out by spatial blocks, their sales predicted
from their market plus their territory's effect (estimated on the other
units), against the market alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted

from territory.features.errors import InputError
from territory.models import backtest
from territory.models.config import PotentialConfig
from territory.models.potential import PotentialEstimator


class RepAdjustedPotential(BaseEstimator, RegressorMixin):
    """Market part of log sales (LightGBM) at a reference territory effect.

    Parameters
    ----------
    n_rounds
        Backfitting rounds (market model, then territory effects).
    shrinkage
        Pseudo-units of a zero effect in each territory's mean residual.
    relaxation
        Step of each round's update of the effects (1: plain backfitting; above 1
        converges faster, as the market part first absorbs some of the rep effect).
    reference_quantile
        Quantile of the territory effects that potential is stated at.
    market_variance
        Variance of markets around the market part (log scale): with units'
        sampling variances it sets the weights and the credit of own sales.
    own_sales
        Credit each fitted unit's own residual to its potential (needs ``split``).
    random_state
        Seed for LightGBM's bagging.
    """

    def __init__(
        self,
        n_rounds: int = 6,
        shrinkage: float = 0.0,
        reference_quantile: float = 0.9,
        relaxation: float = 1.5,
        market_variance: float = 0.03,
        own_sales: bool = True,
        n_estimators: int = 250,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        feature_fraction: float = 0.8,
        random_state: int = 42,
    ) -> None:
        self.n_rounds = n_rounds
        self.shrinkage = shrinkage
        self.reference_quantile = reference_quantile
        self.relaxation = relaxation
        self.market_variance = market_variance
        self.own_sales = own_sales
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.random_state = random_state

    def _params(self) -> dict:
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbosity": -1,
        }

    def fit(self, X: pd.DataFrame, y: pd.Series | np.ndarray,
            groups: pd.Series | np.ndarray | None = None,
            split: pd.Series | np.ndarray | None = None) -> RepAdjustedPotential:
        """Fit on market features ``X`` (one row per unit), annual sales ``y``, the
        territory of each unit ``groups`` (NaN: unassigned, left out of the fit) and,
        optionally, each unit's split-half log ratio ``split`` (NaN: unknown)."""
        y = np.asarray(y, dtype=float)
        if groups is None:
            raise InputError("potential model", "the rep-adjusted potential needs the "
                             "current territory of each unit", column="groups",
                             hint="set data.alignment, or potential.method: quantile")
        groups = pd.Series(np.asarray(groups, dtype=object))
        split = np.full(len(y), np.nan) if split is None else np.asarray(split, dtype=float)
        if not len(X) == len(y) == len(groups) == len(split):
            raise ValueError(f"X, y, groups and split have {len(X)}, {len(y)}, {len(groups)}, "
                             f"{len(split)} rows")
        if X.index.is_unique:  # bagging depends on row order; fix it by unit
            order = np.argsort(X.index.to_numpy(), kind="stable")
            X, y, split = X.iloc[order], y[order], split[order]
            groups = groups.iloc[order].reset_index(drop=True)
        keep = ~np.isnan(y) & groups.notna().to_numpy()
        if (y[~np.isnan(y)] < 0).any():
            raise InputError("potential target", "annual sales must be >= 0", column="sales")
        if keep.sum() < 20:
            raise InputError(
                "potential target",
                f"only {int(keep.sum())} units have a full year of sales and a territory; "
                "need at least 20",
            )
        self.feature_names_ = list(X.columns)
        design = X.loc[keep].astype(np.float32)
        target = np.log1p(y[keep])
        noise = sampling_variance(target, split[keep])  # NaN: unknown
        weights = 1.0 / (self.market_variance + np.nan_to_num(noise))
        codes, names = pd.factorize(groups[keep].astype(str), sort=True)
        effects = np.zeros(len(names))
        counts = np.bincount(codes, minlength=len(names))
        weight_sums = np.bincount(codes, weights, len(names))
        # LightGBM does not start from the mean when given an init_score: centre the target
        self.offset_ = float(np.average(target, weights=weights))
        for _ in range(self.n_rounds):
            data = lgb.Dataset(design, target - self.offset_, weight=weights,
                               init_score=effects[codes])
            booster = lgb.train(self._params(), data, num_boost_round=self.n_estimators)
            residual = target - self.offset_ - booster.predict(design)
            target_effects = (np.bincount(codes, residual * weights, len(names))
                              / (weight_sums + self.shrinkage * weights.mean()))
            effects = effects + self.relaxation * (target_effects - effects)
            effects -= np.average(effects, weights=counts)
        self.booster_ = booster
        self.territory_effects_ = pd.Series(effects, index=pd.Index(names, name="territory"))
        self.reference_effect_ = float(np.quantile(effects, self.reference_quantile))
        own = residual - effects[codes]
        credibility = np.nan_to_num(self.market_variance / (self.market_variance + noise))
        if not self.own_sales:
            credibility = np.zeros_like(credibility)
        self.unit_noise_ = pd.Series(noise, index=design.index)
        self.own_credit_ = pd.Series(credibility * own, index=design.index)
        # error variances (log scale): a unit's own (markets' spread, less what its credited
        # sales tell), and its territory's rep effect's (shared by the territory's units)
        self.unit_log_variance_ = pd.Series(self.market_variance * (1.0 - credibility),
                                            index=design.index)
        self.territory_effect_variance_ = pd.Series(1.0 / weight_sums,
                                                    index=pd.Index(names, name="territory"))
        self.n_features_in_ = len(self.feature_names_)
        return self

    def _design(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "booster_")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InputError("market features",
                             "columns the potential model was trained with are missing",
                             column=missing[0], rows=missing)
        return X[self.feature_names_].astype(np.float32)

    def market_log(self, X: pd.DataFrame) -> np.ndarray:
        """The market part ``f`` on the ``log1p`` scale (territory effect 0)."""
        return self.booster_.predict(self._design(X)) + self.offset_

    def unit_log(self, X: pd.DataFrame) -> np.ndarray:
        """Log potential at effect 0: the market part plus each fitted unit's credited own
        residual (matched on ``X``'s index; 0 for a unit not in the fit)."""
        credit = self.own_credit_.reindex(X.index).fillna(0.0).to_numpy()
        return self.market_log(X) + credit

    def log_variance(self, X: pd.DataFrame) -> pd.Series:
        """Error variance of each row's log potential, its own part (a unit not in the fit:
        ``market_variance``); the shared part is ``territory_effect_variance_``."""
        check_is_fitted(self, "booster_")
        return self.unit_log_variance_.reindex(X.index).fillna(self.market_variance)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Annual potential per row of ``X``: the unit's market, with its own sales' credit,
        at the reference effect."""
        return np.maximum(np.expm1(self.unit_log(X) + self.reference_effect_), 0.0)

    def predict_sales(self, X: pd.DataFrame, groups) -> np.ndarray:
        """Expected annual sales with each row's own territory effect (0 for a new one)."""
        effect = self.territory_effects_.reindex(np.asarray(groups, dtype=object).astype(str))
        return np.maximum(np.expm1(self.market_log(X) + effect.fillna(0.0).to_numpy()), 0.0)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-unit contributions on the log scale (sum + bias + ``offset_`` = the market
        part)."""
        contrib = self.booster_.predict(self._design(X), pred_contrib=True)
        return pd.DataFrame(contrib[:, :-1], columns=self.feature_names_, index=X.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        check_is_fitted(self, "booster_")
        gain = self.booster_.feature_importance("gain")
        return pd.Series(gain, index=self.feature_names_).sort_values(ascending=False)


def sampling_variance(log_sales: np.ndarray, split: np.ndarray, n_bins: int = 10
                      ) -> np.ndarray:
    """Noise variance of each unit's ``log1p`` annual sales, from split-half log ratios.

    The two interleaved halves of a year (``split`` = their ``log1p``
    difference) each carry twice the noise of the whole, so ``(d - median)^2 / 4``
    estimates the year's noise variance. One unit's value is a single draw,
    so it is pooled: the mean over ``n_bins`` quantile bins of ``log_sales``,
    interpolated (on the log of the variance) between the bins' median sizes.
    Units without a ratio get the value of their size. Without enough usable
    ratios (e.g. annual data) every unit gets NaN: no noise is known.
    """
    log_sales = np.asarray(log_sales, dtype=float)
    split = np.asarray(split, dtype=float)
    known = np.isfinite(split) & np.isfinite(log_sales)
    if known.sum() < 2 * n_bins:
        return np.full(len(log_sales), np.nan)
    centred = split[known] - np.median(split[known])
    bins = pd.qcut(log_sales[known], n_bins, labels=False, duplicates="drop")
    variance = pd.Series(centred**2 / 4.0).groupby(bins).mean().to_numpy()
    middle = pd.Series(log_sales[known]).groupby(bins).median().to_numpy()
    variance = np.maximum(variance, 1e-6)
    level = np.where(np.isfinite(log_sales), log_sales, np.median(log_sales[known]))
    return np.exp(np.interp(level, middle, np.log(variance)))


def shared_log_variance(actual: np.ndarray, predicted: np.ndarray, groups: np.ndarray,
                        split: np.ndarray, market_variance: float) -> float:
    """Variance of a territory's log error that its units share, from held-out sales.

    Per territory, ``log(sum actual / sum predicted)`` over its held-out
    units; its variance across territories, less what independent unit errors
    (``market_variance`` plus each unit's sampling noise, weighted by its
    predicted share of the territory) would give, is the part they share (the
    rep effect's error, and market-model errors that are alike in a region).
    """
    noise = np.nan_to_num(sampling_variance(np.log1p(actual), split))
    frame = pd.DataFrame({"territory": groups, "actual": actual, "pred": predicted,
                          "pred_var": predicted**2 * (market_variance + noise)})
    sums = frame.groupby("territory").sum()
    ratio = np.log(sums["actual"] / sums["pred"])
    independent = sums["pred_var"] / sums["pred"] ** 2
    return float(max(np.mean((ratio - ratio.mean()) ** 2) - independent.mean(), 0.0))


def spatial_folds(xy: np.ndarray, n_folds: int, n_blocks: int, seed: int) -> np.ndarray:
    """Fold per unit: k-means blocks of nearby units, blocks dealt to folds at random."""
    n_blocks = max(n_folds, min(n_blocks, len(xy)))
    blocks = KMeans(n_blocks, n_init=1, random_state=seed).fit_predict(np.asarray(xy, float))
    fold_of_block = np.random.default_rng(seed).permutation(n_blocks) % n_folds
    return fold_of_block[blocks]


def rep_effect_cross_validation(
    make_estimator,
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    xy: np.ndarray,
    n_folds: int = 5,
    blocks_per_fold: int = 40,
    seed: int = 0,
    split: np.ndarray | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Held-out sales from the market plus the territory effect, by spatial blocks.

    Units are cut into ``n_folds * blocks_per_fold`` spatial blocks, dealt
    to ``n_folds`` folds; each fold's units are predicted by a model fitted
    on the others, with their territory's effect as estimated from the
    other units of that territory. Reported: RMSE of ``log1p`` annual sales
    with the territory effect and with the market part alone (effect 0),
    and per territory the relative error of its share of held-out sales.
    A territory effect that is real lowers the first below the second.
    ``potential_cv_shared_log_var`` is :func:`shared_log_variance` of the
    held-out predictions: the error a whole territory shares.
    ``split`` (split-half log ratios) is passed to each fold's fit.

    Returns
    -------
    metrics, territories
        The metrics, and per territory ``n_units``, ``held_out_sales``,
        ``predicted_sales`` and ``sales_share_error``.
    """
    y = np.asarray(y, dtype=float)
    groups = np.asarray(groups, dtype=object)
    split = np.full(len(y), np.nan) if split is None else np.asarray(split, dtype=float)
    fold = spatial_folds(xy, n_folds, n_folds * blocks_per_fold, seed)
    with_effect = np.full(len(y), np.nan)
    market_only = np.full(len(y), np.nan)
    for k in range(n_folds):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        model = make_estimator().fit(X.iloc[train], y[train], groups=groups[train],
                                     split=split[train])
        market_only[test] = model.market_log(X.iloc[test])
        with_effect[test] = np.log1p(model.predict_sales(X.iloc[test], groups[test]))
    keep = ~np.isnan(y) & pd.notna(groups)
    z = np.log1p(y[keep])
    shared = shared_log_variance(y[keep], np.expm1(with_effect[keep]), groups[keep],
                                 split[keep], getattr(model, "market_variance", 0.0))
    frame = pd.DataFrame({"territory": groups[keep], "actual": y[keep],
                          "pred": np.expm1(with_effect[keep])})
    sums = frame.groupby("territory").agg(n_units=("actual", "size"),
                                          held_out_sales=("actual", "sum"),
                                          predicted_sales=("pred", "sum"))
    actual_share = sums["held_out_sales"] / sums["held_out_sales"].sum()
    share_error = ((sums["predicted_sales"] / sums["predicted_sales"].sum() - actual_share)
                   .abs() / actual_share)
    sums["sales_share_error"] = share_error
    return {
        "potential_cv_log_rmse_rep": float(np.sqrt(np.mean((z - with_effect[keep]) ** 2))),
        "potential_cv_log_rmse_market": float(np.sqrt(np.mean((z - market_only[keep]) ** 2))),
        "potential_cv_sales_share_error_p50": float(share_error.quantile(0.5)),
        "potential_cv_sales_share_error_p90": float(share_error.quantile(0.9)),
        "potential_cv_shared_log_var": shared,
    }, sums.reset_index()


def potential_factory(config: PotentialConfig, method: str | None = None
                      ) -> Callable[[], PotentialEstimator | RepAdjustedPotential]:
    """A function that makes an unfitted potential model from ``config`` (``method``
    overrides ``config.method``)."""
    method = method or config.method
    common = dict(learning_rate=config.learning_rate, num_leaves=config.num_leaves,
                  min_child_samples=config.min_child_samples,
                  feature_fraction=config.feature_fraction, random_state=config.seed)

    def make_potential() -> PotentialEstimator | RepAdjustedPotential:
        if method == "rep_adjusted":
            return RepAdjustedPotential(
                n_rounds=config.n_rounds, shrinkage=config.shrinkage,
                relaxation=config.relaxation, reference_quantile=config.reference_quantile,
                market_variance=config.market_variance, own_sales=config.own_sales,
                n_estimators=config.n_estimators or 250, **common)
        return PotentialEstimator(quantile=config.quantile,
                                  n_estimators=config.n_estimators or 500, **common)

    return make_potential


def potential_method(config: PotentialConfig, territory: pd.Series | None) -> str:
    """The method the potential model uses: ``rep_adjusted`` needs a current territory
    for at least 20 units, else it falls back to ``quantile``, with a warning."""
    if config.method == "rep_adjusted" and (territory is None or territory.notna().sum() < 20):
        warnings.warn("potential: no current alignment (data.alignment), so the rep's effect "
                      "cannot be separated from the market; potential is the quantile of "
                      "comparable markets' sales (potential.method: quantile)", stacklevel=2)
        return "quantile"
    return config.method


def fit_potential(
    config: PotentialConfig,
    market: pd.DataFrame,
    annual_sales: np.ndarray,
    territory: pd.Series | None,
    xy: np.ndarray,
    split: pd.Series | None = None,
) -> tuple[PotentialEstimator | RepAdjustedPotential, dict[str, float], pd.DataFrame | None]:
    """The potential model of ``config`` (or its fallback), fitted, with its out-of-sample
    metrics and, for ``rep_adjusted``, a table per current territory.

    Metrics: ``potential_rep_adjusted`` (1 or 0), then for ``rep_adjusted``
    :func:`rep_effect_cross_validation`'s, for ``quantile``
    :func:`territory.models.backtest.potential_cross_validation`'s. The table
    adds ``rep_index``, each territory's estimated capture relative to the
    reference rep (1 = potential). ``split`` holds each unit's split-half log ratio
    (:func:`territory.features.feature_set.annual_split_log_ratio`), or None.
    """
    method = potential_method(config, territory)
    make_potential = potential_factory(config, method)
    metrics = {"potential_rep_adjusted": float(method == "rep_adjusted")}
    if method == "quantile":
        model = make_potential().fit(market, annual_sales)
        metrics.update(backtest.potential_cross_validation(
            make_potential, market, annual_sales, config.quantile, n_folds=3, seed=config.seed))
        return model, metrics, None
    groups = territory.reindex(market.index).to_numpy()
    halves = None if split is None else split.reindex(market.index).to_numpy()
    model = make_potential().fit(market, annual_sales, groups=groups, split=halves)
    cv, by_territory = rep_effect_cross_validation(make_potential, market, annual_sales, groups,
                                                   xy, n_folds=3, seed=config.seed,
                                                   split=halves)
    metrics.update(cv)
    effect = by_territory["territory"].astype(str).map(model.territory_effects_)
    by_territory["rep_index"] = np.exp(effect - model.reference_effect_)
    return model, metrics, by_territory
