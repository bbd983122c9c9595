"""How sure a plan's balance is: potential intervals per unit and per territory (issue #19).

A unit's potential is estimated (:class:`~territory.models.potential_rep.RepAdjustedPotential`),
so a territory balanced to ±τ on the estimate is balanced in truth only as
far as the estimate holds. The error of a unit's log potential has two parts:

* its own: ``unit_log_variance`` (the spread of markets around the market
  model, reduced where the unit's own sales are credited);
* its current territory's: the error of that territory's rep effect
  (``group_variance``), shared by every unit of the territory. When the rep
  effect is over-estimated, the market part of each of its units is
  under-estimated by as much, so the error passes whole into their potential.

The second part is correlated across units, which is why a new territory
that takes many units from one current territory is less sure than one
drawn from many. Territories are therefore measured by simulation:
``n_draws`` joint draws of every unit's potential (lognormal around the
estimate, one shared draw per current territory), each territory's total in
each draw, its deviation from that draw's mean territory, and so

* ``potential_lo`` / ``potential_hi``: the territory's ``level`` interval;
* ``p_within_tolerance``: the probability that its deviation from the mean
  territory is within ±τ.

Pure functions; every draw takes a seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm


def _aligned(potential: pd.Series, unit_log_variance: pd.Series, group: pd.Series,
             group_variance: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per unit of ``potential``: its log variance, its group's code and the groups' variances
    (a unit without a group gets a group of its own with variance 0)."""
    unit_var = unit_log_variance.reindex(potential.index).fillna(0.0).to_numpy(dtype=float)
    labels = group.reindex(potential.index)
    codes, names = pd.factorize(labels.astype(object).where(labels.notna(), None), sort=True)
    group_var = group_variance.reindex(names).fillna(0.0).to_numpy(dtype=float)
    if (unit_var < 0).any() or (group_var < 0).any():
        raise ValueError("variances must be >= 0")
    return unit_var, codes, np.r_[group_var, 0.0], len(names)


def unit_intervals(potential: pd.Series, unit_log_variance: pd.Series, group: pd.Series,
                   group_variance: pd.Series, level: float = 0.8) -> pd.DataFrame:
    """Each unit's ``level`` interval of potential (lognormal around the estimate).

    Returns
    -------
    DataFrame
        ``potential_lo`` and ``potential_hi``, indexed like ``potential``.
    """
    unit_var, codes, group_var, _ = _aligned(potential, unit_log_variance, group, group_variance)
    sd = np.sqrt(unit_var + group_var[codes])
    z = norm.ppf(0.5 + level / 2.0)
    values = potential.to_numpy(dtype=float)
    return pd.DataFrame({"potential_lo": values * np.exp(-z * sd),
                         "potential_hi": values * np.exp(z * sd)}, index=potential.index)


def potential_draws(potential: pd.Series, unit_log_variance: pd.Series, group: pd.Series,
                    group_variance: pd.Series, n_draws: int = 500, seed: int = 0) -> np.ndarray:
    """Joint draws of every unit's potential, ``(n_draws, n_units)`` in ``potential``'s order.

    Log potential = log estimate + a unit draw (``unit_log_variance``) + its
    group's draw (``group_variance``, one per group and draw). ``group``
    maps each unit to its current territory (NaN: none, no shared error).
    """
    unit_var, codes, group_var, n_groups = _aligned(potential, unit_log_variance, group,
                                                    group_variance)
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n_draws, n_groups + 1)) * np.sqrt(group_var)
    own = rng.normal(size=(n_draws, len(unit_var))) * np.sqrt(unit_var)
    return potential.to_numpy(dtype=float) * np.exp(own + shared[:, codes])


def territory_balance(draws: np.ndarray, labels: pd.Series, tolerance: float,
                      level: float = 0.8) -> pd.DataFrame:
    """Per territory of ``labels`` (one per unit, in the draws' order): its interval of
    potential and the probability that it lies within ±``tolerance`` of the mean territory.

    Returns
    -------
    DataFrame
        ``territory``, ``potential_lo``, ``potential_hi``, ``p_within_tolerance``.
    """
    codes, names = pd.factorize(labels.to_numpy(), sort=True)
    if (codes < 0).any():
        raise ValueError("every unit needs a territory")
    one_hot = np.zeros((len(codes), len(names)))
    one_hot[np.arange(len(codes)), codes] = 1.0
    totals = draws @ one_hot  # (n_draws, n_territories)
    deviation = totals / totals.mean(axis=1, keepdims=True) - 1.0
    lo, hi = np.quantile(totals, [0.5 - level / 2.0, 0.5 + level / 2.0], axis=0)
    return pd.DataFrame({"territory": names, "potential_lo": lo, "potential_hi": hi,
                         "p_within_tolerance": (np.abs(deviation) <= tolerance).mean(axis=0)})


UNCERTAINTY_COLUMNS = ("potential", "potential_log_var", "potential_group",
                       "potential_group_var")


def score_draws(unit_totals: pd.DataFrame, units: pd.Index, n_draws: int = 500,
                seed: int = 0) -> np.ndarray | None:
    """:func:`potential_draws` of ``units`` (in that order), from the scores' unit totals
    (``potential`` and the columns of
    :func:`territory.models.scoring.potential_uncertainty_columns`); None without them."""
    if any(c not in unit_totals for c in UNCERTAINTY_COLUMNS):
        return None
    totals = unit_totals.reindex(units)
    group = totals["potential_group"].astype(object)
    group = group.astype(str).where(group.notna())
    group_variance = totals.groupby(group)["potential_group_var"].first()
    return potential_draws(totals["potential"].fillna(0.0), totals["potential_log_var"],
                           group, group_variance, n_draws, seed)


def plan_balance(unit_totals: pd.DataFrame, labels: pd.Series, tolerance: float,
                 level: float = 0.8, n_draws: int = 500, seed: int = 0) -> pd.DataFrame | None:
    """:func:`territory_balance` of the plan ``labels`` (territory per unit), simulated by
    :func:`score_draws`; None without the uncertainty columns."""
    units = labels.dropna().index
    draws = score_draws(unit_totals, units, n_draws, seed)
    if draws is None:
        return None
    return territory_balance(draws, labels.reindex(units), tolerance, level)
