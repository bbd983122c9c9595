"""What the command line prints: run summaries, plans, validation and backtest tables (rich)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from territory.features.frequency import periods_in_words

console = Console()


def print_result(result: dict, config) -> None:
    m = result["metrics"]
    held_out = periods_in_words(config.forecast.validation_periods, config.features.frequency)
    table = Table(title="Run summary", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, key in ((f"forecast WAPE (held-out {held_out})", "valid_wape"),
                       ("seasonal naive WAPE (same window)", "valid_wape_seasonal_naive")):
        value = m.get(key)
        table.add_row(label, f"{value:.1%}" if value is not None and value == value else "n/a")
    if "heldout_wape_published" in m:
        table.add_row("published forecast", str(result.get("published_forecast", "lightgbm")))
        table.add_row("published WAPE (last backtest window)", f"{m['heldout_wape_published']:.1%}")
        table.add_row("LightGBM WAPE (same window)", f"{m['heldout_wape_lightgbm']:.1%}")
    if "potential_spearman_vs_truth" in m:
        table.add_row("potential Spearman vs truth", f"{m['potential_spearman_vs_truth']:.3f}")
    designs = result.get("forces") or {"": result}  # with forces:, one block per force
    for force, design in designs.items():
        label = f"{force}: " if force else ""
        for key, value in design["territories"].items():
            if key.startswith("max_abs_deviation_"):
                cur = (design["current_territories"] or {}).get(key)
                cur_text = f" (current {cur:.1%})" if cur is not None else ""
                table.add_row(label + key.replace("_", " "), f"{value:.1%}{cur_text}")
        table.add_row(f"{label}contiguous", str(design["territories"].get("contiguous")))
        table.add_row(f"{label}violations", str(len(design["violations"])))
    table.add_row("champion", "promoted" if result["promotion"]["promoted"] else "kept")
    console.print(table)
    console.print(f"outputs:  {result['run_dir']}")
    if result.get("forces"):
        console.print(f"report:   {result['report_html']} (every force, and the overlay)")
    for force, design in (result.get("forces") or {"": result}).items():
        which = f" ({force})" if force else ""
        console.print(f"report:   {design['report_html']}{which}")
        console.print(f"workbook: {Path(design['report_html']).with_suffix('.xlsx')}{which}")
    console.print(f"MLflow run: {result['mlflow_run_id']}")
    for line in result.get("diagnosis", []):
        console.print(f"[yellow]why balance is not reached:[/yellow] {line}")
    print_plans(Path(result["run_dir"]))


def print_plans(run_dir: Path) -> None:
    """The price of balance: every plan beside the current alignment and the minimal change
    (``plan_comparison.csv``, else ``plans.csv``)."""
    import pandas as pd

    path = next((p for p in (run_dir / "plan_comparison.csv", run_dir / "plans.csv")
                 if p.exists()), None)
    if path is None:
        return
    plans = pd.read_csv(path)
    devs = [c for c in plans if c.endswith("_max_abs_deviation")]
    table = Table(title=f"Plans: the price of balance ({path.name})")
    for column in ["plan", *(c.removesuffix("_max_abs_deviation") + " worst" for c in devs),
                   "hard viol.", "elong. median", "span km", "moved"]:
        table.add_column(column, justify="left" if column == "plan" else "right")

    def num(row, column: str, fmt: str) -> str:
        value = row.get(column)
        return "" if value is None or pd.isna(value) else format(value, fmt)

    for row in plans.to_dict("records"):
        style = "bold" if row.get("published") else None
        table.add_row(str(row["plan"]), *(num(row, c, ".1%") for c in devs),
                      num(row, "hard_violations", ".0f"), num(row, "median_elongation", ".2f"),
                      num(row, "max_span_km", ",.0f"),
                      moved + "%" if (moved := num(row, "units_moved_pct", ".1f")) else "",
                      style=style)
    console.print(table)


def print_validation(report) -> None:
    """The memory estimate and the warnings of :func:`validation.validate_inputs`."""
    memory = report.memory
    available = ("unknown" if memory.available is None
                 else f"{memory.available / 2**30:.1f} GiB available")
    console.print(f"as of {report.as_of:%Y-%m-%d}; estimated peak memory "
                  f"{memory.needed / 2**30:.1f} GiB ({memory.n_units:,} units x "
                  f"{memory.n_periods} periods x {memory.n_features} features; {available})",
                  highlight=False, soft_wrap=True)
    from rich.markup import escape

    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(str(warning))}", highlight=False,
                      soft_wrap=True)


def print_backtest(result, written: dict) -> None:
    table = result.table
    overall = table[table["horizon"] == "all"].set_index("method")
    origins = ", ".join(f"{o:%Y-%m-%d}" for o in result.origins)
    summary = Table(title=f"Backtest, origins {origins}")
    for name in ("method", "MASE", "WAPE", "80% coverage", "rows"):
        summary.add_column(name, justify="left" if name == "method" else "right")
    for method, row in overall.iterrows():
        coverage = "" if row["coverage"] != row["coverage"] else f"{row['coverage']:.3f}"
        summary.add_row(method, f"{row['mase']:.3f}", f"{row['wape']:.2%}", coverage,
                        str(int(row["rows"])))
    console.print(summary)
    per_h = table[table["horizon"] != "all"].pivot(index="horizon", columns="method",
                                                   values="mase")
    per_h = per_h.loc[sorted(per_h.index, key=int), result.methods]
    by_h = Table(title="MASE by horizon")
    by_h.add_column("h", justify="right")
    for method in result.methods:
        by_h.add_column(method, justify="right")
    for h, row in per_h.iterrows():
        by_h.add_row(str(h), *[f"{v:.3f}" for v in row])
    console.print(by_h)
    by_length = result.coverage_by_length
    if by_length is not None and len(by_length):
        lengths = by_length[by_length["history"] != "all"]
        words = ", ".join(f"{row['history']} " + (f"{row['coverage']:.3f} ({int(row['rows'])} "
                                                   "rows)" if row["rows"] else "no rows")
                          for _, row in lengths[lengths["method"] == "territory"].iterrows())
        console.print(f"territory's 80% coverage by history: {words}", highlight=False)
    gate = result.gate
    verdict = "[green]passes[/green]" if gate["passed"] else "[yellow]does not pass[/yellow]"
    console.print(f"territory MASE {gate['territory_mase']:.3f} vs best single member "
                  f"{gate['best_member']} {gate['best_member_mase']:.3f} "
                  f"({gate['gap']:+.1%}): the gate {verdict}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if len(result.skipped):
        console.print(f"[yellow]{len(result.skipped)} series-windows left out[/yellow] "
                      f"(reasons in {written['skipped.csv']}):", highlight=False)
        for _, row in result.skipped.head(10).iterrows():
            console.print(f"  {row['unit_id']} at {row['origin']:%Y-%m-%d}: {row['reason']}",
                          highlight=False, soft_wrap=True)
    for name, path in written.items():
        console.print(f"{name}: {path}", highlight=False)


def print_horizons(summary) -> None:
    """Realised against promised accuracy per horizon
    (:func:`territory.models.monitoring.horizon_summary`)."""
    if summary.empty:
        console.print("No forecast has an actual yet: nothing measured per horizon.")
        return
    table = Table(title="Per horizon: realised vs promised (backtest), pooled over the as-of "
                        "dates with actuals")
    for column in ("horizon", "forecasts", "WAPE", "promised WAPE", "bias", "coverage",
                   "promised coverage"):
        table.add_column(column, justify="right")

    def pct(value) -> str:
        return "" if value != value else f"{value:.1%}"

    for row in summary.itertuples():
        table.add_row(str(row.horizon), str(row.forecasts), pct(row.wape), pct(row.promised_wape),
                      pct(row.bias), pct(row.coverage), pct(row.promised_coverage))
    console.print(table)


def print_backfill(result) -> None:
    """The backfill's accuracy per as-of date."""
    import pandas as pd

    table = Table(title="Backfill: forecast vs later actuals, per as-of date", pad_edge=False)
    for column in ("as of", "model", "months", "WAPE", "WAPE h1", "terr. WAPE", "bias",
                   "cover", "status"):
        table.add_column(column, justify="left" if column in ("as of", "status") else "right",
                         no_wrap=column in ("as of", "model"),
                         min_width=None if column in ("as of", "model", "status") else 5)

    def pct(value) -> str:
        return "" if pd.isna(value) else f"{value:.1%}"

    def model(row) -> str:  # with the month it was trained at, when it is an earlier one
        if pd.isna(row.model_version):
            return ""
        earlier = row.model_as_of != row.as_of
        return f"v{row.model_version}" + (f" ({row.model_as_of[:7]})" if earlier else "")

    for row in result.itertuples():
        table.add_row(row.as_of[:7], model(row),
                      "" if pd.isna(row.months_observed) else f"{row.months_observed:.0f}",
                      pct(row.wape), pct(row.wape_h1), pct(row.wape_territory), pct(row.bias),
                      pct(row.coverage), row.status)
    console.print(table)


def print_nightly(result: dict, config) -> None:
    """Where the nightly forecast wrote, with which model, and what monitoring found."""
    folder, scores = Path(result["folder"]), result["scores"]
    table = Table(title=f"Nightly forecast as of {result['as_of']:%Y-%m-%d}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("model version", f"v{result['model_version']}")
    table.add_row("units scored", f"{scores[config.data.columns.unit_col].nunique():,}")
    table.add_row("periods ahead", str(scores["horizon"].nunique()))
    if result.get("forces"):
        table.add_row("sales forces", ", ".join(map(str, result["forces"])))
    watched = result.get("monitoring") or {}
    if "error" in watched:
        table.add_row("monitoring", f"not updated: {watched['error']}")
    else:
        table.add_row("earlier forecasts measured", str(watched.get("forecasts_measured", 0)))
    console.print(table)
    console.print(f"outputs:  {folder}", soft_wrap=True)
    for label, name in (("report:  ", "report.html"), ("workbook:", "report.xlsx")):
        if (folder / name).is_file():
            console.print(f"{label} {folder / name}", soft_wrap=True)
