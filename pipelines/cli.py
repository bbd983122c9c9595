"""``territory``: the command line.

Environment for Prefect (its home inside the workspace) is set here, at
command time, before Prefect is imported; nothing happens at import.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from territory.features.errors import InputError, shorten
from territory.pipelines.console_tables import (
    console,
    print_backfill,
    print_backtest,
    print_horizons,
    print_nightly,
    print_result,
    print_validation,
)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sales territory planning: forecast, potential and territories.")
err_console = Console(stderr=True)
_OWN_CODE = tuple(str(Path(__file__).resolve().parents[1] / name) + os.sep
                  for name in ("features", "models", "pipelines"))

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Run config (YAML).")]


def _fail(exc: Exception) -> None:
    # soft_wrap: a long line stays one line (rich would otherwise wrap it at the width)
    err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def prepare_environment(workspace: Path, verbose: bool = False,
                        inputs: list[Path] | None = None) -> None:
    """Check the workspace (writable, room on disk), point Prefect's home at it, and
    quieten its logs unless asked. A failed check ends the command with one line."""
    from territory.pipelines.prefect_api import DEFAULT_STARTUP_S, STARTUP_ENV, preflight

    try:
        preflight(workspace, inputs)
    except InputError as exc:
        _fail(exc)
    os.environ.setdefault(STARTUP_ENV, str(DEFAULT_STARTUP_S))
    os.environ.setdefault("PREFECT_HOME", str((workspace / "prefect").resolve()))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "territory")  # into the run logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    if not verbose:
        warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The project's own warnings as one "warning:" line, without the source line Python
    prints under it; other libraries' warnings as Python shows them."""
    if issubclass(category, UserWarning) and filename.startswith(_OWN_CODE):
        err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False,
                          soft_wrap=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@app.command()
def run(
    config: ConfigOption = Path("configs/demo.yaml"),
    as_of: Annotated[str | None, typer.Option(help="As-of date (YYYY-MM-DD).")] = None,
    edits: Annotated[Path | None, typer.Option(
        help="A manager's edits (CSV of unit and territory ids, as the report's editor "
             "exports them): those units stay locked, the rest is redesigned.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the whole pipeline and print where the outputs are."""
    from territory.pipelines.config import load_config, with_edits

    try:
        cfg = load_config(config, {"as_of": as_of} if as_of else None)
        if edits is not None:
            cfg = with_edits(cfg, edits)
    except InputError as exc:
        _fail(exc)
    print_result(_run_flow(cfg, "territory_pipeline", verbose), cfg)


def _run_flow(cfg, name: str, verbose: bool, *args):
    """Flow ``name`` of :mod:`territory.pipelines.flows` on ``cfg`` under a Prefect API (the
    environment's or one started for this command), on the config's runner; a bad input or
    a server that does not start ends the command with one line."""
    prepare_environment(Path(cfg.workspace), verbose, _input_files(cfg))
    from territory.pipelines.prefect_api import PrefectStartError, prefect_api, quiet_input_errors

    try:
        with prefect_api(Path(cfg.workspace)):
            from territory.pipelines import flows

            if not verbose:
                quiet_input_errors()
            return flows.with_runner(getattr(flows, name), cfg)(cfg, *args)
    except (InputError, PrefectStartError) as exc:
        _fail(exc)


def _input_files(cfg) -> list[Path]:
    names = ("units", "sales", "demographics", "alignment", "reps", "truth", "edits")
    return [getattr(cfg.data, name) for name in names if getattr(cfg.data, name) is not None]


@app.command()
def validate(config: ConfigOption = Path("configs/demo.yaml")) -> None:
    """Check the config and every input file against the data contracts."""
    from territory.pipelines.config import load_config
    from territory.pipelines.stages import load_inputs
    from territory.pipelines.validation import validate_inputs

    try:
        cfg = load_config(config)
        inputs = load_inputs(cfg)
        report = validate_inputs(cfg, inputs)
    except InputError as exc:
        _fail(exc)
    console.print(
        f"[green]ok[/green]: {len(inputs.units):,} units, {len(inputs.sales):,} sales rows")
    print_validation(report)


@app.command()
def score(
    config: ConfigOption = Path("configs/demo.yaml"),
    out: Annotated[Path | None, typer.Option(help="Output folder (default <workspace>/scores).")]
    = None,
) -> None:
    """Score every unit with the champion recommender and write recommendations.csv."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
        prepare_environment(Path(cfg.workspace))
        from territory.pipelines.serving import score_all

        path, scored, run_id = score_all(cfg, out)
    except InputError as exc:
        _fail(exc)
    console.print(f"scored {len(scored):,} units → {path} (MLflow run {run_id})")


@app.command()
def serve(
    config: ConfigOption = Path("configs/demo.yaml"),
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5001,
    max_body_mb: Annotated[float, typer.Option(
        help="Largest request body accepted (MiB); larger ones get HTTP 413.", min=0.001)]
    = 10.0,
) -> None:
    """Serve models:/territory-recommender@champion over REST (MLflow's scoring server)."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
    except InputError as exc:
        _fail(exc)
    from territory.models.tracking import RECOMMENDER, champion_version, serve_command, serving_env
    from territory.models.tracking.legacy import champion_needs_migration
    from territory.pipelines.publish import tracking_uri

    if (busy := _port_problem(host, port)) is not None:
        _fail(InputError(f"{host}:{port}", busy))
    uri = tracking_uri(cfg)
    try:
        version = champion_version(uri)
    except Exception as exc:  # a tracking server that does not answer, a broken store
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail(InputError(uri, f"cannot read the model registry: {shorten(first)}"))
    if version is None:
        _fail(InputError(uri, f"no trained model to serve ({RECOMMENDER} has no champion); "
                              f"train one first: territory run --config {config}"))
    # The server loads the model in its own process, where the old module names never resolve.
    if champion_needs_migration(uri):
        _fail(InputError(
            uri, "models:/territory-recommender@champion was registered before the "
                 "territory.* namespace, so the model server cannot load it",
            hint=f"run `territory migrate --config {config}` first"))
    command = serve_command(host, port)
    console.print(f"serving models:/territory-recommender@champion on http://{host}:{port}"
                  f" (POST /invocations, bodies up to {max_body_mb:g} MiB; Ctrl-C stops)")
    os.execve(command[0], command, serving_env(uri, max_body_bytes=int(max_body_mb * 2**20)))


def _port_problem(host: str, port: int) -> str | None:
    """Why the scoring server could not listen on ``host:port``, or None when it can."""
    import socket

    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except socket.gaierror:
        return f"cannot serve on host '{host}': no such interface; pass --host"
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return (f"cannot listen on port {port} ({reason}); stop what uses it or pass --port "
                "with a free one")
    return None


@app.command()
def recover(config: ConfigOption = Path("configs/demo.yaml")) -> None:
    """Undo what a killed or crashed run left in the workspace (every run also does it first)."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
    except InputError as exc:
        _fail(exc)
    prepare_environment(Path(cfg.workspace))
    from territory.pipelines.journal import recover as undo

    try:
        done = undo(Path(cfg.workspace))
    except Exception as exc:  # the registry does not answer: the journals stay for later
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail(InputError(str(cfg.workspace), f"cannot undo a dead run yet: {shorten(first)}",
                         hint="check the tracking store, then run territory recover again"))
    if not done:
        console.print(f"nothing to recover in {cfg.workspace}")
        return
    for item in done:
        registry = item.get("registry") or {}
        deleted = sum(len(v) for v in registry.get("deleted_versions", {}).values())
        what = ("its outputs were published; kept" if item["published"] else
                f"{deleted} model version(s) deleted, "
                f"{len(registry.get('restored_aliases', {}))} alias(es) restored, "
                f"{len(registry.get('failed_runs', []))} MLflow run(s) marked FAILED, "
                f"{len(item.get('removed', []))} temporary folder(s) removed")
        console.print(f"{item['flow']} died during '{item['stage']}': {what}",
                      highlight=False, soft_wrap=True)


cache_app = typer.Typer(no_args_is_help=True, help="The feature cache.")
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
def cache_clear(config: ConfigOption = Path("configs/demo.yaml")) -> None:
    """Remove every cached feature build (the next run rebuilds its features)."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
    except InputError as exc:
        _fail(exc)
    prepare_environment(Path(cfg.workspace))
    from territory.pipelines import cache
    from territory.pipelines.flows import feature_cache_dir

    folder = feature_cache_dir()
    removed = cache.clear(folder)
    freed = sum(e.size for e in removed) / 2**20
    console.print(f"removed {len(removed)} cached feature build(s), {freed:,.1f} MiB, "
                  f"from {folder}", highlight=False, soft_wrap=True)


@app.command()
def migrate(config: ConfigOption = Path("configs/demo.yaml")) -> None:
    """Re-register models pickled before the territory.* namespace, so everything loads them."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
    except InputError as exc:
        _fail(exc)
    prepare_environment(Path(cfg.workspace))
    from territory.models.tracking import RECOMMENDER
    from territory.models.tracking.legacy import migrate_workspace
    from territory.pipelines.publish import setup_tracking

    uri = setup_tracking(cfg)
    moved = migrate_workspace(cfg.tracking.experiment,
                              [cfg.tracking.registered_model, RECOMMENDER])
    if not moved:
        console.print(f"nothing to migrate in {uri}")
        return
    table = Table(title=f"Re-registered with today's module names ({uri})")
    for column in ("model", "old version", "new version"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for item in moved:
        table.add_row(item.model, f"v{item.old_version}", f"v{item.new_version}")
    console.print(table)
    console.print("every alias of an old version (champion, challenger) now names its new one")


@app.command()
def nightly(
    config: ConfigOption = Path("configs/demo.yaml"),
    as_of: Annotated[str | None, typer.Option(help="As-of date (YYYY-MM-DD).")] = None,
    model_version: Annotated[str | None, typer.Option(
        help="Score with this registered version instead of the champion.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the nightly forecast now: score with the champion, recommend, report, monitor."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config, {"as_of": as_of} if as_of else None)
    except InputError as exc:
        _fail(exc)
    print_nightly(_run_flow(cfg, "nightly_forecast", verbose, model_version), cfg)


def _needs_prefect_server(what: str) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        _fail(InputError(
            "PREFECT_API_URL", f"{what} needs a Prefect server",
            hint="start one with `prefect server start` and export "
                 "PREFECT_API_URL=http://127.0.0.1:4200/api (or your server's URL)"))


@app.command()
def deploy(config: ConfigOption = Path("configs/demo.yaml")) -> None:
    """Register the nightly forecast and the weekly retrain on a process work pool."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
    except InputError as exc:
        _fail(exc)
    _needs_prefect_server("territory deploy")
    prepare_environment(Path(cfg.workspace))
    from territory.pipelines.deploy import deploy as register
    from territory.pipelines.deploy import deployment_specs

    register(cfg, config)
    table = Table(title=f"Deployments on work pool '{cfg.schedule.work_pool}'")
    for column in ("deployment", "cron", "time zone"):
        table.add_column(column)
    for spec in deployment_specs(cfg, config):
        table.add_row(spec.full_name, spec.cron, spec.timezone)
    console.print(table)
    console.print(f"start a worker: prefect worker start --pool {cfg.schedule.work_pool}")


@app.command()
def schedule(config: ConfigOption = Path("configs/demo.yaml")) -> None:
    """Serve the nightly forecast and the weekly retrain from this process (no work pool)."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
    except InputError as exc:
        _fail(exc)
    prepare_environment(Path(cfg.workspace), verbose=True)
    from territory.pipelines.prefect_api import PrefectStartError, prefect_api

    try:  # without PREFECT_API_URL: a server of its own, that dies with this process
        with prefect_api(Path(cfg.workspace)) as url:
            from territory.pipelines.deploy import deployment_specs, serve

            for spec in deployment_specs(cfg, config):
                console.print(f"serving {spec.full_name}: '{spec.cron}' in {spec.timezone}")
            console.print(f"Prefect API: {url}; Ctrl-C stops serving (and pauses the "
                          "schedules)", highlight=False, soft_wrap=True)
            serve(cfg, config)
    except PrefectStartError as exc:
        _fail(exc)


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First as-of month (YYYY-MM).")],
    end: Annotated[str, typer.Option(help="Last as-of month (YYYY-MM).")],
    config: ConfigOption = Path("configs/demo.yaml"),
    retrain_every: Annotated[int, typer.Option(
        help="Train a model every N months and score the months between with the latest "
             "one, as nightly runs score with the last retrain's champion (1: train at "
             "every month).")] = 1,
) -> None:
    """Replay the nightly forecast as of each month; report accuracy per as-of date."""
    from territory.pipelines.config import load_config
    from territory.pipelines.prefect_api import PrefectStartError, prefect_api, quiet_input_errors

    try:
        cfg = load_config(config)
        prepare_environment(Path(cfg.workspace), inputs=_input_files(cfg))
        with prefect_api(Path(cfg.workspace)):
            from territory.pipelines.deploy import backfill as replay
            from territory.pipelines.monitoring import backfill_horizons

            quiet_input_errors()

            result, csv = replay(cfg, start, end, retrain_every)
    except (InputError, PrefectStartError) as exc:
        _fail(exc)
    print_backfill(result)
    print_horizons(backfill_horizons(cfg, result.loc[result["status"] == "ok", "as_of"]))
    console.print(f"accuracy table: {csv}")
    console.print(f"monitoring history: {Path(cfg.workspace) / 'monitoring' / 'accuracy.parquet'}")


@app.command()
def tune(
    config: ConfigOption = Path("configs/demo.yaml"),
    trials: Annotated[int, typer.Option(help="Trials (each is one rolling-origin backtest).")]
    = 20,
    out: Annotated[Path, typer.Option(help="Where to write the tuned config (YAML).")]
    = Path("configs/tuned.yaml"),
    timeout: Annotated[float | None, typer.Option(
        help="Start no new trial after this many seconds.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    params: Annotated[str | None, typer.Option(
        help="Comma-separated settings to search (default: learning_rate, num_leaves, "
             "min_child_samples, feature_fraction, lambda_l2).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Backtest metric to minimise: wape, mase, mae or rmse "
             "(default: forecast.gate_metric).")] = None,
) -> None:
    """Search LightGBM settings with Optuna on the backtest windows; write the best config."""
    from territory.pipelines.config import load_config

    try:
        cfg = load_config(config)
        prepare_environment(Path(cfg.workspace))
        from territory.pipelines.tune import tune as search

        names = [p.strip() for p in params.split(",") if p.strip()] if params else None
        result = search(cfg, config, out, n_trials=trials, timeout=timeout, seed=seed,
                        params=names, metric=metric, show_progress=cfg.progress == "rich")
    except InputError as exc:
        _fail(exc)
    table = Table(title=f"Best of {len(result.trials)} trials (backtest {result.metric})")
    table.add_column("setting")
    table.add_column("value", justify="right")
    for name, value in result.best_params.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row(f"backtest {result.metric}", f"{result.best_value:.4f}")
    table.add_row(f"current settings' {result.metric}", f"{result.baseline_value:.4f}")
    console.print(table)
    console.print(f"tuned config: {result.config_path}")
    console.print(f"MLflow parent run: {result.parent_run_id}")


@app.command("backtest")
def backtest_command(
    sales: Annotated[Path, typer.Option(
        help="Sales history, one row per unit and period: CSV or Parquet.")],
    frequency: Annotated[str, typer.Option(
        help="Pandas frequency of the periods: YS, QS, MS or W-MON.")],
    horizon: Annotated[int, typer.Option(help="Periods forecast from each origin.")],
    windows: Annotated[int, typer.Option(help="Scored origins; the last window ends at the "
                                              "last period.")] = 4,
    out: Annotated[Path, typer.Option(help="Folder for metrics.csv, forecasts.csv, "
                                           "skipped.csv and weights.csv.")] = Path("results"),
    step: Annotated[int | None, typer.Option(
        help="Periods between origins (default: the horizon).")] = None,
    unit_col: Annotated[str, typer.Option(help="Unit id column.")] = "unit_id",
    time_col: Annotated[str, typer.Option(help="Period column.")] = "period",
    target_col: Annotated[str, typer.Option(help="Sales column.")] = "sales",
    date_format: Annotated[str | None, typer.Option(
        help="strptime format of non-ISO dates, e.g. '%d/%m/%Y' (ISO dates need none).")]
    = None,
    seed: Annotated[int, typer.Option(help="LightGBM's seed.")] = 42,
    jobs: Annotated[int, typer.Option(help="Processes for the statistical models.")] = 1,
) -> None:
    """Backtest LightGBM, AutoETS/Theta/ARIMA and their combination on a sales file alone."""
    from territory.features.config import ColumnsConfig
    from territory.features.frequency import FREQUENCIES
    from territory.pipelines.sales_backtest import run_sales_backtest

    if frequency not in FREQUENCIES:
        _fail(InputError("--frequency", f"must be one of {', '.join(FREQUENCIES)}, got "
                         f"{shorten(frequency)!r}", hint="e.g. --frequency QS for quarters"))
    columns = ColumnsConfig(unit_col=unit_col, time_col=time_col, target_col=target_col)
    try:
        with err_console.status("[bold]backtest…") as status:
            result, written = run_sales_backtest(
                sales, out, frequency, horizon, windows, step, columns, date_format, seed,
                jobs, progress=lambda line: status.update(f"[bold]{line}…"))
    except InputError as exc:
        _fail(exc)
    print_backtest(result, written)


INIT_LABELS = {
    "data.columns.unit_col": "unit id", "data.columns.time_col": "period column",
    "data.columns.target_col": "target", "data.date_format": "date format",
    "features.frequency": "frequency", "features.lags": "lags", "data.projected_crs": "CRS",
    "territories.workload_column": "workload", "data.table_columns": "column names per file",
    "territories.n_territories": "territories", "data.demographics": "demographics id",
    "data.alignment": "alignment territories", "data.reps": "reps",
    "features.seasonality": "seasonality",
}


@app.command()
def init(
    units: Annotated[Path | None, typer.Option(
        help="Geography of the units: Shapefile, GeoPackage, GeoJSON or GeoParquet.")] = None,
    sales: Annotated[Path | None, typer.Option(
        help="Sales history, one row per unit and period: CSV or Parquet.")] = None,
    demographics: Annotated[Path | None, typer.Option(help="Market features per unit.")] = None,
    alignment: Annotated[Path | None, typer.Option(help="Current unit-to-territory table.")]
    = None,
    reps: Annotated[Path | None, typer.Option(help="Reps per territory.")] = None,
    out: Annotated[Path, typer.Option(help="Config to write (YAML).")] = Path("territory.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config.")]
    = False,
) -> None:
    """Detect columns, dates, frequency and CRS from your files and write a commented config."""
    from territory.pipelines.init_config import init_config

    files = {"units": units, "sales": sales, "demographics": demographics,
             "alignment": alignment, "reps": reps}
    try:
        plan, path = init_config(files, out, force)
    except InputError as exc:
        _fail(exc)
    console.print("[bold]Detected from your files[/bold]")
    for item in plan.items:
        mark = " [yellow](confirm)[/yellow]" if item.confirm else ""
        value = "null" if item.value is None else item.value
        console.print(f"  {INIT_LABELS.get(item.key, item.key)} {value}{mark}: {item.evidence}",
                      highlight=False, soft_wrap=True)
    for line in plan.missing:
        console.print(f"[yellow]missing or to confirm:[/yellow] {line}", highlight=False,
                      soft_wrap=True)
    console.print(f"config: {path}")
    console.print(f"next: territory validate --config {path}, then territory run --config {path}",
                  highlight=False, soft_wrap=True)


@app.command("make-demo-data")
def make_demo_data(
    nat_dir: Annotated[Path, typer.Option(help="Folder with NAT.shp from libpysal 4.1.1.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("data/demo"),
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 20261127,
    product_lines: Annotated[bool, typer.Option(
        help="Two product lines (urban-led, rural-led), one sales force each, for "
             "configs/demo_two_forces.yaml (write them to data/demo_lines).")] = False,
    rep_changes: Annotated[float, typer.Option(
        help="Share of the units on a territory boundary that had another rep until 12 "
             "months before the end: writes alignment_previous.csv (for "
             "data.previous_alignment) and the sales it made. 0: none.")] = 0.0,
) -> None:
    """Regenerate the embedded demo data from PySAL's NAT files."""
    from territory.pipelines.demo_data import write_demo_data, write_product_line_data

    try:
        if product_lines:
            written = write_product_line_data(nat_dir, out, seed)
        else:
            written = write_demo_data(nat_dir, out, seed, rep_changes)
    except InputError as exc:
        _fail(exc)
    for name, path in written.items():
        console.print(f"{name}: {path}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
