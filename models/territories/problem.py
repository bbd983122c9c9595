"""The territory design problem, validated once.

:func:`build_problem` checks every argument of a design (shapes, K, tolerances,
targets, fixed centres, locks, the current alignment) and returns a
:class:`Problem`: the instance the fresh design and the rebalance work on.
Giant units (one unit above a territory's upper bound) and the pockets cut off
behind them are resolved here, so every later phase sees their territories as
fixed. :class:`Settings` holds the search budgets, which are not part of the
instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from territory.models.territories.giants import enclave_territories, giant_territories
from territory.models.territories.search import Graph


def validate_units(
    xy, adjacency, attributes, unit_ids=None
) -> tuple[np.ndarray, sp.csr_matrix, pd.DataFrame, np.ndarray]:
    """Coordinates, a symmetric CSR adjacency, non-negative finite attributes and unit ids,
    checked against each other; ``ValueError`` names what is wrong."""
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("xy contains non-finite coordinates")
    n = len(xy)
    if n == 0:
        raise ValueError("xy is empty: at least one unit is needed")
    if not sp.issparse(adjacency):
        adjacency = sp.csr_matrix(np.asarray(adjacency))
    adjacency = sp.csr_matrix(adjacency)
    if adjacency.shape != (n, n):
        raise ValueError(f"adjacency must have shape ({n}, {n}), got {adjacency.shape}")
    if (abs(adjacency - adjacency.T) > 1e-12).nnz:
        raise ValueError("adjacency must be symmetric")
    if isinstance(attributes, pd.Series):
        attributes = attributes.to_frame()
    if not isinstance(attributes, pd.DataFrame):
        raise ValueError("attributes must be a pandas DataFrame with numeric columns")
    if len(attributes) != n:
        raise ValueError(f"attributes has {len(attributes)} rows, expected {n} (one per unit)")
    if attributes.shape[1] == 0:
        raise ValueError("attributes needs at least one numeric column")
    for col in attributes.columns:
        if not pd.api.types.is_numeric_dtype(attributes[col]):
            raise ValueError(f"attributes column {col!r} is not numeric")
    vals = attributes.to_numpy(dtype=float)
    if not np.isfinite(vals).all():
        raise ValueError("attributes contains missing or non-finite values")
    if (vals < 0).any():
        bad = attributes.columns[(vals < 0).any(axis=0)].tolist()
        raise ValueError(f"attributes must be non-negative; negative values in {bad}")
    if unit_ids is None:
        ids = np.array([str(i) for i in range(n)], dtype=object)
    else:
        ids = np.asarray(unit_ids, dtype=object)
        if len(ids) != n:
            raise ValueError(f"unit_ids has {len(ids)} entries, expected {n}")
    return xy, adjacency, attributes, ids


def tolerance_vector(tolerance, tolerances, columns) -> np.ndarray:
    """One tolerance per attribute: ``tolerance``, overridden by ``tolerances[name]``."""
    tol = float(tolerance)
    if not 0 <= tol < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    out = np.full(len(columns), tol)
    for name, value in (tolerances or {}).items():
        if name not in list(columns):
            raise ValueError(f"tolerances names unknown attribute {name!r}")
        if not 0 <= float(value) < 1:
            raise ValueError(f"tolerances[{name!r}] must be in [0, 1), got {value}")
        out[list(columns).index(name)] = float(value)
    return out


def target_matrix(targets, values: np.ndarray, k: int) -> np.ndarray:
    """The (K, m) targets: as given (checked), else every territory the mean share."""
    if targets is None:
        return np.tile(values.sum(0) / k, (k, 1))
    t = np.asarray(targets, dtype=float)
    if t.shape != (k, values.shape[1]):
        raise ValueError(f"targets must have shape ({k}, {values.shape[1]}), got {t.shape}")
    if not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError("targets must be finite and positive")
    return t


def default_territory_names(k: int) -> list[str]:
    """The names of K unnamed territories: ``T01..TK`` (never the 0-based index)."""
    width = max(2, len(str(k)))
    return [f"T{t + 1:0{width}d}" for t in range(k)]


def resolve_names(territory_names, labels: np.ndarray, k: int) -> list[str]:
    """K names: ``territory_names`` (K names, or a function of the final labels and K
    returning them), else :func:`default_territory_names`."""
    if territory_names is None:
        return default_territory_names(k)
    names = territory_names(labels, k) if callable(territory_names) else territory_names
    names = [str(name) for name in names]
    if len(names) != k:
        raise ValueError(f"territory_names has {len(names)} names, expected {k}")
    if len(set(names)) != k:
        raise ValueError("territory_names must be distinct: two territories share a name")
    return names


def check_mapping(name: str, mapping, n: int, k: int, key_is_territory: bool) -> dict[int, int]:
    """``{territory: unit}`` or ``{unit: territory}`` as ``{int: int}``, indices checked."""
    out: dict[int, int] = {}
    for key, value in (mapping or {}).items():
        t, u = (key, value) if key_is_territory else (value, key)
        if not (0 <= int(t) < k):
            raise ValueError(f"{name}: territory {t} is outside 0..{k - 1}")
        if not (0 <= int(u) < n):
            raise ValueError(f"{name}: unit index {u} is outside 0..{n - 1}")
        if key_is_territory:
            out[int(t)] = int(u)
        else:
            out[int(u)] = int(t)
    return out


@dataclass
class Settings:
    """Search budgets of one design (iteration counts; the time limit is a safety net)."""

    seed: int = 0
    max_iter: int = 1500
    time_limit_s: float | None = 20.0
    n_starts: int = 1
    compactness_weight: float = 1.0
    move_budget: float | None = None
    max_restarts: int = 4
    move_cost: float = 1e-4
    max_chains: int | None = None
    flow_rounds: int = 4
    lns_tries: int = 100
    shape_tries: int = 120

    def check(self) -> None:
        if int(self.n_starts) < 1:
            raise ValueError(f"n_starts must be at least 1, got {self.n_starts}")
        if self.move_budget is not None and not 0 <= float(self.move_budget) <= 1:
            raise ValueError(f"move_budget must be in [0, 1], got {self.move_budget}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")


@dataclass
class Problem:
    """One validated design instance.

    ``values`` are the attributes (n, m) in ``columns`` order; ``targets`` the (K, m)
    targets after giant units took their own share; ``hard`` marks the attributes
    whose tolerance is a constraint (the others are goals); ``lock`` maps every unit
    that may not move (locked units, fixed centres, giants and the pockets behind
    them) to its territory; ``current`` is the alignment a rebalance starts from.
    """

    xy: np.ndarray
    adjacency: sp.csr_matrix
    graph: Graph
    attributes: pd.DataFrame
    values: np.ndarray
    columns: list[str]
    ids: np.ndarray
    k: int
    tau: np.ndarray
    hard: np.ndarray
    targets: np.ndarray
    fixed: dict[int, int]
    lock: dict[int, int]
    current: np.ndarray | None = None
    areas: np.ndarray | None = None
    max_elongation: float | None = None
    max_radius_km: float | None = None
    soft_attributes: tuple[str, ...] = ()
    giants: dict[int, int] = field(default_factory=dict)  # unit -> its own territory
    enclaves: dict[int, np.ndarray] = field(default_factory=dict)  # territory -> units

    @property
    def n(self) -> int:
        return len(self.xy)

    @property
    def shaped(self) -> bool:
        """Whether the shape limit applies (unit areas and ``max_elongation`` given)."""
        return self.areas is not None and self.max_elongation is not None

    @property
    def radius(self) -> float | None:
        """The maximum radius in metres, or None."""
        return None if self.max_radius_km is None else 1000.0 * float(self.max_radius_km)

    @property
    def forced(self) -> np.ndarray:
        """The territory each unit is held in, -1 where it may move."""
        out = np.full(self.n, -1, dtype=np.int64)
        for u, t in self.lock.items():
            out[u] = t
        return out

    @property
    def movable(self) -> np.ndarray:
        return self.forced < 0

    @property
    def anchors(self) -> np.ndarray:
        """Each territory's fixed centre unit, -1 where it has none."""
        out = np.full(self.k, -1, dtype=np.int64)
        for t, u in self.fixed.items():
            out[t] = u
        return out

    def presets(self) -> dict[int, int]:
        """A start unit per territory that holds fixed or locked units: the fixed centre,
        else the locked unit nearest the locked units' mean."""
        out = dict(self.fixed)
        for t in sorted(set(self.lock.values()) - set(self.fixed)):
            units = np.array(sorted(u for u, tt in self.lock.items() if tt == t))
            mid = self.xy[units].mean(0)
            out[t] = int(units[np.argmin(((self.xy[units] - mid) ** 2).sum(1))])
        return out

    @property
    def has_giant(self) -> bool:
        """A unit alone above every upper bound: no transfer can remove that violation."""
        return bool((self.values > (1 + self.tau) * self.targets.max(axis=0)).any())

    @property
    def tolerances(self) -> dict[str, float]:
        return dict(zip(self.columns, self.tau, strict=True))


def build_problem(
    xy, adjacency, attributes: pd.DataFrame, n_territories: int, tolerance: float = 0.05, *,
    unit_ids=None, current_labels=None, fixed_centres: Mapping[int, int] | None = None,
    locked: Mapping[int, int] | None = None, tolerances: Mapping[str, float] | None = None,
    targets: np.ndarray | None = None, max_radius_km: float | None = None,
    soft_attributes: Sequence[str] = (), areas=None, max_elongation: float | None = None,
) -> Problem:
    """Validate a design's arguments once (see :func:`design_territories`) and resolve
    giant units; raises ``ValueError`` naming the argument and what was expected."""
    xy, adjacency, attributes, ids = validate_units(xy, adjacency, attributes, unit_ids)
    n = len(xy)
    if isinstance(n_territories, bool) or not isinstance(n_territories, int | np.integer):
        raise ValueError(f"n_territories must be an integer, got {n_territories!r}")
    k = int(n_territories)
    if not 1 <= k <= n:
        raise ValueError(f"n_territories must be between 1 and the number of units ({n}), got {k}")
    if max_radius_km is not None and not float(max_radius_km) > 0:
        raise ValueError(f"max_radius_km must be positive, got {max_radius_km}")
    if max_elongation is not None and not float(max_elongation) >= 1.0:
        raise ValueError(f"max_elongation must be at least 1, got {max_elongation}")
    unknown_soft = sorted(set(soft_attributes) - set(attributes.columns))
    if unknown_soft:
        raise ValueError(f"soft_attributes {unknown_soft} are not columns of attributes")
    if areas is not None:
        areas = np.asarray(areas, dtype=float)
        if areas.shape != (n,) or not np.isfinite(areas).all() or (areas < 0).any():
            raise ValueError(f"areas must be {n} finite, non-negative unit areas (km²)")
    cols = list(attributes.columns)
    tau = tolerance_vector(tolerance, tolerances, cols)
    values = attributes.to_numpy(dtype=float)
    tgt = target_matrix(targets, values, k)
    fixed = check_mapping("fixed_centres", fixed_centres, n, k, True)
    lock = check_mapping("locked", locked, n, k, False)
    if len(set(fixed.values())) < len(fixed):
        raise ValueError("fixed_centres: the same unit is the centre of two territories")
    for t, u in fixed.items():
        if u in lock and lock[u] != t:
            raise ValueError(
                f"fixed_centres/locked: unit {u} is locked to {lock[u]} but is the centre of {t}"
            )
        lock[u] = t
    cur = None
    if current_labels is not None:
        cur = np.asarray(current_labels)
        if cur.shape != (n,) or not np.issubdtype(cur.dtype, np.integer):
            raise ValueError(f"current_labels must be an integer array of shape ({n},)")
        if cur.min() < 0 or cur.max() >= k:
            raise ValueError(f"current_labels must lie in 0..{k - 1}")
    hard = np.array([c not in set(soft_attributes) for c in cols])
    giants: dict[int, int] = {}
    enclaves: dict[int, np.ndarray] = {}
    if targets is None and cur is None:
        giants, tgt = giant_territories(values, tgt, tau, hard, fixed, lock)
        for u, t in giants.items():
            fixed[t], lock[u] = u, t
        enclaves, placed, tgt = enclave_territories(
            adjacency, values, target_matrix(targets, values, k), tgt, tau, hard, giants,
            fixed, lock)
        lock.update(placed)
    return Problem(xy=xy, adjacency=adjacency, graph=Graph.from_csr(adjacency),
                   attributes=attributes, values=values, columns=cols, ids=ids, k=k, tau=tau,
                   hard=hard, targets=tgt, fixed=fixed, lock=lock, current=cur, areas=areas,
                   max_elongation=max_elongation, max_radius_km=max_radius_km,
                   soft_attributes=tuple(soft_attributes), giants=giants, enclaves=enclaves)
