"""The report's plan editor: move units between territories in the browser, offline.

The page embeds what the balance needs (:func:`editor_payload`: each unit's
balance attributes, the territories' targets and tolerances, the adjacency
graph) as JSON, and ``report_editor.js`` recomputes the balance table, the
deviation chart and the violations on every edit, with the arithmetic of
:func:`territory.models.territories.evaluate_alignment` (same targets, same
tolerances, same messages for balance, contiguity and empty territories;
shape and distance limits are checked when the plan is designed again).
Edits are exported as a CSV of ``unit_col, territory_col`` that
``territory run --edits`` reads back as locks.

Every name reaches the page through ``textContent`` or the escaped JSON
(``<``, ``>`` and ``&`` as ``\\u`` escapes), never as markup.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

EDITOR_JS = Path(__file__).with_name("report_editor.js")


def editor_payload(
    unit_ids: np.ndarray,
    plan: pd.Series,
    summary: pd.DataFrame,
    measures: dict[str, np.ndarray],
    tolerances: dict[str, float],
    adjacency,
    *,
    soft: list[str] | tuple[str, ...] = (),
    unit_names: pd.Series | None = None,
    locked: pd.Series | None = None,
    map_figure: str | None = None,
    unit_col: str = "unit_id",
    territory_col: str = "territory_id",
) -> dict:
    """What the editor needs, as plain JSON-able data.

    Parameters
    ----------
    unit_ids
        Unit ids in the order of ``measures`` and ``adjacency`` (and of the map's
        ``units`` trace).
    plan
        Territory name per unit id: the plan the editor starts from.
    summary
        One row per territory: ``territory`` and ``<attribute>_target`` for each
        balanced attribute (the design's summary, so giant-unit targets carry over).
    measures
        Attribute name to one value per unit, in ``unit_ids`` order; the order of
        the keys is the order of the balance attributes.
    tolerances
        Tolerance per attribute (the published plan's, soft ones included).
    adjacency
        (n, n) contiguity matrix in ``unit_ids`` order.
    soft
        Soft attributes: their misses are goals, listed apart from the violations.
    unit_names, locked
        Unit name by unit id; territory a manager locked, by unit id (NaN: free).
    map_figure
        ``id`` of the element holding the map figure (the clicks select units).
    """
    ids = [str(u) for u in unit_ids]
    attributes = list(measures)
    table = summary.assign(territory=summary["territory"].astype(str)).sort_values("territory")
    territories = table["territory"].tolist()
    position = {t: i for i, t in enumerate(territories)}
    names_of_plan = plan.reindex(unit_ids).astype(str)
    unknown = sorted(set(names_of_plan) - set(position))
    if unknown:
        raise ValueError(f"plan names territories the summary lacks: {unknown[:5]}")
    graph = sp.csr_matrix(adjacency)
    graph.sort_indices()
    names = ([""] * len(ids) if unit_names is None
             else unit_names.reindex(unit_ids).fillna("").astype(str).tolist())
    lock = [] if locked is None else [
        [i, position[str(t)]] for i, t in enumerate(locked.reindex(unit_ids))
        if isinstance(t, str) and str(t) in position]
    return {
        "unit_col": unit_col, "territory_col": territory_col,
        "units": ids, "names": names, "territories": territories,
        "plan": [position[t] for t in names_of_plan],
        "attributes": attributes,
        "values": [_finite(measures[a]) for a in attributes],
        "targets": table[[f"{a}_target" for a in attributes]].to_numpy(dtype=float).tolist(),
        "tolerances": [float(tolerances[a]) for a in attributes],
        "soft": [a for a in attributes if a in set(soft)],
        "indptr": graph.indptr.tolist(), "indices": graph.indices.tolist(),
        "locked": lock, "map": map_figure,
    }


def _finite(values) -> list[float]:
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, 0.0).tolist()


def payload_json(payload: dict) -> str:
    """The payload as JSON that cannot end its ``<script>`` element or open a tag."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


EDITOR_SECTION = """<h2>Edit the plan</h2>
<p class="sub">Click a unit on the map (or type its id), pick a territory and press Assign: the
balance, the chart and the violations below follow at once, in this page. Export the edits and
run <code>territory run --edits edits.csv</code> to keep them and redesign the rest. The editor
checks balance, contiguity and empty territories; shape and distance limits are checked when
the plan is designed again.</p>
<div id="editor" class="editor">
<div class="editor-bar"><label>Unit <input id="editor-unit" list="editor-units" size="14"></label>
<datalist id="editor-units"></datalist><span id="editor-unit-info" class="sub"></span>
<label>Territory <select id="editor-territory"></select></label>
<button id="editor-assign" type="button">Assign</button>
<button id="editor-export" type="button">Export edits (CSV)</button>
<button id="editor-reset" type="button">Undo all edits</button></div>
<p id="editor-status" class="editor-status"></p>
<div id="editor-chart" class="figure"></div>
<h3>Violations</h3><ul id="editor-violations"></ul>
<h3>Soft goals missed</h3><ul id="editor-soft"></ul>
<h3>Balance</h3><div class="scroll"><table id="editor-balance" class="dataframe">
<thead></thead><tbody></tbody></table></div>
<h3>Edits</h3><div class="scroll"><table id="editor-edits" class="dataframe"><thead><tr>
<th class="text">Unit</th><th class="text">Name</th><th class="text">Plan</th>
<th class="text">Edited to</th></tr></thead><tbody></tbody></table></div>
</div>
"""


def editor_html(payload: dict) -> str:
    """The editor's section: controls, the embedded data and its script."""
    return (EDITOR_SECTION
            + f'<script type="application/json" id="editor-data">{payload_json(payload)}</script>'
            + f"<script>{EDITOR_JS.read_text(encoding='utf-8')}</script>")
