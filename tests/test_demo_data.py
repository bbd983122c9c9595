"""Tests of the demo data simulator and of the committed ``data/demo`` files.

Nothing here reads the raw NAT files: the simulator is re-run from the
committed geography and demographics.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

from territory.features.demo import (
    PROJECTED_CRS,
    derive_counties_and_demographics,
    simulate_company,
)
from territory.features.spatial import build_adjacency
from territory.pipelines.demo_data import DEFAULT_SEED, FILES, write_demo_data

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
N_TERRITORIES = 50


@pytest.fixture(scope="module")
def counties() -> gpd.GeoDataFrame:
    return gpd.read_parquet(DEMO / "counties.parquet")


@pytest.fixture(scope="module")
def demographics() -> pd.DataFrame:
    return pd.read_parquet(DEMO / "demographics.parquet")


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return pd.read_parquet(DEMO / "sales.parquet")


@pytest.fixture(scope="module")
def alignment() -> pd.DataFrame:
    return pd.read_csv(DEMO / "alignment.csv", dtype=str)


@pytest.fixture(scope="module")
def reps() -> pd.DataFrame:
    return pd.read_csv(DEMO / "reps.csv", dtype={"home_unit_id": str})


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return pd.read_parquet(DEMO / "truth.parquet")


@pytest.fixture(scope="module")
def graph(counties):
    return build_adjacency(counties, "unit_id", "queen", PROJECTED_CRS)


def _two_states(counties, demographics, states=("Iowa", "Nebraska")):
    sub = counties[counties["region"].isin(states)].reset_index(drop=True)
    return sub, demographics[demographics["unit_id"].isin(sub["unit_id"])]


# --- committed files ------------------------------------------------------------------


def test_all_files_present_and_folder_small():
    for name in FILES:
        assert (DEMO / name).is_file(), name
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total < 10 * 1024**2


def test_counties_are_valid_geoparquet(counties):
    assert counties.crs.to_epsg() == 4326
    assert list(counties.columns) == ["unit_id", "name", "region", "geometry"]
    assert len(counties) == 3085
    assert counties["unit_id"].is_unique
    assert counties["unit_id"].str.fullmatch(r"\d{5}").all()
    assert counties.geometry.is_valid.all()
    assert not counties.geometry.is_empty.any()
    assert set(counties.geom_type) <= {"Polygon", "MultiPolygon"}
    # Contiguous US, lon/lat.
    minx, miny, maxx, maxy = counties.total_bounds
    assert -125 < minx < maxx < -66 and 24 < miny < maxy < 50


def test_simplified_geography_keeps_queen_contiguity(graph):
    # 3,085 counties with ~9,000 neighbour pairs; few islands need nearest-unit links.
    assert graph.matrix.nnz // 2 >= 9000
    assert len(graph.island_links) <= 5


def test_demographics_match_units(demographics, counties):
    assert set(demographics["unit_id"]) == set(counties["unit_id"])
    assert demographics["unit_id"].is_unique
    assert "year" not in demographics.columns
    numeric = demographics.drop(columns="unit_id")
    assert all(pd.api.types.is_numeric_dtype(t) for t in numeric.dtypes)
    assert not numeric.isna().any().any()
    assert (demographics["population"] > 0).all()
    # exp(MFIL89): plausible 1989 median family income in dollars.
    assert demographics["median_family_income"].between(5_000, 100_000).all()
    density = demographics["population"] / demographics["area_km2"]
    np.testing.assert_allclose(demographics["population_density"], density)


def test_sales_panel(sales, counties):
    assert list(sales.columns) == ["unit_id", "period", "sales", "accounts", "visits"]
    assert sales["period"].dtype == "datetime64[ns]"
    periods = pd.DatetimeIndex(sorted(sales["period"].unique()))
    assert len(periods) == 60
    assert periods[0] == pd.Timestamp("2021-01-01")
    assert (periods.day == 1).all()
    assert not sales.duplicated(["unit_id", "period"]).any()
    assert (sales.groupby("unit_id").size() == 60).all()
    assert set(sales["unit_id"]) == set(counties["unit_id"])
    assert (sales["sales"] >= 0).all()
    assert pd.api.types.is_integer_dtype(sales["accounts"])
    assert pd.api.types.is_integer_dtype(sales["visits"])
    assert (sales["accounts"] >= 0).all() and (sales["visits"] >= 0).all()


def test_zero_months_are_a_few_percent_in_small_counties(sales, demographics):
    zero = sales["sales"] == 0
    assert 0.01 <= zero.mean() <= 0.06
    pop = demographics.set_index("unit_id")["population"]
    zero_units = sales.loc[zero, "unit_id"].unique()
    assert pop.loc[zero_units].median() < pop.quantile(0.2)


def test_sales_have_q4_peak_and_growth(sales):
    national = sales.groupby("period")["sales"].sum()
    by_month = national.groupby(national.index.month).mean()
    assert by_month.idxmax() == 12
    assert by_month.loc[[10, 11, 12]].mean() > 1.1 * by_month.loc[[6, 7, 8]].mean()
    by_year = national.groupby(national.index.year).sum()
    assert by_year.iloc[-1] > by_year.iloc[0] * 1.05


def test_alignment_assigns_every_unit_once(alignment, counties):
    assert list(alignment.columns) == ["unit_id", "territory_id"]
    assert alignment["unit_id"].is_unique
    assert set(alignment["unit_id"]) == set(counties["unit_id"])
    assert alignment["territory_id"].nunique() == N_TERRITORIES
    assert alignment["territory_id"].str.fullmatch(r"T\d{2}").all()


def test_territories_are_contiguous(alignment, graph):
    labels = alignment.set_index("unit_id").loc[graph.unit_ids, "territory_id"].to_numpy()
    for territory in np.unique(labels):
        members = np.flatnonzero(labels == territory)
        n_comp, _ = sp.csgraph.connected_components(
            graph.matrix[members][:, members], directed=False
        )
        assert n_comp == 1, territory


def test_alignment_is_deliberately_unbalanced(alignment, truth):
    owner = alignment.set_index("unit_id")["territory_id"]
    pot = truth.set_index("unit_id")["true_potential"].groupby(owner).sum()
    assert len(pot) == N_TERRITORIES
    deviation = (pot / pot.mean() - 1).abs().max()
    assert 0.5 <= deviation <= 2.0


def test_reps_one_per_territory_with_home_inside(reps, alignment):
    assert set(reps.columns) >= {"territory_id", "rep_id", "rep_name", "home_unit_id", "capacity"}
    assert reps["territory_id"].is_unique and reps["rep_id"].is_unique
    assert reps["rep_name"].is_unique
    assert set(reps["territory_id"]) == set(alignment["territory_id"])
    owner = alignment.set_index("unit_id")["territory_id"]
    assert (owner.loc[reps["home_unit_id"]].to_numpy() == reps["territory_id"].to_numpy()).all()


def test_truth_covers_units(truth, counties, alignment):
    assert truth["unit_id"].is_unique
    assert set(truth["unit_id"]) == set(counties["unit_id"])
    assert (truth["true_potential"] > 0).all()
    assert truth["rep_penetration"].between(0.45, 1.0).all()
    # Penetration is a rep property: constant within a territory, varied across.
    merged = truth.merge(alignment, on="unit_id", suffixes=("", "_al"))
    assert (merged["territory_id"] == merged["territory_id_al"]).all()
    per_terr = merged.groupby("territory_id")["rep_penetration"]
    assert (per_terr.nunique() == 1).all()
    assert per_terr.first().min() < 0.6 and per_terr.first().max() > 0.9
    np.testing.assert_allclose(
        truth["expected_sales_horizon"], truth["true_potential"] * truth["rep_penetration"]
    )


def test_balancing_fifty_territories_is_feasible(truth, sales):
    # No unit may hold more than 40% of an average territory's potential or workload.
    pot = truth["true_potential"]
    assert pot.max() <= 0.4 * pot.sum() / N_TERRITORIES
    accounts = sales.groupby("unit_id")["accounts"].mean()
    assert accounts.max() <= 0.4 * accounts.sum() / N_TERRITORIES


def test_potential_is_driven_by_market_but_not_only_by_population(truth, demographics):
    merged = truth.merge(demographics, on="unit_id")
    rho = spearmanr(merged["true_potential"], merged["population"]).statistic
    assert 0.8 < rho < 0.99
    # Richer markets and dense neighbourhoods raise the market index.
    assert spearmanr(merged["market_index"], merged["median_family_income"]).statistic > 0.2
    assert spearmanr(merged["market_index"], merged["nbr_log_density"]).statistic > 0.2


def test_sales_track_potential_times_penetration(sales, truth):
    last_year = sales[sales["period"] >= "2025-01-01"].groupby("unit_id")["sales"].sum()
    expected = truth.set_index("unit_id")["expected_sales_horizon"].loc[last_year.index]
    assert spearmanr(last_year, expected).statistic > 0.9
    # Horizon expectation is a little above the last observed year (mild growth).
    ratio = expected.sum() / last_year.sum()
    assert 1.0 < ratio < 1.15


# --- simulator ------------------------------------------------------------------------


def test_committed_data_regenerates_from_committed_geography(
    counties, demographics, sales, alignment, reps, truth
):
    data = simulate_company(counties, demographics, DEFAULT_SEED)
    pd.testing.assert_frame_equal(data.sales, sales)
    pd.testing.assert_frame_equal(data.truth, truth)
    pd.testing.assert_frame_equal(data.alignment, alignment)
    pd.testing.assert_frame_equal(data.reps, reps)


def test_simulation_is_deterministic_on_a_subset(counties, demographics):
    sub, demo = _two_states(counties, demographics)
    a = simulate_company(sub, demo, seed=7, n_months=24, n_territories=4)
    b = simulate_company(sub.iloc[::-1], demo.iloc[::-1], seed=7, n_months=24, n_territories=4)
    for name in ("sales", "alignment", "reps", "truth", "demographics"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = simulate_company(sub, demo, seed=8, n_months=24, n_territories=4)
    assert not np.allclose(a.sales["sales"], c.sales["sales"])
    assert a.sales["period"].nunique() == 24
    assert a.alignment["territory_id"].nunique() == 4
    assert (a.sales["sales"] >= 0).all()


def test_subset_alignment_groups_and_splits_states(counties, demographics):
    sub, demo = _two_states(counties, demographics)
    # Fewer territories than states: whole states are grouped.
    one = simulate_company(sub, demo, seed=1, n_months=12, n_territories=1)
    assert one.alignment["territory_id"].nunique() == 1
    # More territories than states: states are cut along county lines.
    six = simulate_company(sub, demo, seed=1, n_months=12, n_territories=6)
    assert six.alignment["territory_id"].nunique() == 6
    region = sub.set_index("unit_id")["region"]
    states_per_terr = six.alignment.groupby("territory_id")["unit_id"].agg(
        lambda u: region.loc[u].nunique()
    )
    assert (states_per_terr == 1).all()


def test_more_population_means_more_potential(counties, demographics):
    sub, demo = _two_states(counties, demographics)
    base = simulate_company(sub, demo, seed=3, n_months=12, n_territories=2).truth
    bigger = demo.copy()
    target = bigger["unit_id"] == bigger["unit_id"].iloc[0]
    bigger.loc[target, "population"] *= 2
    bigger.loc[target, "population_density"] *= 2
    grown = simulate_company(sub, bigger, seed=3, n_months=12, n_territories=2).truth
    uid = bigger.loc[target, "unit_id"].iloc[0]
    ratio = (
        grown.set_index("unit_id").loc[uid, "true_potential"]
        / base.set_index("unit_id").loc[uid, "true_potential"]
    )
    # Sublinear: doubling population raises potential by less than double.
    assert 1.2 < ratio < 2.0


# --- pipeline -------------------------------------------------------------------------


def _fake_nat(counties: gpd.GeoDataFrame, demographics: pd.DataFrame) -> gpd.GeoDataFrame:
    """A NAT-shaped frame rebuilt from the committed tables."""
    d = demographics.set_index("unit_id").loc[counties["unit_id"]].reset_index()
    return gpd.GeoDataFrame(
        {
            "NAME": counties["name"].to_numpy(),
            "STATE_NAME": counties["region"].to_numpy(),
            "FIPS": counties["unit_id"].to_numpy(),
            "PO90": d["population"].to_numpy(),
            "PO80": (d["population"] / (1 + d["population_growth"])).to_numpy(),
            "UE90": d["unemployment_rate"].to_numpy(),
            "MA90": d["median_age"].to_numpy(),
            "DV90": d["divorce_rate"].to_numpy(),
            "GI89": d["gini"].to_numpy(),
            "FH90": d["female_headed_share"].to_numpy(),
            "FP89": d["poverty_share"].to_numpy(),
            "BLK90": d["black_share"].to_numpy(),
            "MFIL89": np.log(d["median_family_income"]).to_numpy(),
            "RD90": d["resource_deprivation"].to_numpy(),
            "PS90": d["population_structure"].to_numpy(),
            "SOUTH": d["south"].to_numpy(),
        },
        geometry=counties.geometry.to_numpy(),
        crs=None,
    )


def test_derive_renames_real_columns(counties, demographics):
    sub, demo = _two_states(counties, demographics)
    nat = _fake_nat(sub, demo)
    units, derived = derive_counties_and_demographics(nat)
    assert units.crs.to_epsg() == 4326
    assert units.geometry.is_valid.all()
    expected = demo.sort_values("unit_id").reset_index(drop=True)
    for col in ("population", "unemployment_rate", "median_age", "poverty_share"):
        np.testing.assert_allclose(derived[col], expected[col])
    np.testing.assert_allclose(derived["median_family_income"], expected["median_family_income"])
    np.testing.assert_allclose(derived["population_growth"], expected["population_growth"])


def _nat_folder(tmp_path, counties, demographics):
    """Two states' counties written as a NAT folder: (their units, the folder)."""
    sub, demo = _two_states(counties, demographics)
    nat_dir = tmp_path / "nat"
    nat_dir.mkdir()
    _fake_nat(sub, demo).to_file(nat_dir / "NAT.shp")
    return sub, nat_dir


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_write_demo_data_writes_every_file_atomically(tmp_path, counties, demographics):
    sub, nat_dir = _nat_folder(tmp_path, counties, demographics)
    out = tmp_path / "out"
    paths = write_demo_data(nat_dir, out, seed=5)
    assert set(paths) == set(FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo_tmp_")] == []
    first = {name: path.read_bytes() for name, path in paths.items()}
    write_demo_data(nat_dir, out, seed=5)
    assert {name: path.read_bytes() for name, path in paths.items()} == first
    written = pd.read_parquet(out / "sales.parquet")
    assert set(written["unit_id"]) == set(sub["unit_id"])


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_write_demo_data_with_rep_changes(tmp_path, counties, demographics):
    """``--rep-changes``: an earlier alignment and the sales it made before ``changed_at``;
    from then on the company is the one simulated without it."""
    sub, nat_dir = _nat_folder(tmp_path, counties, demographics)
    plain = write_demo_data(nat_dir, tmp_path / "plain", seed=5)
    paths = write_demo_data(nat_dir, tmp_path / "out", seed=5, rep_changes=0.5)
    assert set(paths) == {*FILES, "alignment_previous.csv"}
    now = pd.read_csv(paths["alignment.csv"], dtype=str)
    earlier = pd.read_csv(paths["alignment_previous.csv"], dtype=str)
    assert now["unit_id"].tolist() == earlier["unit_id"].tolist()
    moved = set(now["unit_id"][now["territory_id"] != earlier["territory_id"]])
    assert moved
    changed = pd.Timestamp(pd.read_parquet(paths["sales.parquet"])["period"].max()) \
        - pd.DateOffset(months=11)
    assert f'changed_at: "{changed:%Y-%m}"' in paths["README.md"].read_text()
    for name in ("alignment.csv", "reps.csv", "truth.parquet", "counties.parquet"):
        assert paths[name].read_bytes() == plain[name].read_bytes()
    old = pd.read_parquet(plain["sales.parquet"])
    new = pd.read_parquet(paths["sales.parquet"])
    same = (old["sales"] == new["sales"]).to_numpy()
    later = (old["period"] >= changed).to_numpy()
    assert same[later].all() and same[~old["unit_id"].isin(moved).to_numpy()].all()
    assert not same[~later & old["unit_id"].isin(moved).to_numpy() & (old["sales"] > 0)].any()


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_make_demo_data_rep_changes_option(tmp_path, counties, demographics):
    from typer.testing import CliRunner

    from territory.pipelines.cli import app

    sub, nat_dir = _nat_folder(tmp_path, counties, demographics)
    out = tmp_path / "out"
    bad = CliRunner().invoke(app, ["make-demo-data", "--nat-dir", str(nat_dir), "--out",
                                   str(out), "--rep-changes", "1.5"])
    assert bad.exit_code == 2 and "share of boundary units" in bad.output
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    good = CliRunner().invoke(app, ["make-demo-data", "--nat-dir", str(nat_dir), "--out",
                                    str(out), "--seed", "5", "--rep-changes", "0.5"])
    assert good.exit_code == 0, good.output
    assert (out / "alignment_previous.csv").is_file()
