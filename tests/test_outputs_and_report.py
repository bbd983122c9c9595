import geopandas as gpd
import pandas as pd
import pytest
from openpyxl import load_workbook
from shapely.geometry import box

from pipelines import report as rpt
from pipelines.outputs import atomic_directory, file_sha256


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
    units = gpd.GeoDataFrame({"unit_id": ["a", "b", "c", "d"]},
                             geometry=[box(i, 0, i + 1, 1) for i in range(4)], crs="EPSG:3857")
    labels = pd.Series([name, name, "T2", "T2"])
    fig = rpt.territory_map(units, labels, "Proposed")
    table = pd.DataFrame({"territory": [name, "T2"], "potential_deviation": [0.1, -0.1]})
    return rpt.ReportContent(
        title=f"Plan {name}", subtitle="s", headline=[("Rep", name)],
        quality_sentences=[f"about {name}"], figures={"map:Proposed": rpt.figure_to_data_uri(fig)},
        tables={"Territory summary": table},
    )


def test_user_names_are_escaped():
    evil = "<script>alert(1)</script>"
    html = rpt.render_html(_content(evil))
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the report's own sorting/tabs script
    assert "http://" not in html and "https://" not in html  # opens offline


def test_report_has_map_and_sortable_table():
    html = rpt.render_html(_content("T1"))
    assert 'class="map"' in html and "data:image/png;base64," in html
    assert 'class="dataframe sortable"' in html


def test_excel_has_one_sheet_per_table_with_formats(tmp_path):
    path = tmp_path / "r.xlsx"
    tables = {"Territory summary": pd.DataFrame({"territory": ["T1"], "potential_deviation": [0.1],
                                                 "potential_total": [1234.5]})}
    rpt.write_excel(tables, path)
    ws = load_workbook(path)["Territory summary"]
    assert ws["A1"].font.bold and ws.freeze_panes == "A2"
    assert ws["B2"].number_format == "0.0%" and ws["C2"].number_format == "#,##0.00"
