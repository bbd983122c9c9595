"""The full demo summed to quarters (3,085 counties x 20 quarters), for issue #12.

Writes ``sales_q.csv`` to ``--out`` and prints the ``territory init`` command that reads it
with the demo's geography, demographics, alignment and reps; then run ``validate`` and
``run`` on the config that init writes (see benchmarks/RESULTS.md, "Own data (issue #12)").

    .venv/bin/python benchmarks/own_data_quarterly.py --out /tmp/i12_quarterly
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def quarterly_sales(demo: Path) -> pd.DataFrame:
    """The demo's monthly sales summed to quarter starts (accounts averaged)."""
    sales = pd.read_parquet(demo / "sales.parquet")
    sales["period"] = sales["period"].dt.to_period("Q").dt.start_time
    return (sales.groupby(["unit_id", "period"], as_index=False)
            .agg(sales=("sales", "sum"), accounts=("accounts", "mean")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for sales_q.csv")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    quarterly = quarterly_sales(DEMO)
    path = args.out / "sales_q.csv"
    tmp = path.with_suffix(".csv.tmp")
    quarterly.to_csv(tmp, index=False)
    tmp.replace(path)
    print(f"{path}: {quarterly['unit_id'].nunique()} units x "
          f"{quarterly['period'].nunique()} quarters, {len(quarterly)} rows")
    print(f"territory init --units {DEMO}/counties.parquet --sales {path} "
          f"--demographics {DEMO}/demographics.parquet --alignment {DEMO}/alignment.csv "
          f"--reps {DEMO}/reps.csv --out {args.out}/territory.yaml")


if __name__ == "__main__":
    main()
