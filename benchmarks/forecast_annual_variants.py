"""Benchmark: LightGBM settings for annual data, compared on us_income's early origins only.

The scored windows of ``forecast_statsforecast.py`` start at 1997; here the
sales end in 1996 (``--end``), so the four origins (1984..1993, 3 apart,
horizon 3) never see them. Each variant replaces some of the frequency's
default features or forecaster settings in
:func:`territory.models.sales_backtest.backtest_sales`; printed: MASE and 80%
coverage per method, and CPU seconds.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_annual_variants.py
    .venv/bin/python benchmarks/forecast_annual_variants.py --end 2009 --variants lags5
"""

from __future__ import annotations

import argparse

from forecast_statsforecast import cpu_seconds, load_us_income  # same folder

from territory.models.sales_backtest import backtest_sales

VARIANTS = {
    "default": ({}, {}),
    "lags5": ({"lags": [1, 2, 3, 4, 5], "rolling_windows": [2, 3, 5]}, {}),
    "equal": ({}, {"weighting": "equal"}),
    "lags5_equal": ({"lags": [1, 2, 3, 4, 5], "rolling_windows": [2, 3, 5]},
                    {"weighting": "equal"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--end", default="1996", help="last year of sales used")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    sales = load_us_income()
    sales = sales[sales["period"] <= f"{args.end}-01-01"]
    for name in args.variants.split(","):
        features, forecast = VARIANTS[name]
        started = cpu_seconds()
        result = backtest_sales(sales, "YS", 3, 4, 3, features=features, forecast=forecast)
        overall = result.table[result.table["horizon"] == "all"].set_index("method")
        print(f"{name} (origins {', '.join(f'{o:%Y}' for o in result.origins)}): MASE "
              f"{overall['mase'].round(3).to_dict()}; coverage "
              f"{overall['coverage'].round(3).to_dict()}; CPU {cpu_seconds() - started:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
