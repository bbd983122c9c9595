"""Issue 13: injection-safe outputs, safe output paths, honest serving and config errors."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from openpyxl import load_workbook

from territory.features.errors import InputError
from territory.features.spreadsheet_safe import inert_frame, inert_text, write_csv
from territory.pipelines import report as rpt
from territory.pipelines.config import load_config
from territory.pipelines.report_format import present

HOSTILE = ['=HYPERLINK("http://x","y")', "=CMD|' /C calc'!A0", "+1+1", "@SUM(A1)", "-2+3",
           "\t=1+1", "\r=1+1"]


def _hostile_table() -> pd.DataFrame:
    n = len(HOSTILE) + 1
    return pd.DataFrame({
        "territory": [*HOSTILE, "T1"],
        "rep": pd.Categorical(["@rep", *["Ada"] * (n - 1)]),
        "potential_deviation": np.linspace(-0.3, 0.2, n),  # negative numbers stay numbers
        "units": np.arange(n) - 3,
        "=evil header": ["ok"] * n,
    })


# --- 1. No formulas in outputs -------------------------------------------------------------------


def test_inert_text_quotes_formula_text_and_leaves_the_rest():
    for text in HOSTILE:
        assert inert_text(text) == "'" + text
    for safe in ("T1", "Ada Lovelace", "", "a=b", "'quoted", -2.5, 3, None):
        assert inert_text(safe) == safe


def test_inert_frame_keeps_numbers_and_dtypes():
    table = _hostile_table()
    out = inert_frame(table)
    assert list(out["territory"]) == ["'" + t for t in HOSTILE] + ["T1"]
    assert out["rep"].iloc[0] == "'@rep" and out["rep"].iloc[1] == "Ada"
    assert list(out.columns)[-1] == "'=evil header"
    pd.testing.assert_series_equal(out["potential_deviation"], table["potential_deviation"])
    pd.testing.assert_series_equal(out["units"], table["units"])
    assert table["territory"].iloc[0] == HOSTILE[0]  # the input is not changed


def test_excel_cells_are_inert_text_and_numbers_read_back(tmp_path):
    table = _hostile_table()
    path = tmp_path / "report.xlsx"
    rpt.write_excel({"Territory summary": table}, path)
    ws = load_workbook(path)["Territory summary"]
    cells = [c for row in ws.iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]  # no formula anywhere
    # XML reads a carriage return back as a line feed; the cell is inert text either way
    assert [ws.cell(row=r, column=1).value for r in range(2, len(HOSTILE) + 2)] == \
        ["'" + t.replace("\r", "\n") for t in HOSTILE]
    assert ws["E1"].value == "'=evil header"
    assert ws["C2"].data_type == "n" and ws["C2"].value == pytest.approx(-0.3)
    back = pd.read_excel(path, sheet_name="Territory summary")
    expected = inert_frame(present(table).frame)  # the report's headers in words
    assert list(back.columns) == list(expected.columns)
    assert list(back["Territory"]) == [t.replace("\r", "\n") for t in expected["Territory"]]
    np.testing.assert_allclose(back["Potential vs target"], table["potential_deviation"])
    assert back["Units"].tolist() == table["units"].tolist()


def test_csv_cells_are_inert_text_and_numbers_read_back(tmp_path):
    table = _hostile_table()
    path = tmp_path / "territory_summary.csv"
    write_csv(table, path)
    back = pd.read_csv(path, keep_default_na=False)
    assert list(back["territory"]) == ["'" + t for t in HOSTILE] + ["T1"]
    assert back["potential_deviation"].dtype == float and (back["potential_deviation"] < 0).any()
    np.testing.assert_allclose(back["potential_deviation"], table["potential_deviation"])
    assert back["units"].tolist() == table["units"].tolist()
    assert "'=evil header" in back.columns
    with open(path, newline="") as handle:  # read as a spreadsheet would
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert len(cells) == 5 * (len(HOSTILE) + 2)  # a carriage return never starts a new row
    text = [c for c in cells if not _is_number(c)]
    assert text and not [c for c in text if c.startswith(("=", "+", "-", "@", "\t", "\r"))]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# --- 2. Safe paths -------------------------------------------------------------------------------


def _write(tmp_path: Path, payload: dict) -> Path:
    (tmp_path / "units.csv").write_text("unit_id,lat,lon\na,1,1\n")
    (tmp_path / "sales.csv").write_text("unit_id,period,sales\na,2024-01-01,1\n")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"units": "units.csv", "sales": "sales.csv"},
                                    "workspace": str(tmp_path / "ws"), **payload}))
    return path


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "a\\b", ".hidden", "..", "x..y", "",
                                  "two words", "a" * 101])
def test_unsafe_run_name_is_refused_at_load(tmp_path, name):
    with pytest.raises(InputError) as err:
        load_config(_write(tmp_path, {"run_name": name}))
    msg = str(err.value)
    assert "key 'run_name'" in msg and "letters, digits" in msg
    assert repr(name)[:60] in msg or "…" in msg


@pytest.mark.parametrize("name", ["demo", "v1.2", "my_run-2", "-dash", "Nightly_2026"])
def test_plain_run_names_load(tmp_path, name):
    assert load_config(_write(tmp_path, {"run_name": name})).run_name == name


def test_output_dir_refuses_a_name_that_skipped_validation(tmp_path):
    from territory.pipelines.flows import output_dir

    config = load_config(_write(tmp_path, {}))
    assert output_dir(config, "runs", pd.Timestamp("2024-01-01")).parent == \
        config.workspace / "runs"
    escaped = config.model_copy(update={"run_name": "../../escaped"})
    with pytest.raises(InputError, match="run_name"):
        output_dir(escaped, "runs", pd.Timestamp("2024-01-01"))


# --- 5. Config errors in plain words -------------------------------------------------------------

PYDANTIC_WORDS = ("constrained-", "type=", "pydantic", "errors.pydantic.dev", "literal[",
                  "Input should", "Field required", "Value error")


def _config_error(tmp_path: Path, payload: dict) -> str:
    with pytest.raises(InputError) as err:
        load_config(_write(tmp_path, payload))
    msg = str(err.value)
    assert not [w for w in PYDANTIC_WORDS if w in msg], msg
    assert "run.yaml" in msg
    return msg


def test_out_of_range_names_key_expected_and_given(tmp_path):
    msg = _config_error(tmp_path, {"territories": {"n_territories": 0}})
    assert "key 'territories.n_territories'" in msg
    assert "expected a whole number >= 1 or 'auto', got 0" in msg


def test_wrong_type_names_key_expected_and_given(tmp_path):
    msg = _config_error(tmp_path, {"dask": {"n_workers": "two"}})
    assert "key 'dask.n_workers'" in msg and "expected a whole number, got 'two'" in msg
    msg = _config_error(tmp_path, {"progress": "loud"})
    assert "key 'progress'" in msg and "expected 'rich' or 'none', got 'loud'" in msg
    msg = _config_error(tmp_path, {"territories": {"frontier": [0.1, 3]}})
    assert "key 'territories.frontier[1]'" in msg and "got 3" in msg


def test_unknown_key_suggests_the_right_one(tmp_path):
    msg = _config_error(tmp_path, {"territories": {"n_territoires": 3}})
    assert "key 'territories.n_territoires'" in msg and "unknown key" in msg
    assert "did you mean 'n_territories'?" in msg


def test_missing_key_and_validator_rule(tmp_path):
    path = _write(tmp_path, {})
    payload = yaml.safe_load(path.read_text())
    del payload["data"]["sales"]
    path.write_text(yaml.safe_dump(payload))
    with pytest.raises(InputError) as err:
        load_config(path)
    assert "key 'data.sales'" in str(err.value) and "this key is required" in str(err.value)
    msg = _config_error(tmp_path, {"features": {"lags": [0]}})
    assert "key 'features.lags'" in msg and "must be positive integers (got [0])" in msg


def test_long_given_values_are_cut(tmp_path):
    msg = _config_error(tmp_path, {"progress": "x" * 10_000})
    assert "…" in msg and len(msg) < 400


def test_missing_file_and_folder_hint_names_the_config_folder(tmp_path):
    (tmp_path / "a_folder").mkdir()
    for target, what in (("nowhere.csv", "file not found"), ("a_folder", "not a file")):
        path = _write(tmp_path, {})
        payload = yaml.safe_load(path.read_text())
        payload["data"]["sales"] = target
        path.write_text(yaml.safe_dump(payload))
        with pytest.raises(InputError) as err:
            load_config(path)
        msg = str(err.value)
        assert "key 'data.sales'" in msg and what in msg and target in msg
        assert f"resolved from the config file's folder, {tmp_path.resolve()}" in msg


def test_read_table_hint_names_the_config_folder(tmp_path):
    from territory.features.io import read_table

    with pytest.raises(InputError) as err:
        read_table(tmp_path / "absent.csv")
    assert "config file's folder" in str(err.value) and "working directory" not in str(err.value)


# --- 3. Serving ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle():
    from territory.models.potential import PotentialEstimator
    from territory.models.recommender import build_bundle

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"population": rng.lognormal(10, 1, 60), "income": rng.normal(50, 5, 60)},
                     index=pd.Index([f"u{i}" for i in range(60)], name="unit_id"))
    y = X["population"] ** 0.5 * rng.uniform(0.5, 1, 60)
    model = PotentialEstimator(n_estimators=20, min_child_samples=5).fit(X, y)
    units = pd.DataFrame({"forecast": y * 0.8, "forecast_lo": y * 0.6, "forecast_hi": y,
                          "potential": model.predict(X), "current_territory": "A",
                          "proposed_territory": "A"}, index=X.index)
    units["penetration"] = units["forecast"] / units["potential"]
    return build_bundle(model, units), X.head(3).reset_index()


@pytest.mark.parametrize("value", [np.inf, -np.inf, float("1e999"), "inf", "Infinity", "1e999",
                                   "-inf", "nan", 10**400])
def test_non_finite_features_are_refused(bundle, value):
    from territory.models.recommender import ScoringInputError

    model, request = bundle
    bad = request.astype({"income": object})
    bad.loc[1, "income"] = value
    with pytest.raises(ScoringInputError, match="'income' must be a finite number") as err:
        model.score(bad)
    assert "u1=" in str(err.value)


def test_null_features_are_missing_values_and_still_score(bundle):
    model, request = bundle
    scored = model.score(request.assign(income=[np.nan, None, 50.0]))
    assert len(scored) == 3 and np.isfinite(scored["potential"]).all()


def test_error_messages_echo_at_most_100_characters_of_input(bundle):
    from territory.models.recommender import ScoringInputError

    model, request = bundle
    huge = "9" * 1_000_000
    with pytest.raises(ScoringInputError) as err:
        model.score(request.assign(unit_id=[huge, huge + "1", "u2"]))
    msg = str(err.value)
    assert msg.startswith("unknown unit_id: ") and "…" in msg and len(msg) < 300
    bad = request.astype({"income": object})
    bad.loc[0, "income"] = "x" * 1_000_000
    with pytest.raises(ScoringInputError) as err:
        model.score(bad)
    assert "must be numeric" in str(err.value) and len(str(err.value)) < 300


def test_pyfunc_turns_a_non_finite_feature_into_a_400(bundle):
    from mlflow.exceptions import MlflowException

    from territory.models.tracking import TerritoryRecommender

    model, request = bundle
    with pytest.raises(MlflowException) as err:
        TerritoryRecommender(model).predict(None, request.assign(income=[1.0, np.inf, 2.0]))
    assert err.value.get_http_status_code() == 400 and "finite" in err.value.message


def _serve(config: Path, *args: str):
    from typer.testing import CliRunner

    from territory.pipelines.cli import app

    return CliRunner().invoke(app, ["serve", "--config", str(config), *args])


def _one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "Traceback" not in result.output and lines[0].startswith("error:")
    return lines[0]


def test_serve_without_a_trained_model_says_so_in_one_line(tmp_path):
    from tests.conftest import free_port

    config = _write(tmp_path, {})
    line = _one_line_error(_serve(config, "--port", str(free_port())))
    assert "no trained model to serve" in line and "territory run" in line
    assert not (tmp_path / "ws" / "mlflow.db").exists()


def test_serve_with_an_empty_registry_says_so_in_one_line(tmp_path):
    from territory.models import tracking
    from tests.conftest import free_port

    config = _write(tmp_path, {})
    (tmp_path / "ws").mkdir()
    tracking.setup_tracking(f"sqlite:///{tmp_path / 'ws' / 'mlflow.db'}", "empty")
    line = _one_line_error(_serve(config, "--port", str(free_port())))
    assert "no trained model to serve" in line


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path):
    config = _write(tmp_path, {})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(_serve(config, "--port", str(port)))
    assert f"port {port}" in line and "--port" in line
    assert not (tmp_path / "ws" / "mlflow.db").exists()


# --- 4. Report -----------------------------------------------------------------------------------


def _report_html() -> str:
    import plotly.graph_objects as go

    content = rpt.ReportContent(title="t", subtitle="s", headline=[], quality_sentences=[],
                                figures={"Chart": go.Figure(go.Bar(x=[1, 2], y=[3, 4]))})
    return rpt.render_html(content)


def test_report_figures_have_no_cloud_or_logo_buttons():
    html = _report_html()
    assert '"displaylogo": false' in html and '"showSendToCloud": false' in html
    assert '"displaylogo": true' not in html and '"showSendToCloud": true' not in html
    assert "default-src 'none'" in html  # the Content-Security-Policy stays


def test_report_mode_bar_has_no_network_button_in_chromium(tmp_path):
    from tests.browser import Page

    path = tmp_path / "report.html"
    path.write_text(_report_html(), encoding="utf-8")
    with Page() as page:
        page.open(path, settle_s=1.0)
        titles = page.evaluate(
            "Array.from(document.querySelectorAll('.modebar-btn'))"
            ".map(b => b.getAttribute('data-title')).join('|')")
        links = page.evaluate("document.querySelectorAll('a[href*=\"plotly\"]').length")
    assert "Zoom" in titles  # the offline tools stay
    assert "Share" not in titles and "Cloud" not in titles and "Chart Studio" not in titles
    assert links == 0
    assert page.requests == [] or all(r.startswith(("file:", "data:")) for r in page.requests)


# --- 6. A request body limit on the scoring server ----------------------------------------------


def _asgi(app, chunks: list[bytes], declared: bytes | None = None) -> tuple[int, bytes, int]:
    """Call an ASGI ``app`` with a body sent in ``chunks``; returns the status, the body
    and how many chunks were never read."""
    import asyncio

    headers = [] if declared is None else [(b"content-length", declared)]
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    inbox = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive():
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, len(inbox)


def _echo_app(seen: list):
    async def app(scope, receive, send):
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_bodies_within_the_limit_reach_the_app_whole():
    from territory.models.body_limit import BodyLimit

    seen: list = []
    status, body, _ = _asgi(BodyLimit(_echo_app(seen), 10), [b"abc", b"defg"], declared=b"7")
    assert (status, body, seen) == (200, b"ok", [b"abcdefg"])


@pytest.mark.parametrize("declared", [None, b"12", b"abc"], ids=["chunked", "declared", "bogus"])
def test_bodies_over_the_limit_get_413_and_never_reach_the_app(declared):
    from territory.models.body_limit import BodyLimit

    seen: list = []
    chunks = [b"x"] if declared == b"abc" else [b"x" * 6, b"x" * 6]
    status, body, _ = _asgi(BodyLimit(_echo_app(seen), 10), chunks, declared=declared)
    assert status == 413 and not seen
    message = json.loads(body)["message"]
    assert "over the limit of 10 bytes" in message and len(message) < 120


def test_a_body_that_never_ends_is_cut_off():
    from territory.models.body_limit import DRAIN_FACTOR, BodyLimit

    seen: list = []
    chunks = [b"x" * 10] * (DRAIN_FACTOR + 50)
    status, _, unread = _asgi(BodyLimit(_echo_app(seen), 10), chunks)
    assert status == 413 and not seen and unread >= 49  # it stopped reading at 4x the limit
