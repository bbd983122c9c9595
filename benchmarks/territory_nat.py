"""Benchmark: real counties with two diverging attributes (issue #11).

The instance is libpysal's NAT county panel (3,085 US counties, from the
``libpysal==4.1.1`` sdist, downloaded once with ``pip download`` into
``--cache``): 1990 population ``PO90`` and unemployed persons
``UE90 / 100 * PO90`` (``UE90`` is the 1990 unemployment rate in percent).
The two diverge by region, so both at ±5% is out of reach.

Geometry is read in EPSG:4326 (the shapefile has no .prj) and projected to
EPSG:5070; unit centres are representative points in metres
(:func:`territory.features.spatial.projected_xy`), contiguity is queen with
islands linked (:func:`~territory.features.spatial.contiguity_matrix` +
:func:`~territory.features.spatial.link_islands`), areas are km² of the
projected polygons. Population is balanced as ``potential`` (hard, ±5%),
unemployed persons as ``workload`` (soft, tried down to ``--soft-tolerance``
along the config's frontier).

``--subset`` picks the counties: ``all`` (default, 3,085), ``south`` (NAT's
``SOUTH == 1`` counties: the 1,412 of the 17 southern states and DC, the
instance the issue quotes at K=40), or an integer N (the N easternmost
counties by the EPSG:5070 x of their representative point; ties by FIPS).

For each K in ``--k`` it runs :func:`territory.models.plans.price_of_balance`
with a :class:`~territory.models.config.TerritoryConfig` (config defaults
otherwise: seed 42, ``time_limit_s`` 120 as the safety net, shape limit 2.0)
and prints the plans table, the published plan's balance, shape, contiguity
and CPU, whether any design ran into the time limit, the giant units
(counties whose population alone exceeds (1 + 5%) × total / K) and the
published design's diagnosis and violations. Targets (issue #11): the hard
attribute met for every territory that holds no giant unit and is not cut
off behind one (the diagnosis names those), the soft attribute reported, at
most 30 s CPU at K=50, never ending at the safety net.

Run (not part of the test suite; downloads ~24 MB once)::

    .venv/bin/python benchmarks/territory_nat.py [--k 25 50] [--subset all|south|N]
        [--json benchmarks/territory_nat.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SDIST = "libpysal-4.1.1.tar.gz"
MEMBERS = ("NAT.shp", "NAT.dbf", "NAT.shx")
HARD, SOFT = "potential", "workload"  # PO90 and unemployed persons
LABELS = {HARD: "population PO90", SOFT: "unemployed UE90/100*PO90"}


def nat_shapefile(cache: Path) -> Path:
    """``NAT.shp`` (with .dbf, .shx) extracted from the libpysal 4.1.1 sdist in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "libpysal==4.1.1", "-d", str(cache)], check=True)
    out = cache / "nat"
    if not all((out / m).exists() for m in MEMBERS):
        out.mkdir(exist_ok=True)
        with tarfile.open(sdist) as tar:
            for m in MEMBERS:
                src = tar.extractfile(f"libpysal-4.1.1/libpysal/examples/nat/{m}")
                (out / m).write_bytes(src.read())
    return out / "NAT.shp"


def load_counties(cache: Path, subset: str):
    """The NAT counties in EPSG:5070, with ``unemployed``; the chosen subset, FIPS order."""
    import geopandas as gpd

    from territory.features.spatial import projected_xy

    gdf = gpd.read_file(nat_shapefile(cache))
    gdf = gdf.set_crs("EPSG:4326", allow_override=True).to_crs("EPSG:5070")
    gdf["FIPS"] = gdf["FIPS"].astype(str)
    gdf = gdf.sort_values("FIPS").reset_index(drop=True)
    if subset == "south":
        gdf = gdf[gdf["SOUTH"] == 1]
    elif subset != "all":
        n = int(subset)
        x = projected_xy(gdf, "EPSG:5070")[:, 0]
        order = np.lexsort((gdf["FIPS"].to_numpy(), -x))
        gdf = gdf.iloc[np.sort(order[:n])]
    gdf = gdf.reset_index(drop=True)
    gdf["unemployed"] = gdf["UE90"].astype(float) / 100.0 * gdf["PO90"].astype(float)
    return gdf


def build_geography(gdf):
    """Geography (FIPS ids, representative points in metres, queen + island links, km²)."""
    from territory.features.spatial import contiguity_matrix, link_islands, projected_xy
    from territory.models.alignment import Geography

    xy = projected_xy(gdf, "EPSG:5070")
    adjacency, links = link_islands(contiguity_matrix(gdf, kind="queen"), xy)
    areas = gdf.geometry.area.to_numpy() / 1e6
    return Geography(gdf["FIPS"].to_numpy(), xy, adjacency, areas), links


def run_k(geo, measures, gdf, k: int, args) -> dict:
    from territory.models import plans
    from territory.models.config import BalanceRule, TerritoryConfig

    fields = dict(
        n_territories=k, seed=args.seed,
        balance=[BalanceRule(attribute=HARD, tolerance=args.tolerance, role="hard"),
                 BalanceRule(attribute=SOFT, tolerance=args.soft_tolerance, role="soft")])
    if args.time_limit is not None:
        fields["time_limit_s"] = args.time_limit
    if args.frontier is not None:
        fields["frontier"] = args.frontier
    config = TerritoryConfig(**fields)
    tau = config.tolerances[HARD]

    w0, c0 = time.perf_counter(), time.process_time()
    tried = plans.price_of_balance(geo, measures, config)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    published = plans.chosen_plan(tried, config)
    table = plans.plans_table(tried, config, published)
    table["run_time_s"] = [p.design.overall.get("run_time_s") for p in tried]
    table["cpu_time_s"] = [p.design.overall.get("cpu_time_s") for p in tried]
    limit = config.time_limit_s  # a CPU-second safety net (the engine's clock)
    table["hit_time_limit"] = [bool(p.design.overall.get("hit_time_limit")) for p in tried]
    shown = table.drop(columns=[c for c in table if c.endswith("_role")])

    design = published.design
    summary, overall = design.summary, design.overall
    dev = summary[f"{HARD}_deviation"].abs()
    soft_dev = summary[f"{SOFT}_deviation"].abs()
    pop = measures[HARD]
    share = pop.sum() / k
    giant_idx = np.flatnonzero(pop > (1 + tau) * share)
    giant_idx = giant_idx[np.argsort(-pop[giant_idx], kind="stable")]
    giants = [{"fips": str(gdf["FIPS"].iat[i]), "name": str(gdf["NAME"].iat[i]),
               "state": str(gdf["STATE_NAME"].iat[i]), "population": float(pop[i]),
               "shares": float(pop[i] / share),
               "territory": str(design.proposed.iat[i])} for i in giant_idx]
    giant_terr = {g["territory"] for g in giants}
    out = summary["territory"].astype(str).isin(giant_terr)
    hard_out = dev > tau + 1e-9
    result = {
        "k": k, "n_units": len(pop), "time_limit_s": limit,
        "plans": json.loads(shown.to_json(orient="records")),
        "published": {
            "plan": str(table.loc[table["published"], "plan"].iloc[0]),
            "hard_max_abs_deviation": float(dev.max()),
            "hard_within_tolerance": float((~hard_out).mean()),
            "hard_out_of_tolerance": int(hard_out.sum()),
            "hard_out_without_giant": int((hard_out & ~out).sum()),
            "soft_max_abs_deviation": float(soft_dev.max()),
            "soft_median_abs_deviation": float(soft_dev.median()),
            "median_elongation": float(overall.get("median_elongation", np.nan)),
            "max_elongation": float(overall.get("max_elongation", np.nan)),
            "contiguous": bool(overall.get("contiguous", False)),
            "cpu_s": float(published.seconds),
            "run_time_s": overall.get("run_time_s"),
            "engine_giant_units": list(overall.get("giant_units", [])),
        },
        "any_hit_time_limit": bool(table["hit_time_limit"].any()),
        "cpu_s": cpu, "wall_s": wall,
        "giant_units": giants,
        "diagnosis": list(design.diagnosis),
        "violations": list(design.violations),
    }

    print(f"\n=== K={k}: {HARD} = {LABELS[HARD]} hard ±{tau:.0%}, {SOFT} = {LABELS[SOFT]} "
          f"soft down to ±{config.tolerances[SOFT]:.0%}; time limit {limit:g} s ===")
    with pd.option_context("display.width", 250, "display.max_columns", 40,
                           "display.float_format", _number):
        print(shown.to_string(index=False))
    p = result["published"]
    print(f"\npublished: {p['plan']}")
    print(f"  {HARD} (hard): max |dev| {p['hard_max_abs_deviation']:.1%}, "
          f"{p['hard_within_tolerance']:.0%} of territories within ±{tau:.0%} "
          f"({p['hard_out_of_tolerance']} out, {p['hard_out_without_giant']} of them "
          f"without a giant unit)")
    print(f"  {SOFT} (soft): max |dev| {p['soft_max_abs_deviation']:.1%}, "
          f"median {p['soft_median_abs_deviation']:.1%}")
    print(f"  elongation median {p['median_elongation']:.2f}, max {p['max_elongation']:.2f}; "
          f"contiguous {p['contiguous']}")
    rt = p["run_time_s"]
    rt_text = "?" if rt is None else f"{rt:.1f}"
    print(f"  CPU: published plan {p['cpu_s']:.1f} s (its design {rt_text} s wall); all "
          f"{len(tried)} plans {cpu:.1f} s CPU, {wall:.1f} s wall")
    hit = table.loc[table["hit_time_limit"], "plan"].tolist()
    print(f"  time limit hit: {'yes: ' + ', '.join(hit) if hit else 'no'} "
          f"(longest design {max(r or 0 for r in table['cpu_time_s']):.1f} s CPU of {limit:g} s)")
    print(f"\ngiant units (population > {1 + tau:.2f} × total/K = {(1 + tau) * share:,.0f}): "
          f"{len(giants)}; engine reports {len(p['engine_giant_units'])}")
    for g in giants:
        print(f"  {g['fips']} {g['name']}, {g['state']}: {g['population']:,.0f} = "
              f"{g['shares']:.2f}× a territory's share, in {g['territory']}")
    print(f"\ndiagnosis ({len(design.diagnosis)}):")
    for line in design.diagnosis[:10]:
        print(f"  {line}")
    print(f"violations ({len(design.violations)}):")
    for line in design.violations[:10]:
        print(f"  {line}")
    return result


def _number(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 1e6 else f"{v:.3e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[25, 50])
    parser.add_argument("--subset", default="all",
                        help="all, south (1,412 counties) or N (the N easternmost counties)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="population (hard)")
    parser.add_argument("--soft-tolerance", type=float, default=0.05,
                        help="tightest tolerance tried for unemployed persons (soft)")
    parser.add_argument("--frontier", type=float, nargs="+", default=None,
                        help="soft tolerances tried (default: the config's)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="safety net per design in s (default: the config's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path,
                        default=Path(os.path.expanduser("~/.cache/territory-bench")))
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()

    w0, c0 = time.perf_counter(), time.process_time()
    gdf = load_counties(args.cache, args.subset)
    geo, links = build_geography(gdf)
    n = len(gdf)
    measures = {HARD: gdf["PO90"].to_numpy(dtype=float),
                SOFT: gdf["unemployed"].to_numpy(dtype=float),
                "units": np.ones(n), "forecast": gdf["PO90"].to_numpy(dtype=float)}
    setup_cpu, setup_wall = time.process_time() - c0, time.perf_counter() - w0
    rate = measures[SOFT].sum() / measures[HARD].sum()
    print(f"instance: NAT counties ({args.subset}), {n} units, {geo.adjacency.nnz // 2} "
          f"adjacencies ({len(links)} island links), {geo.areas.sum():,.0f} km²; "
          f"population {measures[HARD].sum():,.0f}, unemployed {measures[SOFT].sum():,.0f} "
          f"({rate:.2%} of population; county UE90 {gdf['UE90'].min():.1f}–"
          f"{gdf['UE90'].max():.1f}%); setup {setup_wall:.1f} s wall, {setup_cpu:.1f} s CPU")

    results = [run_k(geo, measures, gdf, k, args) for k in args.k]
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    print(f"\ntotal: {cpu:.1f} s CPU, {wall:.1f} s wall")
    machine = (f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
               f"Python {platform.python_version()}")
    print(f"machine: {machine}")
    if args.json is not None:
        payload = {"instance": {"subset": args.subset, "n_units": n,
                                "island_links": len(links)},
                   "results": results, "cpu_s": cpu, "wall_s": wall, "machine": machine}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=float))


if __name__ == "__main__":
    main()
