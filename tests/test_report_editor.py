"""The report's plan editor: the data it embeds, and (in Chromium) what it computes."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from territory.models.territories import evaluate_alignment
from territory.pipelines import report as rpt
from territory.pipelines.report_editor import editor_payload, payload_json
from territory.pipelines.report_map import interactive_map
from tests.lattice import lattice

EVIL = "<script>alert(1)</script>"
EVIL_IMG = '<img src=x onerror="alert(2)">'
TOLERANCES = {"potential": 0.05, "workload": 0.2}


def _grid(rows: int = 6, cols: int = 6, seed: int = 3):
    """A rows x cols grid of 1 km squares in four quadrant territories, two of them with
    hostile names, and random potential and workload."""
    xy, adjacency = lattice(rows, cols)
    rng = np.random.default_rng(seed)
    ids = [f"u{i:02d}" for i in range(rows * cols)]
    r, c = np.divmod(np.arange(rows * cols), cols)
    names = np.array(["T1", EVIL, EVIL_IMG, "T4"], dtype=object)
    quadrant = (r >= rows // 2) * 2 + (c >= cols // 2)
    plan = pd.Series(names[quadrant], index=ids)
    measures = {"potential": rng.gamma(2.0, 50.0, rows * cols),
                "workload": rng.integers(1, 30, rows * cols).astype(float)}
    units = gpd.GeoDataFrame({"unit_id": ids}, crs="EPSG:5070", geometry=[
        box(cc * 1000, rr * 1000, (cc + 1) * 1000, (rr + 1) * 1000)
        for rr, cc in zip(r, c, strict=True)])
    return units, adjacency, xy, plan, measures


def _summary(plan: pd.Series, measures, xy, adjacency, territories: list[str]):
    labels = plan.map({t: i for i, t in enumerate(territories)}).to_numpy()
    report = evaluate_alignment(labels, xy, adjacency, pd.DataFrame(measures),
                                tolerances=TOLERANCES, territory_names=territories)
    return report.territories.assign(territory=report.territories["name"])


def _payload(units, adjacency, xy, plan, measures, locked=None):
    territories = sorted(plan.unique())
    summary = _summary(plan, measures, xy, adjacency, territories)
    unit_names = pd.Series([EVIL if i == 0 else f"Unit {i}" for i in range(len(units))],
                           index=units["unit_id"])
    return editor_payload(units["unit_id"].to_numpy(), plan, summary, measures, TOLERANCES,
                          adjacency, soft=["workload"], unit_names=unit_names, locked=locked,
                          map_figure="figure-1"), summary


def test_payload_targets_follow_the_summary_and_json_cannot_close_the_script():
    units, adjacency, xy, plan, measures = _grid()
    payload, summary = _payload(units, adjacency, xy, plan, measures,
                                locked=pd.Series({"u05": "T4"}))
    assert payload["territories"] == sorted(plan.unique())
    by_name = summary.set_index("territory")
    assert payload["targets"] == [[by_name.loc[t, "potential_target"],
                                   by_name.loc[t, "workload_target"]]
                                  for t in payload["territories"]]
    assert [payload["territories"][t] for t in payload["plan"]] == plan.tolist()
    assert payload["locked"] == [[5, payload["territories"].index("T4")]]
    text = payload_json(payload)
    assert "<" not in text and ">" not in text and json.loads(text) == payload
    with pytest.raises(ValueError, match="summary lacks"):
        editor_payload(units["unit_id"].to_numpy(), plan.replace("T1", "T9"), summary,
                       measures, TOLERANCES, adjacency)


def _page(tmp_path, payload, units, plan):
    fig = interactive_map(units, {"Proposed territories": plan.reset_index(drop=True)},
                          {"Potential": pd.Series(payload["values"][0])},
                          pd.Series(payload["units"]), tolerance_m=0)
    content = rpt.ReportContent(title="Plan", subtitle="s", headline=[], quality_sentences=[],
                                figures={"Map": fig}, editor=payload)
    path = tmp_path / "report.html"
    path.write_text(rpt.render_html(content), encoding="utf-8")
    return path


def _python_state(labels: np.ndarray, payload, xy, adjacency):
    """What evaluate_alignment says of ``labels``, with the editor's targets and tolerances."""
    attributes = payload["attributes"]
    report = evaluate_alignment(
        labels, xy, adjacency, pd.DataFrame(dict(zip(attributes, payload["values"],
                                                     strict=True))),
        tolerances=dict(zip(attributes, payload["tolerances"], strict=True)),
        targets=np.array(payload["targets"]), territory_names=payload["territories"],
        n_territories=len(payload["territories"]))
    soft = [f": {a} " for a in payload["soft"]]
    missed = [v for v in report.violations if "target (" in v and any(s in v for s in soft)]
    return report, [v for v in report.violations if v not in missed], missed


@pytest.mark.slow
def test_editor_in_chromium_matches_python_exports_and_stays_offline(tmp_path):
    from tests.browser import Page

    units, adjacency, xy, plan, measures = _grid()
    payload, _ = _payload(units, adjacency, xy, plan, measures,
                          locked=pd.Series({"u35": "T4"}))
    path = _page(tmp_path, payload, units, plan)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    t_evil = payload["territories"].index(EVIL)
    # three edits, one through the controls: u00 and u06 land apart from T4 and the
    # hostile-named territory (two pieces each); u03 stays where it is (a lock)
    edits = {"u00": "T4", "u06": EVIL_IMG, "u03": EVIL}
    with Page() as page:
        page.open(path, settle_s=1.0)
        page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        initial = page.evaluate("territoryEditor.state()")
        page.evaluate("""(() => {
            document.getElementById('editor-unit').value = 'u00';
            document.getElementById('editor-territory').value = 'T4';
            document.getElementById('editor-assign').click(); })()""")
        for unit, territory in list(edits.items())[1:]:
            page.evaluate(f"territoryEditor.assign({json.dumps(unit)}, {json.dumps(territory)})"
                          " && 0")
        state = page.evaluate("territoryEditor.state()")
        shown = page.evaluate("""Array.from(document.querySelectorAll('#editor-balance tr'))
            .map(r => Array.from(r.cells).map(c => c.textContent))""")
        listed = page.evaluate("""Array.from(document.querySelectorAll('#editor-violations li'))
            .map(li => li.textContent)""")
        marked = page.evaluate("""(() => {
            const svg = document.querySelector('#figure-1 svg.editor-marks');
            const one = (sel) => Array.from(svg.querySelectorAll(sel))
                .map(e => [e.getAttribute('data-unit'), e.getAttribute('fill')]);
            return [one('circle.edited'), one('rect.locked')]; })()""")
        fills = page.evaluate("""document.querySelector('#figure-1 .js-plotly-plot').data
            .filter(d => d.fill === 'toself' && d.legendgroup === 'Proposed territories')
            .map(d => d.fillcolor)""")
        colour_t4 = page.evaluate("""document.querySelector('#figure-1 .js-plotly-plot').data
            .find(d => d.fill === 'toself' && d.name === 'T4').fillcolor""")
        page.evaluate("document.getElementById('editor-export').click()")
        page.open(path, settle_s=0.5)  # let the download land
        text = page.evaluate("document.body.innerText")
        n_imgs = page.evaluate("document.querySelectorAll('img').length")
    assert page.console_errors == [] and page.dialogs == []
    assert [u for u in page.requests if not u.startswith(("file:", "data:", "about:"))] == []
    assert EVIL in text and EVIL_IMG in text and n_imgs == 0  # hostile names stay text

    before, before_hard, before_soft = _python_state(np.array(payload["plan"]), payload, xy,
                                                     adjacency)
    assert initial["violations"] == before_hard and initial["soft_missed"] == before_soft
    labels = np.array(payload["plan"])
    for unit, territory in edits.items():
        labels[payload["units"].index(unit)] = payload["territories"].index(territory)
    report, hard, soft = _python_state(labels, payload, xy, adjacency)
    table = report.territories
    np.testing.assert_allclose(state["totals"], table[["potential_total", "workload_total"]],
                               rtol=1e-12)
    np.testing.assert_allclose(state["deviations"],
                               table[["potential_deviation", "workload_deviation"]], rtol=1e-9)
    assert state["units"] == table["n_units"].tolist()
    assert state["pieces"] == table["n_components"].tolist()
    assert state["violations"] == hard and listed == hard and state["soft_missed"] == soft
    assert "T4: not contiguous (2 separate pieces)" in hard
    assert state["edits"] == 3
    rows = {r[0]: r for r in shown[1:]}
    for t, row in table.iterrows():
        name = payload["territories"][t]
        assert rows[name][3] == f"{row['potential_total']:,.0f}"
        assert rows[name][4] == f"{100 * row['potential_deviation']:+.1f}%"
        assert rows[name][6] == f"{100 * row['workload_deviation']:+.1f}%"
    edited, locked = dict(marked[0]), dict(marked[1])
    assert sorted(edited) == sorted(edits) and edited["u00"] == colour_t4
    assert sorted(locked) == ["u35"]
    assert len(fills) == 4 and len(set(fills)) == 4  # the quadrants all touch at the centre
    assert t_evil >= 0

    exported = pd.read_csv(downloads / "edits.csv", dtype=str)
    assert list(exported.columns) == ["unit_id", "territory_id"]
    expected = {**edits, "u35": "T4"}  # the earlier lock is kept
    assert dict(zip(exported["unit_id"], exported["territory_id"], strict=True)) == expected
