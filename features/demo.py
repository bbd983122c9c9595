"""Demo data: real US county geography, simulated company sales.

The geography and demographics are real: the 3,085 counties of the PySAL
``NAT`` example (US county homicides 1960-1990, libpysal 4.1.1 source
distribution, BSD-3-Clause). Everything about the company (territories,
reps, penetration, monthly sales, accounts, visits) is simulated here.

Two pure steps, no file access:

1. :func:`derive_counties_and_demographics` turns the raw NAT frame into the
   ``units`` and ``demographics`` tables (simplified polygons, manager-friendly
   column names from the 1990 census values).
2. :func:`simulate_company` takes those two tables and a seed and simulates
   the company. It runs from the committed geography, so tests can re-run it
   without the NAT files.

True potential
--------------
Full-capture monthly demand of county *i* at the first month is

``B_i = 75 * population_i ** 0.5 * exp(m_i + e_i)``  (USD per month)

with the idiosyncratic term ``e_i ~ Normal(0, 0.15**2)`` and the market index
``m_i`` a nonlinear function of the real 1990 demographics and of the
neighbours' markets (fixed constants, so a unit's index does not depend on
which other units are simulated, except through its neighbours)::

    m_i =  0.30 * tanh((log(median_family_income) - 10.22) / 0.25)     income
         + 0.40 * sigmoid((nbr_log_density - 4.0) / 0.6)                metro spillover
         - 0.15 * sigmoid((log_density - 6.5) / 0.5)                    urban congestion
         - 0.04 * min(max(unemployment_rate - 6, 0), 10)                 unemployment
         - 0.12 * min(((median_age - 36) / 6) ** 2, 2.5)                 age (inverted U)
         - 0.20 * sigmoid((poverty_share - 18) / 4)                      poverty
         + 0.25 * tanh(population_growth / 0.15)                         growth

where ``log_density`` is log(population / km²) and ``nbr_log_density`` its mean
over queen neighbours (:func:`territory.features.spatial.spatial_lag`). Demand then
grows at ``g_i = clip(0.03 + 0.3 * annual population growth 1980-90, -0.01,
0.07)`` a year and follows the month-of-year pattern :data:`SEASONALITY`
(mean 1, peak in Q4). The **true potential** is the expected full-capture
demand over the 12 months after the last observed month::

    true_potential_i = sum_{t=T}^{T+11} B_i * SEASONALITY[month(t)] * (1 + g_i) ** (t / 12)

with t = 0 the first observed month and T the number of observed months.

Observed sales
--------------
Each territory has one rep with penetration ``p ~ Uniform(0.45, 1.0)``. The
expected sales of unit *i* in month *t* are ``mu_it = B_i * p * s(t) *
(1 + g_i) ** (t / 12) * eta_it`` with a demand shock ``eta_it`` lognormal of
mean 1 and log-sd 0.12. Sales are compound Poisson: ``orders ~ Poisson(mu_it /
v_i)`` and each order's value is Gamma with mean ``v_i`` and shape 2, where the
mean order value ``v_i = 250 * (population_i / 20000) ** -0.8`` is larger in
small counties (rural customers order rarely, in bulk). Small counties
therefore have genuine zero months and noisier sales.

Workload drivers: expected active accounts ``A_i = 2 * sqrt(population_i /
1000) * exp(0.2 * tanh(-(log income - 10.22) / 0.25))``; monthly
``accounts ~ Poisson(A_i * (1 + g_i / 2) ** (t / 12))`` and ``visits ~
Poisson(accounts * (0.6 + 0.8 * p) * zeta)`` with ``zeta`` Gamma of mean 1 and
sd ~0.16.

Potential is sublinear in population, so no single county dominates: the
largest county holds well under 40% of an average territory's potential
(with 50 territories), and the same holds for accounts.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely

from territory.features.spatial import AdjacencyGraph, build_adjacency, projected_xy, spatial_lag

PROJECTED_CRS = "EPSG:5070"
"""US Albers equal area, used for areas, distances and simplification."""

SEASONALITY = np.array(
    [0.86, 0.88, 0.99, 0.97, 0.98, 0.95, 0.88, 0.90, 1.02, 1.07, 1.15, 1.35]
)
SEASONALITY = SEASONALITY / SEASONALITY.mean()
"""Month-of-year multipliers (January first), mean 1, peak in Q4."""

POP_EXPONENT = 0.5
POTENTIAL_SCALE = 75.0
IDIOSYNCRATIC_SD = 0.15
DEMAND_SHOCK_SD = 0.12
ORDER_VALUE = 250.0
ORDER_VALUE_ELASTICITY = -0.8
ORDER_VALUE_SHAPE = 2.0
PENETRATION_RANGE = (0.45, 1.0)

_FIRST_NAMES = (
    "Amelia Brian Carla Daniel Elena Felix Grace Hector Irene Jamal Karen Luis Maya Nathan "
    "Olivia Pedro Quinn Rachel Samuel Tara Umar Vera Walter Ximena Yusuf Zoe Aaron Bianca "
    "Colin Dana Ethan Fiona George Hannah Isaac Julia Kevin Laura Marcus Nina Oscar Priya "
    "Ryan Sofia Thomas Ursula Victor Wendy Xavier Yvonne Zachary Alicia Bernard Chloe Derek"
).split()
_LAST_NAMES = (
    "Anderson Brooks Castillo Dawson Ellis Fischer Garcia Harper Ibarra Jensen Kowalski "
    "Lindqvist Morales Nakamura Okafor Patel Quinlan Rossi Schmidt Tanaka Underwood Vasquez "
    "Whitaker Xu Young Zimmerman Abbott Bennett Chen Delgado Erikson Foster Gallagher Hughes "
    "Iverson Jordan Keller Larsen Mendoza Novak O'Brien Price Reyes Sullivan Thornton Ueda "
    "Vance Walsh Yilmaz Zhang Alvarez Becker Coleman Duarte"
).split()


@dataclass(frozen=True)
class DemoData:
    """All tables of the demo data set.

    Attributes
    ----------
    counties
        ``unit_id``, ``name``, ``region``, ``geometry`` (EPSG:4326).
    demographics
        ``unit_id`` and numeric market columns.
    sales
        ``unit_id``, ``period``, ``sales``, ``accounts``, ``visits``.
    alignment
        ``unit_id``, ``territory_id``: the company's current, hand-drawn alignment.
    reps
        ``territory_id``, ``rep_id``, ``rep_name``, ``home_unit_id``, ``capacity``.
    truth
        Per-unit ground truth (``true_potential``, ``rep_penetration``, ...);
        for evaluation only, never a feature.
    """

    counties: gpd.GeoDataFrame
    demographics: pd.DataFrame
    sales: pd.DataFrame
    alignment: pd.DataFrame
    reps: pd.DataFrame
    truth: pd.DataFrame


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def derive_counties_and_demographics(
    nat: gpd.GeoDataFrame,
    simplify_tolerance_m: float = 1000.0,
    precision_deg: float = 1e-5,
    projected_crs: str = PROJECTED_CRS,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Units and demographics tables from the raw NAT frame.

    Polygons are simplified as a coverage (shared edges stay shared, so queen
    contiguity survives) in ``projected_crs``, then brought back to EPSG:4326
    and snapped to a ``precision_deg`` grid.

    Parameters
    ----------
    nat
        The NAT shapefile as read by geopandas; without a CRS, EPSG:4326 is assumed.
    simplify_tolerance_m
        Coverage simplification tolerance in metres.
    precision_deg
        Coordinate grid size in degrees (1e-5 is about 1 m).
    projected_crs
        Equal-area CRS for simplification and areas.

    Returns
    -------
    counties
        ``unit_id`` (5-character FIPS), ``name``, ``region`` (state), ``geometry``,
        sorted by ``unit_id``.
    demographics
        ``unit_id`` and numeric columns from the 1990 census (1980 for growth).
    """
    nat = nat if nat.crs is not None else nat.set_crs("EPSG:4326")
    nat = nat.to_crs("EPSG:4326").copy()
    nat["unit_id"] = nat["FIPS"].astype(str).str.zfill(5)
    nat = nat.sort_values("unit_id", kind="stable").reset_index(drop=True)

    projected = nat.geometry.to_crs(projected_crs)
    simplified = shapely.coverage_simplify(projected.to_numpy(), simplify_tolerance_m)
    geographic = gpd.GeoSeries(simplified, crs=projected_crs).to_crs("EPSG:4326")
    geometry = shapely.make_valid(shapely.set_precision(geographic.to_numpy(), precision_deg))
    counties = gpd.GeoDataFrame(
        {
            "unit_id": nat["unit_id"].to_numpy(),
            "name": nat["NAME"].astype(str).to_numpy(),
            "region": nat["STATE_NAME"].astype(str).to_numpy(),
        },
        geometry=geometry,
        crs="EPSG:4326",
    )

    # Areas from the unsimplified polygons.
    area_km2 = projected.area.to_numpy() / 1e6
    population = nat["PO90"].to_numpy(dtype=float)
    demographics = pd.DataFrame(
        {
            "unit_id": nat["unit_id"].to_numpy(),
            "population": nat["PO90"].astype("int64").to_numpy(),
            "population_growth": population / nat["PO80"].to_numpy(dtype=float) - 1.0,
            "unemployment_rate": nat["UE90"].to_numpy(dtype=float),
            "median_age": nat["MA90"].to_numpy(dtype=float),
            "divorce_rate": nat["DV90"].to_numpy(dtype=float),
            "gini": nat["GI89"].to_numpy(dtype=float),
            "female_headed_share": nat["FH90"].to_numpy(dtype=float),
            "poverty_share": nat["FP89"].to_numpy(dtype=float),
            "black_share": nat["BLK90"].to_numpy(dtype=float),
            "median_family_income": np.round(np.exp(nat["MFIL89"].to_numpy(dtype=float)), 2),
            "resource_deprivation": nat["RD90"].to_numpy(dtype=float),
            "population_structure": nat["PS90"].to_numpy(dtype=float),
            "south": nat["SOUTH"].astype("int64").to_numpy(),
            "area_km2": area_km2,
            "population_density": population / area_km2,
        }
    )
    return counties, demographics


def market_index(
    demographics: pd.DataFrame, nbr_log_density: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Market index ``m_i`` and annual growth ``g_i`` (see the module docstring).

    Parameters
    ----------
    demographics
        One row per unit, in the order of ``nbr_log_density``.
    nbr_log_density
        Mean log population density of each unit's queen neighbours.

    Returns
    -------
    index, growth
        Log multiplier of potential and annual demand growth rate.
    """
    d = demographics
    log_income = np.log(d["median_family_income"].to_numpy(dtype=float))
    log_density = np.log(d["population_density"].to_numpy(dtype=float))
    unemployment = d["unemployment_rate"].to_numpy(dtype=float)
    age = d["median_age"].to_numpy(dtype=float)
    poverty = d["poverty_share"].to_numpy(dtype=float)
    growth_decade = d["population_growth"].to_numpy(dtype=float)

    index = (
        0.30 * np.tanh((log_income - 10.22) / 0.25)
        + 0.40 * _sigmoid((nbr_log_density - 4.0) / 0.6)
        - 0.15 * _sigmoid((log_density - 6.5) / 0.5)
        - 0.04 * np.clip(unemployment - 6.0, 0.0, 10.0)
        - 0.12 * np.minimum(((age - 36.0) / 6.0) ** 2, 2.5)
        - 0.20 * _sigmoid((poverty - 18.0) / 4.0)
        + 0.25 * np.tanh(growth_decade / 0.15)
    )
    annual_pop_growth = np.clip(1.0 + growth_decade, 0.05, None) ** 0.1 - 1.0
    growth = np.clip(0.03 + 0.3 * annual_pop_growth, -0.01, 0.07)
    return index, growth


def _split_by_axis(idx: np.ndarray, xy: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """Cut units into ``n_parts`` bands of equal county count along the longer axis."""
    pts = xy[idx]
    axis = 0 if np.ptp(pts[:, 0]) >= np.ptp(pts[:, 1]) else 1
    order = idx[np.lexsort((idx, pts[:, axis]))]
    return [part for part in np.array_split(order, n_parts) if len(part)]


def _repair_contiguity(labels: np.ndarray, matrix: sp.csr_matrix, max_rounds: int = 50) -> None:
    """Move detached pieces of a territory to the neighbour they share most edges with."""
    coo = matrix.tocoo()
    for _ in range(max_rounds):
        moved = False
        for lab in np.unique(labels):
            members = np.flatnonzero(labels == lab)
            sub = matrix[members][:, members]
            n_comp, comp = sp.csgraph.connected_components(sub, directed=False)
            if n_comp == 1:
                continue
            keep = np.argmax(np.bincount(comp))
            for c in range(n_comp):
                if c == keep:
                    continue
                piece = members[comp == c]
                in_piece = np.isin(coo.row, piece)
                other = labels[coo.col[in_piece]]
                other = other[other != lab]
                if len(other) == 0:
                    continue
                vals, counts = np.unique(other, return_counts=True)
                labels[piece] = vals[np.argmax(counts)]
                moved = True
        if not moved:
            return


def draw_alignment(
    counties: pd.DataFrame,
    weight: np.ndarray,
    graph: AdjacencyGraph,
    xy: np.ndarray,
    n_territories: int = 50,
) -> np.ndarray:
    """The company's current alignment, drawn the way a sales manager would.

    Whole states are territories; states holding more than 1.6 average
    territories of ``weight`` are cut into two (three above 2.6) bands of
    equal county count along their longer axis; then the smallest whole-state
    groups are merged with their smallest neighbouring group (or the largest
    groups halved) until there are ``n_territories``; finally detached pieces
    are moved to a neighbouring territory so each one is contiguous. No
    balancing is attempted, so the result is deliberately unbalanced.

    Parameters
    ----------
    counties
        ``region`` per unit, in graph order.
    weight
        Market size used by the manager (potential) per unit.
    graph
        Contiguity graph of the units.
    xy
        Projected unit centres.
    n_territories
        Number of territories wanted.

    Returns
    -------
    numpy.ndarray
        Territory label per unit, ``"T01"``... numbered west to east.
    """
    region = counties["region"].to_numpy()
    target = weight.sum() / n_territories
    groups: list[tuple[np.ndarray, bool]] = []  # (unit indices, mergeable whole-state group)
    for state in sorted(set(region)):
        idx = np.flatnonzero(region == state)
        ratio = weight[idx].sum() / target
        n_parts = 1 if ratio <= 1.6 else (2 if ratio <= 2.6 else 3)
        n_parts = min(n_parts, len(idx))
        if n_parts == 1:
            groups.append((idx, True))
        else:
            groups.extend((part, False) for part in _split_by_axis(idx, xy, n_parts))

    coo = graph.matrix.tocoo()
    while len(groups) > n_territories:
        owner = np.empty(len(region), dtype=int)
        for g, (idx, _) in enumerate(groups):
            owner[idx] = g
        pot = np.array([weight[idx].sum() for idx, _ in groups])
        pairs = {(a, b) for a, b in zip(owner[coo.row], owner[coo.col], strict=True) if a != b}
        merged = False
        for g in np.argsort(pot, kind="stable"):
            if not groups[g][1]:
                continue
            nbrs = sorted({b for a, b in pairs if a == g and groups[b][1]}, key=lambda b: pot[b])
            if nbrs:
                h = nbrs[0]
                new = (np.sort(np.concatenate([groups[g][0], groups[h][0]])), True)
                groups = [grp for k, grp in enumerate(groups) if k not in (g, h)] + [new]
                merged = True
                break
        if not merged:
            break
    while len(groups) < n_territories:
        pot = np.array([weight[idx].sum() for idx, _ in groups])
        g = int(np.argmax(pot))
        if len(groups[g][0]) < 2:
            break
        parts = _split_by_axis(groups[g][0], xy, 2)
        groups = [grp for k, grp in enumerate(groups) if k != g] + [(p, False) for p in parts]

    labels = np.empty(len(region), dtype=int)
    for g, (idx, _) in enumerate(groups):
        labels[idx] = g
    _repair_contiguity(labels, graph.matrix)

    # Number territories west to east by mean centre.
    used = np.unique(labels)
    mean_x = np.array([xy[labels == lab, 0].mean() for lab in used])
    rank = {lab: r for r, lab in enumerate(used[np.argsort(mean_x, kind="stable")])}
    width = max(2, len(str(len(used))))
    return np.array([f"T{rank[lab] + 1:0{width}d}" for lab in labels])


def _rep_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct fictional names (a number is appended past the name lists)."""
    firsts = rng.permutation(len(_FIRST_NAMES))
    lasts = rng.permutation(len(_LAST_NAMES))
    size = min(len(firsts), len(lasts))
    names = []
    for k in range(n):
        name = f"{_FIRST_NAMES[firsts[k % size]]} {_LAST_NAMES[lasts[k % size]]}"
        names.append(name if k < size else f"{name} {k // size + 1}")
    return names


def simulate_company(
    counties: gpd.GeoDataFrame,
    demographics: pd.DataFrame,
    seed: int,
    n_months: int = 60,
    start: str = "2021-01-01",
    n_territories: int = 50,
    projected_crs: str = PROJECTED_CRS,
    market_tilt: np.ndarray | None = None,
) -> DemoData:
    """Simulate a company selling in the given counties.

    Deterministic: the same inputs and ``seed`` give identical tables. See
    the module docstring for the formulas.

    Parameters
    ----------
    counties
        ``unit_id``, ``name``, ``region`` and polygon ``geometry`` with a CRS.
    demographics
        Output of :func:`derive_counties_and_demographics` (any row order).
    seed
        Seed of the ``numpy.random.default_rng`` used for every draw.
    n_months
        Number of observed months.
    start
        First observed month.
    n_territories
        Number of territories (and reps) in the current alignment.
    projected_crs
        CRS for contiguity and distances.
    market_tilt
        Optional log multiplier of demand per unit (in ``unit_id`` order), added
        to the market index: how one product line's demand differs
        (:mod:`territory.features.demo_lines`). None: the company's one line.

    Returns
    -------
    DemoData
        All tables; ``counties`` and ``demographics`` sorted by ``unit_id``.
    """
    rng = np.random.default_rng(seed)
    counties = counties.sort_values("unit_id", kind="stable").reset_index(drop=True)
    ids = counties["unit_id"].astype(str).to_numpy()
    demo = demographics.set_index("unit_id").loc[ids].reset_index()
    population = demo["population"].to_numpy(dtype=float)

    graph = build_adjacency(counties, "unit_id", "queen", projected_crs)
    xy = projected_xy(counties, projected_crs)
    index, growth, nbr = _market(demo, ids, graph)
    if market_tilt is not None:
        index = index + np.asarray(market_tilt, dtype=float)

    # Full-capture monthly demand at t = 0.
    idio = rng.normal(0.0, IDIOSYNCRATIC_SD, len(ids))
    base = POTENTIAL_SCALE * population**POP_EXPONENT * np.exp(index + idio)
    periods, demand, true_potential = _demand(base, growth, start, n_months)

    territory = draw_alignment(counties, base, graph, xy, n_territories)
    reps, penetration, rep_of_unit = _draw_reps(rng, territory, ids, population)
    sales, order_value = _draw_sales(rng, demand, penetration, population)
    accounts_mean, accounts, visits = _draw_workload(
        rng, demo, population, growth, penetration, n_months
    )

    sales_df = pd.DataFrame(
        {
            "unit_id": np.repeat(ids, n_months),
            "period": np.tile(periods[:n_months].to_numpy(), len(ids)),
            "sales": sales.ravel(),
            "accounts": accounts.ravel().astype("int64"),
            "visits": visits.ravel().astype("int64"),
        }
    )
    truth = pd.DataFrame(
        {
            "unit_id": ids,
            "true_potential": true_potential,
            "rep_penetration": penetration,
            "expected_sales_horizon": true_potential * penetration,
            "territory_id": territory,
            "rep_id": rep_of_unit,
            "base_monthly_potential": base,
            "market_index": index,
            "idiosyncratic": idio,
            "annual_growth": growth,
            "nbr_log_density": nbr,
            "mean_order_value": order_value,
            "expected_accounts": accounts_mean,
        }
    )
    return DemoData(
        counties=counties[["unit_id", "name", "region", "geometry"]],
        demographics=demo,
        sales=sales_df,
        alignment=pd.DataFrame({"unit_id": ids, "territory_id": territory}),
        reps=reps,
        truth=truth,
    )


def _market(
    demo: pd.DataFrame, ids: np.ndarray, graph: AdjacencyGraph
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Market index, annual growth and neighbours' mean log density of every unit."""
    log_density = pd.DataFrame(
        {"log_density": np.log(demo["population_density"].to_numpy(dtype=float))}, index=ids
    )
    nbr = spatial_lag(graph, log_density)["log_density_nbr_mean"].to_numpy()
    nbr = np.where(np.isnan(nbr), log_density["log_density"].to_numpy(), nbr)
    index, growth = market_index(demo, nbr)
    return index, growth, nbr


def _demand(
    base: np.ndarray, growth: np.ndarray, start: str, n_months: int
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Periods, observed full-capture demand (units x months) and true potential."""
    periods = pd.date_range(start, periods=n_months + 12, freq="MS")
    t = np.arange(n_months + 12)
    season = SEASONALITY[periods.month.to_numpy() - 1]
    demand = base[:, None] * season[None, :] * (1.0 + growth[:, None]) ** (t[None, :] / 12.0)
    true_potential = demand[:, n_months:].sum(axis=1)
    return periods, demand[:, :n_months], true_potential


def _draw_reps(
    rng: np.random.Generator, territory: np.ndarray, ids: np.ndarray, population: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The reps table (one rep per territory), and every unit's rep penetration and rep id."""
    terr_ids = np.unique(territory)
    k = len(terr_ids)
    lo, hi = PENETRATION_RANGE
    pen_by_terr = np.round(rng.uniform(lo, hi, k), 3)
    names = _rep_names(rng, k)
    width = max(2, len(str(k)))
    rep_ids = [f"R{j + 1:0{width}d}" for j in range(k)]
    terr_pos = np.searchsorted(terr_ids, territory)
    homes = []
    for j in range(k):
        members = np.flatnonzero(terr_pos == j)
        homes.append(ids[members[np.lexsort((ids[members], -population[members]))[0]]])
    reps = pd.DataFrame(
        {
            "territory_id": terr_ids,
            "rep_id": rep_ids,
            "rep_name": names,
            "home_unit_id": homes,
            "capacity": np.full(k, np.nan),
        }
    )
    return reps, pen_by_terr[terr_pos], np.array(rep_ids)[terr_pos]


def _draw_sales(
    rng: np.random.Generator, demand: np.ndarray, penetration: np.ndarray, population: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Compound Poisson sales with a lognormal demand shock, and the mean order values."""
    shock = rng.lognormal(-0.5 * DEMAND_SHOCK_SD**2, DEMAND_SHOCK_SD, demand.shape)
    mu = demand * penetration[:, None] * shock
    order_value = ORDER_VALUE * (population / 20000.0) ** ORDER_VALUE_ELASTICITY
    orders = rng.poisson(mu / order_value[:, None])
    scale = order_value[:, None] / ORDER_VALUE_SHAPE
    values = rng.gamma(ORDER_VALUE_SHAPE * np.maximum(orders, 1), np.broadcast_to(scale, mu.shape))
    return np.round(np.where(orders > 0, values, 0.0), 2), order_value


def _draw_workload(
    rng: np.random.Generator,
    demo: pd.DataFrame,
    population: np.ndarray,
    growth: np.ndarray,
    penetration: np.ndarray,
    n_months: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected accounts per unit, and monthly accounts and visits (units x months)."""
    log_income = np.log(demo["median_family_income"].to_numpy(dtype=float))
    accounts_mean = 2.0 * np.sqrt(population / 1000.0) * np.exp(
        0.2 * np.tanh(-(log_income - 10.22) / 0.25)
    )
    t = np.arange(n_months)
    accounts_rate = accounts_mean[:, None] * (1.0 + growth[:, None] / 2.0) ** (t[None, :] / 12.0)
    accounts = rng.poisson(accounts_rate)
    effort = rng.gamma(40.0, 1.0 / 40.0, (len(population), n_months))
    visits = rng.poisson(accounts * (0.6 + 0.8 * penetration[:, None]) * effort)
    return accounts_mean, accounts, visits
