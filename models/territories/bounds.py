"""A provable floor on how much any balanced rebalance must move (pure function)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from territory.models.territories.problem import target_matrix, tolerance_vector


def rebalance_lower_bound(
    current_labels,
    attributes: pd.DataFrame,
    n_territories: int | None = None,
    tolerance: float = 0.05,
    tolerances: Mapping[str, float] | None = None,
    *,
    targets: np.ndarray | None = None,
    movable=None,
) -> dict:
    """Provable lower bounds on the disruption of any balanced rebalance.

    Every unit that changes territory leaves exactly one territory and enters
    exactly one. A territory over its upper bound ``(1 + tau) T`` on attribute
    ``a`` must lose units carrying at least its surplus of ``a``, so at least
    as many units as its largest units (of ``a``) needed to cover the surplus;
    a territory under ``(1 - tau) T`` must gain at least as many units as the
    largest units outside it needed to cover its deficit. Hence

    ``moved >= max(sum_k max_a out_ka, sum_k max_a in_ka)``,

    and the moved amount of attribute ``a`` is at least
    ``max(sum_k surplus_ka, sum_k deficit_ka)``. The bounds ignore contiguity
    and geography, so they hold for every alignment that meets the balance
    (contiguous or not); the true minimum can be higher.

    Parameters
    ----------
    current_labels
        Current territory of each unit, ``0..K-1``.
    attributes
        (n, m) non-negative attributes.
    n_territories
        K; default ``current_labels.max() + 1``.
    tolerance, tolerances
        One tau for all attributes, and ``{attribute: tau}`` overrides.
    targets
        (K, m) targets; default the mean.
    movable
        Optional boolean mask of units allowed to move (locked units and fixed
        centres cannot, which makes the bound tighter).

    Returns
    -------
    dict
        ``units`` (count), ``units_pct``, ``<a>_pct`` for every attribute (share of
        its total that must move), and ``per_territory`` (a DataFrame with
        ``out_units`` and ``in_units`` per territory).
    """
    cur = np.asarray(current_labels)
    values = attributes.to_numpy(dtype=float)
    n, m = values.shape
    k = int(n_territories if n_territories is not None else cur.max() + 1)
    if cur.shape != (n,) or cur.min() < 0 or cur.max() >= k:
        raise ValueError(f"current_labels must be integers in 0..{k - 1}, one per unit")
    cols = list(attributes.columns)
    tau = tolerance_vector(tolerance, tolerances, cols)
    tgt = target_matrix(targets, values, k)
    mov = np.ones(n, dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
    totals = np.zeros((k, m))
    np.add.at(totals, cur, values)
    surplus = np.maximum(totals - (1 + tau) * tgt, 0.0)
    deficit = np.maximum((1 - tau) * tgt - totals, 0.0)
    out_units = np.zeros(k, dtype=np.int64)
    in_units = np.zeros(k, dtype=np.int64)

    def cover(pool: np.ndarray, need: float) -> int:
        if need <= 0:
            return 0
        c = np.cumsum(np.sort(pool)[::-1])
        j = int(np.searchsorted(c, need * (1 - 1e-12)))
        return j + 1 if j < len(c) else n + 1  # n + 1: cannot be covered at all

    for t in range(k):
        own = (cur == t) & mov
        other = (cur != t) & mov
        for a in range(m):
            out_units[t] = max(out_units[t], cover(values[own, a], surplus[t, a]))
            in_units[t] = max(in_units[t], cover(values[other, a], deficit[t, a]))
    units = int(min(max(out_units.sum(), in_units.sum()), n))
    result = {"units": units, "units_pct": 100.0 * units / n}
    for a, col in enumerate(cols):
        moved = max(surplus[:, a].sum(), deficit[:, a].sum())
        result[f"{col}_pct"] = float(100.0 * moved / max(values[:, a].sum(), 1e-300))
    result["per_territory"] = pd.DataFrame({"out_units": out_units, "in_units": in_units})
    return result
