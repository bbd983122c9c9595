"""The territory designer as a scikit-learn-style estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from territory.models.territories.design import design_territories


class TerritoryDesigner:
    """Balanced, contiguous, compact territory design (scikit-learn style).

    The defaults are :class:`territory.models.config.TerritoryConfig`'s, so the
    Python API and a YAML config design the same territories.

    Parameters
    ----------
    n_territories
        Number of territories K.
    tolerance
        Default balance tolerance tau (fraction, e.g. 0.05).
    seed
        Seed for every random step (same seed, same alignment).
    max_iter
        Iteration cap of each local-search phase.
    time_limit_s
        Safety net of one fit, in CPU seconds of the calling thread.
    n_starts
        Independent starts; the best is kept.
    compactness_weight
        Weight of compactness in the balance phase.
    move_budget
        Rebalance mode: maximum share of the first attribute that may move.
    max_restarts
        Extra starts while the balance is violated (fresh design only).
    max_chains
        Ejection chains per repair call; default half the units.
    max_radius_km
        Optional maximum distance (km) from a unit to its territory's centre.
    flow_rounds
        Rounds of flow-planned transfers while a fresh design is still out of
        balance (0 = off).
    soft_attributes
        Attributes balanced as goals, not constraints (see :func:`design_territories`).
    max_elongation
        Shape limit, used when ``fit`` is given unit ``areas``.

    Attributes
    ----------
    labels_ : np.ndarray
        Territory of each unit, ``0..K-1``.
    centres_ : np.ndarray
        Unit index of each territory's centre.
    report_ : TerritoryReport
        Quality metrics and plain-word violations.
    """

    def __init__(
        self,
        n_territories: int = 50,
        tolerance: float = 0.05,
        seed: int = 42,
        max_iter: int = 1500,
        time_limit_s: float = 120.0,
        n_starts: int = 1,
        compactness_weight: float = 40.0,
        move_budget: float | None = None,
        max_restarts: int = 0,
        max_chains: int | None = None,
        max_radius_km: float | None = None,
        flow_rounds: int = 4,
        soft_attributes: Sequence[str] = (),
        max_elongation: float | None = 2.0,
    ) -> None:
        self.n_territories = n_territories
        self.tolerance = tolerance
        self.seed = seed
        self.max_iter = max_iter
        self.time_limit_s = time_limit_s
        self.n_starts = n_starts
        self.compactness_weight = compactness_weight
        self.move_budget = move_budget
        self.max_restarts = max_restarts
        self.max_chains = max_chains
        self.max_radius_km = max_radius_km
        self.flow_rounds = flow_rounds
        self.soft_attributes = soft_attributes
        self.max_elongation = max_elongation

    def fit(
        self,
        xy,
        adjacency,
        attributes: pd.DataFrame,
        *,
        unit_ids=None,
        current_labels=None,
        fixed_centres: Mapping[int, int] | None = None,
        locked: Mapping[int, int] | None = None,
        tolerances: Mapping[str, float] | None = None,
        targets: np.ndarray | None = None,
        areas=None,
        territory_names=None,
    ) -> TerritoryDesigner:
        """Design territories for the given units; see :func:`design_territories`."""
        result = design_territories(
            xy, adjacency, attributes, self.n_territories, self.tolerance, self.seed,
            unit_ids=unit_ids, current_labels=current_labels, fixed_centres=fixed_centres,
            locked=locked, tolerances=tolerances, targets=targets, max_iter=self.max_iter,
            time_limit_s=self.time_limit_s, n_starts=self.n_starts,
            compactness_weight=self.compactness_weight, move_budget=self.move_budget,
            max_restarts=self.max_restarts, max_chains=self.max_chains,
            max_radius_km=self.max_radius_km, flow_rounds=self.flow_rounds,
            soft_attributes=tuple(self.soft_attributes), areas=areas,
            max_elongation=self.max_elongation, territory_names=territory_names,
        )
        self.labels_ = result.labels
        self.centres_ = result.centres
        self.report_ = result.report
        return self
