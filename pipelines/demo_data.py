"""Build the embedded demo data set (``data/demo/``) from the PySAL NAT shapefile.

Run::

    python -m territory.pipelines.demo_data --nat-dir /path/to/libpysal/examples/nat --out data/demo

Every file is written to a temporary folder next to ``out`` first and then
moved into place, so a failed run never leaves half-written files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import geopandas as gpd

from territory.features.demo import (
    PROJECTED_CRS,
    DemoData,
    derive_counties_and_demographics,
    simulate_company,
)
from territory.features.demo_lines import LINES, ProductLines, simulate_product_lines
from territory.features.demo_rep_change import with_rep_changes
from territory.features.spatial import build_adjacency, contiguity_matrix

DEFAULT_SEED = 20261127
PREVIOUS_ALIGNMENT = "alignment_previous.csv"
FILES = (
    "counties.parquet",
    "demographics.parquet",
    "sales.parquet",
    "alignment.csv",
    "reps.csv",
    "truth.parquet",
    "README.md",
)


def _queen_pairs_lost(original: gpd.GeoDataFrame, simplified: gpd.GeoDataFrame) -> tuple[int, int]:
    """Queen neighbour pairs of the original polygons missing after simplification."""
    before = contiguity_matrix(original.reset_index(drop=True))
    after = contiguity_matrix(simplified.reset_index(drop=True))
    lost = (before - before.multiply(after)).nnz // 2
    return int(lost), int(before.nnz // 2)


def summarise(data: DemoData) -> dict[str, float]:
    """Headline statistics of a simulated data set, for the README and the log."""
    truth = data.truth
    per_territory = truth.groupby("territory_id")["true_potential"].sum()
    accounts = data.sales.groupby("unit_id")["accounts"].mean()
    graph = build_adjacency(data.counties, "unit_id", "queen", PROJECTED_CRS)
    n_terr = len(per_territory)
    return {
        "n_units": float(len(truth)),
        "n_territories": float(n_terr),
        "n_months": float(data.sales["period"].nunique()),
        "zero_share": float((data.sales["sales"] == 0).mean()),
        "max_potential_deviation": float(
            (per_territory / per_territory.mean() - 1.0).abs().max()
        ),
        "max_unit_potential_ratio": float(
            truth["true_potential"].max() / (truth["true_potential"].sum() / n_terr)
        ),
        "max_unit_accounts_ratio": float(accounts.max() / (accounts.sum() / n_terr)),
        "total_true_potential": float(truth["true_potential"].sum()),
        "island_links": float(len(graph.island_links)),
    }


def _readme(
    stats: dict[str, float], sizes: dict[str, int], lost: int, pairs: int, seed: int
) -> str:
    """The folder's README, with the numbers of this build."""
    size_rows = "\n".join(f"| `{name}` | {size / 1024:,.0f} KiB |" for name, size in sizes.items())
    return f"""# Demo data: US counties, simulated company

Real geography and demographics, simulated sales. Regenerate (deterministic,
byte-identical for the same inputs and seed) with:

```
python -m territory.pipelines.demo_data \\
    --nat-dir <libpysal-4.1.1>/libpysal/examples/nat --out data/demo --seed {seed}
```

The simulator is `features/demo.py`; its module docstring holds the exact formulas.

## Source

The county polygons and attributes are the **NAT** example data set ("US county
homicides 1960-1990", 3,085 counties of the contiguous US) shipped in the
libpysal 4.1.1 source distribution (`libpysal/examples/nat/`), BSD-3-Clause
licence ("Copyright (c) 2007-2015, PySAL Developers", see the sdist's
`LICENSE.txt`). Original data, as credited by libpysal for this NCOVR family of
data sets: S. Messner, L. Anselin, D. Hawkins, G. Deane, S. Tolnay, R. Baller
(2000), *An Atlas of the Spatial Patterning of County-Level Homicide,
1960-1990*, Pittsburgh, PA, National Consortium on Violence Research (NCOVR).
Software: Rey, S. J. & Anselin, L. (2007), "PySAL: A Python Library of Spatial
Analytical Methods", *The Review of Regional Studies* 37(1), 5-27. The shapefile
has no `.prj`; coordinates are longitude/latitude (EPSG:4326).

Everything about the company (territories, reps, sales, accounts, visits) is
simulated and fictional, including the rep names.

## Files

| file | size |
|---|---|
{size_rows}

- `counties.parquet`: GeoParquet, EPSG:4326. `unit_id` (5-digit county FIPS),
  `name`, `region` (state), `geometry`. Polygons simplified as a coverage
  (`shapely.coverage_simplify`, 1 km tolerance in EPSG:5070, shared edges kept),
  snapped to a 1e-5 degree grid. Queen neighbour pairs lost against the original
  polygons: {lost} of {pairs}.
- `demographics.parquet`: `unit_id` and the 1990 census values of NAT, renamed:
  `population` (PO90), `population_growth` (PO90 / PO80 - 1), `unemployment_rate`
  (UE90, %), `median_age` (MA90), `divorce_rate` (DV90), `gini` (GI89),
  `female_headed_share` (FH90, %), `poverty_share` (FP89, % families below
  poverty), `black_share` (BLK90, %), `median_family_income` (exp(MFIL89), USD
  1989), `resource_deprivation` (RD90, index), `population_structure` (PS90,
  index), `south` (SOUTH), `area_km2` (unsimplified polygon, EPSG:5070),
  `population_density` (per km²).
- `sales.parquet`: `unit_id`, `period` (month start), `sales` (USD, >= 0),
  `accounts`, `visits`; {stats['n_months']:.0f} months per unit. Share of zero
  unit-months: {stats['zero_share']:.2%} (small counties).
- `alignment.csv`: the company's current, hand-drawn alignment, `unit_id`,
  `territory_id` ({stats['n_territories']:.0f} territories: whole states, small
  neighbouring states grouped, the largest states cut into bands of counties).
  Every territory is contiguous under queen contiguity (plus nearest-unit links
  for islands). It is deliberately unbalanced: the largest deviation of a
  territory's true potential from the mean is {stats['max_potential_deviation']:.0%}.
- `reps.csv`: `territory_id`, `rep_id`, `rep_name` (fictional), `home_unit_id`
  (the territory's most populous county), `capacity` (blank).
- `truth.parquet`: ground truth for evaluation only, never a feature:
  `true_potential` (expected full-capture sales over the 12 months after the last
  observed month), `rep_penetration`, `expected_sales_horizon` (true potential x
  penetration), `territory_id`, `rep_id`, `base_monthly_potential`,
  `market_index`, `idiosyncratic`, `annual_growth`, `nbr_log_density`,
  `mean_order_value`, `expected_accounts`.

## Potential formula

Full-capture monthly demand at the first month is
`B_i = 75 * population_i ** 0.5 * exp(m_i + e_i)` with `e_i ~ N(0, 0.15²)` and
`m_i` a nonlinear market index of income, unemployment, median age, poverty,
population growth, own density and the neighbours' mean log density (metro
spillover); see `features/demo.py`. Demand grows by `g_i` a year (3% plus 0.3 x
the county's annual population growth 1980-90) and follows a month-of-year
pattern peaking in December. Observed sales are
`B_i x penetration x season x trend x shock`, realised as compound Poisson
(orders Poisson, order values Gamma), with rep penetration ~ Uniform(0.45, 1.0).

Feasibility: the largest county holds {stats['max_unit_potential_ratio']:.0%} of an
average territory's potential and {stats['max_unit_accounts_ratio']:.0%} of its
accounts, so {stats['n_territories']:.0f} territories can be balanced tightly.
Total true potential: {stats['total_true_potential'] / 1e6:,.0f} million USD.
"""


def write_demo_data(nat_dir: Path, out_dir: Path, seed: int = DEFAULT_SEED,
                    rep_changes: float = 0.0) -> dict[str, Path]:
    """Read NAT, simulate the company, write every demo file atomically.

    Parameters
    ----------
    nat_dir
        Folder holding ``NAT.shp`` (with ``.dbf`` and ``.shx``).
    out_dir
        Destination folder, created if needed.
    seed
        Simulation seed.
    rep_changes
        Above 0: that share of the boundary units had another territory until 12 months
        before the last month (:func:`territory.features.demo_rep_change.with_rep_changes`,
        seeded by ``seed``), written as ``alignment_previous.csv``, with the sales it made;
        the README gives ``changed_at`` for ``data.previous_alignment``. 0: no history.

    Returns
    -------
    dict[str, pathlib.Path]
        File name to final path.
    """
    nat = gpd.read_file(Path(nat_dir) / "NAT.shp")
    if nat.crs is None:
        nat = nat.set_crs("EPSG:4326")
    counties, demographics = derive_counties_and_demographics(nat)
    data = simulate_company(counties, demographics, seed)
    earlier, changed_at = None, None
    if rep_changes > 0:
        data, earlier, changed_at = with_rep_changes(data, rep_changes, seed)

    original = nat.assign(unit_id=nat["FIPS"].astype(str).str.zfill(5))
    original = original.sort_values("unit_id", kind="stable")
    lost, pairs = _queen_pairs_lost(original, data.counties)
    stats = summarise(data)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo_tmp_", dir=out_dir.parent))
    try:
        data.counties.to_parquet(tmp / "counties.parquet", index=False, compression="zstd")
        data.demographics.to_parquet(tmp / "demographics.parquet", index=False, compression="zstd")
        data.sales.to_parquet(tmp / "sales.parquet", index=False, compression="zstd")
        data.alignment.to_csv(tmp / "alignment.csv", index=False)
        data.reps.to_csv(tmp / "reps.csv", index=False)
        data.truth.to_parquet(tmp / "truth.parquet", index=False, compression="zstd")
        names = list(FILES)
        if earlier is not None:
            earlier.to_csv(tmp / PREVIOUS_ALIGNMENT, index=False)
            names.insert(-1, PREVIOUS_ALIGNMENT)
        sizes = {name: (tmp / name).stat().st_size for name in names if name != "README.md"}
        readme = _readme(stats, sizes, lost, pairs, seed)
        if earlier is not None:
            readme += _previous_readme(earlier, data, changed_at, rep_changes)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        paths = {}
        for name in names:
            os.replace(tmp / name, out_dir / name)
            paths[name] = out_dir / name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _previous_readme(earlier, data: DemoData, changed_at: str, share: float) -> str:
    """The README's part on the earlier alignment (``--rep-changes``)."""
    moved = int((earlier["territory_id"].to_numpy()
                 != data.alignment["territory_id"].to_numpy()).sum())
    return f"""
## Rep changes (`--rep-changes {share}`)

- `{PREVIOUS_ALIGNMENT}`: the alignment until {changed_at}. {moved} units (a share of
  {share} of the units on a territory boundary, seeded) were in a neighbouring
  territory; their sales before {changed_at} are the earlier rep's (simulated sales
  times that rep's penetration over the current one's). Use it as
  `data.previous_alignment: {{path: {PREVIOUS_ALIGNMENT}, changed_at: "{changed_at}"}}`.
"""


def _lines_readme(lines: ProductLines, seed: int) -> str:
    """The two-line folder's README, with the numbers of this build."""
    rows = []
    for line, (direction, k) in LINES.items():
        sales = lines.sales[lines.sales["segment"] == line]["sales"].sum()
        rows.append(f"| `{line}` | {'urban' if direction > 0 else 'rural'}-led | {k} | "
                    f"{sales / 1e6:,.0f} |")
    table = "\n".join(rows)
    return f"""# Demo data: two product lines, two sales forces, one map

Simulated by `features/demo_lines.py` (its docstring has the formulas) on the
geography and demographics of `data/demo/` (shared: the config reads them
from there). Regenerate (deterministic) with:

```
territory make-demo-data --product-lines \\
    --nat-dir <libpysal-4.1.1>/libpysal/examples/nat --out data/demo_lines --seed {seed}
```

| line (segment) | demand | territories | sales, 5 years (million USD) |
|---|---|---:|---:|
{table}

- `sales.parquet`: `segment`, `unit_id`, `period`, `sales`, `accounts`, `visits`;
  one row per line, unit and month.
- `alignment_<line>.csv`, `reps_<line>.csv`: each line's sales force: its current
  alignment (hand-drawn on its own potential, deliberately unbalanced) and reps.
- `truth.parquet`: `true_potential_<line>` and `rep_penetration_<line>` per unit,
  for evaluation only.
"""


def write_product_line_data(nat_dir: Path, out_dir: Path, seed: int = DEFAULT_SEED
                            ) -> dict[str, Path]:
    """The two-line demo (:mod:`territory.features.demo_lines`), written atomically."""
    nat = gpd.read_file(Path(nat_dir) / "NAT.shp")
    if nat.crs is None:
        nat = nat.set_crs("EPSG:4326")
    counties, demographics = derive_counties_and_demographics(nat)
    lines = simulate_product_lines(counties, demographics, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo_tmp_", dir=out_dir.parent))
    try:
        lines.sales.to_parquet(tmp / "sales.parquet", index=False, compression="zstd")
        lines.truth.to_parquet(tmp / "truth.parquet", index=False, compression="zstd")
        names = ["sales.parquet", "truth.parquet", "README.md"]
        for line in LINES:
            lines.alignments[line].to_csv(tmp / f"alignment_{line}.csv", index=False)
            lines.reps[line].to_csv(tmp / f"reps_{line}.csv", index=False)
            names += [f"alignment_{line}.csv", f"reps_{line}.csv"]
        (tmp / "README.md").write_text(_lines_readme(lines, seed), encoding="utf-8")
        paths = {}
        for name in names:
            os.replace(tmp / name, out_dir / name)
            paths[name] = out_dir / name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nat-dir", type=Path, required=True, help="folder holding NAT.shp")
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--rep-changes", type=float, default=0.0,
                        help="share of boundary units with another territory until 12 months "
                             "before the end (writes alignment_previous.csv)")
    args = parser.parse_args(argv)
    paths = write_demo_data(args.nat_dir, args.out, args.seed, args.rep_changes)
    total = sum(p.stat().st_size for p in paths.values())
    for path in paths.values():
        print(f"{path}  {path.stat().st_size / 1024:,.0f} KiB")
    print(f"total {total / 1024:,.0f} KiB")


if __name__ == "__main__":
    main()
