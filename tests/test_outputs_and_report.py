import geopandas as gpd
import pandas as pd
import pytest
from openpyxl import load_workbook
from shapely.geometry import box

from territory.pipelines import report as rpt
from territory.pipelines.outputs import atomic_directory, file_sha256


def test_atomic_directory_replaces_on_success(tmp_path):
    final = tmp_path / "runs" / "r1"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("first")
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("second")
    assert (final / "a.txt").read_text() == "second"
    assert sorted(p.name for p in final.parent.iterdir()) == ["r1"]


def test_failed_run_keeps_last_good_outputs(tmp_path):
    final = tmp_path / "r1"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["r1"]


def test_file_sha256(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert file_sha256(path).startswith("ba7816bf")


def _content(name: str) -> rpt.ReportContent:
    from territory.pipelines.report_map import interactive_map

    units = gpd.GeoDataFrame({"unit_id": ["a", "b", "c", "d"]},
                             geometry=[box(i * 1e3, 0, (i + 1) * 1e3, 1e3) for i in range(4)],
                             crs="EPSG:3857")
    labels = pd.Series([name, name, "T2", "T2"])
    fig = interactive_map(units, {"Proposed territories": labels},
                          {"Potential": pd.Series([1.0, 2.0, 3.0, 4.0])}, labels, tolerance_m=0)
    table = pd.DataFrame({"territory": [name, "T2"], "potential_deviation": [0.1, -0.1]})
    return rpt.ReportContent(
        title=f"Plan {name}", subtitle="s", headline=[("Rep", name)],
        quality_sentences=[f"about {name}"], figures={"Map": fig},
        tables={"Territory summary": table},
    )


def test_user_names_are_escaped():
    evil = "<script>alert(1)</script>"
    html = rpt.render_html(_content(evil))
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Only the report's own scripts (plotly.js, the figure, sorting): none from the name.
    assert "<script>alert" not in html
    assert "default-src 'none'" in html  # the page may load nothing from the network


def test_report_has_map_and_sortable_table():
    html = rpt.render_html(_content("T1"))
    assert "Plotly.newPlot" in html and "Proposed territories" in html
    assert 'class="dataframe sortable"' in html


def test_excel_has_one_sheet_per_table_with_formats(tmp_path):
    path = tmp_path / "r.xlsx"
    tables = {"Territory summary": pd.DataFrame({
        "territory": ["T1"], "potential_deviation": [0.1], "potential_total": [10_028_417.07],
        "diameter_km": [312.46], "disruption_units_pct": [12.5], "n_components": [1]})}
    rpt.write_excel(tables, path)
    ws = load_workbook(path)["Territory summary"]
    assert ws["A1"].font.bold and ws.freeze_panes == "B2"  # header row and first column
    assert [c.value for c in ws[1]] == ["Territory", "Potential vs target", "Potential",
                                        "Span (km)", "Disruption units (%)", "Pieces"]
    assert ws["B2"].value == 0.1 and ws["C2"].value == 10_028_417.07  # numbers stay numbers
    assert ws["B2"].number_format == "+0.0%;-0.0%;0.0%" and ws["C2"].number_format == "#,##0"
    assert ws["D2"].number_format == "#,##0.0#" and ws["E2"].number_format == '0.0"%"'
    assert ws["F2"].number_format == "#,##0"


def test_report_tables_read_in_words_with_units_and_rounded_numbers():
    table = pd.DataFrame({"territory": ["T1", "T2"], "potential_deviation": [0.0312, -0.05],
                          "potential": [10_028_417.07, 9_000_000.0], "penetration": [0.5, 0.25],
                          "diameter_km": [312.46, 8.123], "units_gained": [3, 0],
                          "reason": ["x" * 80, "short"]})
    html = rpt._table_html(table)
    for text in ('<th class="text">Territory</th>', "<th>Potential vs target</th>",
                 "<th>Span (km)</th>", "<th>Units gained</th>", "+3.1%", "-5.0%", "10,028,417",
                 "50.0%", "312.5", "8.12", '<td class="text wrap">' + "x" * 80,
                 '<th class="text">Reason'):
        assert text in html, text
    assert "10,028,417.07" not in html and "0.0312" not in html
    assert "potential_deviation" not in html


def test_hostile_names_render_as_text_in_chromium(tmp_path):
    from territory.pipelines.report_map import interactive_map
    from tests.browser import Page

    evil = "<script>alert(1)</script>"
    evil_img = '<img src=x onerror="alert(2)">'
    units = gpd.GeoDataFrame({"unit_id": ["a", "b", "c", "d"]},
                             geometry=[box(i * 1000, 0, (i + 1) * 1000, 1000) for i in range(4)],
                             crs="EPSG:5070")
    labels = pd.Series([evil, evil, evil_img, evil_img])
    fig = interactive_map(units, {"Proposed territories": labels},
                          {"Potential": pd.Series([1.0, 2.0, 3.0, 4.0])},
                          pd.Series([evil, evil_img, "c", "d"]), tolerance_m=0)
    content = _content(evil)
    content.figures = {"Map": fig}
    content.tables["Territory summary"].loc[1, "territory"] = evil_img
    path = tmp_path / "report.html"
    path.write_text(rpt.render_html(content), encoding="utf-8")
    with Page() as page:
        page.open(path, settle_s=1.0)
        text = page.evaluate("document.body.innerText")
        n_imgs = page.evaluate("document.querySelectorAll('img').length")
    assert page.dialogs == [] and page.console_errors == []
    assert evil in text and evil_img in text
    assert n_imgs == 0
