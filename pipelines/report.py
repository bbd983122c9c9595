"""Manager report: one self-contained HTML file and an Excel workbook.

Maps and charts are plotly figures with plotly.js inlined once, so the page
opens offline and makes no network request (a Content-Security-Policy
forbids any). Every user-supplied text (territory, rep and unit names) goes
through Jinja's autoescaping or ``html.escape``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from plotly.subplots import make_subplots

from territory.features.spreadsheet_safe import inert_frame
from territory.pipelines.report_editor import editor_html
from territory.pipelines.report_format import EXCEL_FORMATS, as_text, present

# The page is opened offline: no logo link to plotly.com and no "Share to Plotly Cloud"
# button (plotly.js 3 shows it by default); zoom, pan and PNG download work offline and stay.
PLOTLY_CONFIG = {"displaylogo": False, "showSendToCloud": False,
                 "modeBarButtonsToRemove": ["sendChartToCloud"], "responsive": True}


@dataclass
class ReportContent:
    """Everything the report shows; built by the flow, rendered here."""

    title: str
    subtitle: str
    headline: list[tuple[str, str]]
    quality_sentences: list[str]
    figures: dict[str, go.Figure]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    editor: dict | None = None  # the plan editor's data (:mod:`territory.pipelines.report_editor`)
    # titled lists of sentences after "Model quality" (the nightly run's monitoring)
    sections: dict[str, list[str]] = field(default_factory=dict)


def balance_chart(deviations: dict[str, tuple[pd.Series, pd.Series]], tolerance: float) -> go.Figure:
    """Deviation from the mean per territory, current versus proposed, one row per attribute.

    ``deviations`` maps an attribute to ``(current, proposed)`` signed
    deviations indexed by territory name.
    """
    fig = make_subplots(rows=len(deviations), cols=2, shared_yaxes=True,
                        subplot_titles=[f"{a}: {side}" for a in deviations
                                        for side in ("current", "proposed")])
    for row, (attr, pair) in enumerate(deviations.items(), start=1):
        for col, series in enumerate(pair, start=1):
            ordered = series.sort_values()
            colours = ["#e15759" if abs(v) > tolerance else "#59a14f" for v in ordered]
            fig.add_trace(go.Bar(x=list(range(len(ordered))), y=ordered.to_numpy() * 100,
                                 marker_color=colours,
                                 hovertext=[html.escape(str(t)) for t in ordered.index],
                                 hovertemplate="%{hovertext}: %{y:.1f}%<extra></extra>",
                                 showlegend=False), row=row, col=col)
            fig.add_hrect(y0=-tolerance * 100, y1=tolerance * 100, fillcolor="#59a14f",
                          opacity=0.12, line_width=0, row=row, col=col)
        fig.update_yaxes(title_text=f"{attr} vs mean (%)", row=row, col=1)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=300 * len(deviations), margin={"t": 40, "b": 10, "l": 60, "r": 10},
                      plot_bgcolor="white")
    return fig


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline' 'unsafe-eval'; font-src data:">
<title>{{ c.title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px}
.kpis{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.kpi{background:#f4f6f8;border-radius:8px;padding:10px 14px;min-width:150px}
.kpi b{display:block;font-size:1.3em}
table{border-collapse:separate;border-spacing:0;font-size:.85em;margin:8px 0 24px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
.text{text-align:left} td.wrap{white-space:normal;min-width:24em}
th{background:#f4f6f8;cursor:pointer;position:sticky;top:0;z-index:1} th:hover{background:#e3e8ee}
td:first-child,th:first-child{text-align:left;position:sticky;left:0;background:#fff;z-index:2}
th:first-child{background:#f4f6f8;z-index:3}
.scroll{max-height:420px;overflow:auto;max-width:100%}
.editor-bar{display:flex;gap:12px;flex-wrap:wrap;align-items:center;background:#f4f6f8;padding:8px;border-radius:8px}
.editor-status{font-weight:600} td.off{color:#b3262a;font-weight:600}
.figure,.editor{contain:layout paint}
</style></head><body>
<h1>{{ c.title }}</h1><p class="sub">{{ c.subtitle }}</p>
<div class="kpis">{% for k, v in c.headline %}<div class="kpi">{{ k }}<b>{{ v }}</b></div>{% endfor %}</div>
<h2>Model quality</h2><ul>{% for s in c.quality_sentences %}<li>{{ s }}</li>{% endfor %}</ul>
{% for name, sentences in c.sections.items() %}<h2>{{ name }}</h2><ul>{% for s in sentences %}<li>{{ s }}</li>{% endfor %}</ul>{% endfor %}
{% for name in c.figures %}<h2>{{ name }}</h2><div class="figure" id="figure-{{ loop.index }}">{{ figures_html[name] }}</div>{% endfor %}
{% if editor_html %}{{ editor_html }}{% endif %}
{% for name in c.tables %}<h2>{{ name }}</h2><p class="sub">Click a column header to sort.</p><div class="scroll">{{ tables_html[name] }}</div>{% endfor %}
<script>
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
 var table=th.closest('table'),body=table.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
 var asc=th.dataset.asc!=='1'; th.dataset.asc=asc?'1':'0';
 var rows=Array.prototype.slice.call(body.rows);
 rows.sort(function(a,b){var x=a.cells[i].textContent.replace(/[,%]/g,''),y=b.cells[i].textContent.replace(/[,%]/g,'');
  var nx=parseFloat(x),ny=parseFloat(y); var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y); return asc?r:-r;});
 rows.forEach(function(r){body.appendChild(r)});});});
</script>
</body></html>
"""


def _table_html(frame: pd.DataFrame) -> str:
    """Headers in words, numbers formatted by kind (:mod:`territory.pipelines.report_format`);
    numbers and short text stay on one line (the table scrolls), long text wraps."""
    presented = present(frame)
    shown = as_text(presented)
    text = [presented.kinds[c] == "text" for c in shown.columns]
    wrap = [t and shown[c].astype(str).str.len().max() > 60 for t, c in zip(text, shown.columns,
                                                                           strict=True)]
    head = "".join(('<th class="text">' if t else "<th>") + f"{html.escape(str(c))}</th>"
                   for c, t in zip(shown.columns, text, strict=True))
    opening = ['<td class="text wrap">' if w else '<td class="text">' if t else "<td>"
               for t, w in zip(text, wrap, strict=True)]
    body = []
    for row in shown.itertuples(index=False):
        cells = "".join(f"{tag}{'' if _blank(v) else html.escape(str(v))}</td>"
                        for v, tag in zip(row, opening, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="dataframe sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _blank(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def render_html(content: ReportContent) -> str:
    """The report as one HTML string; plotly.js is inlined once, all text is escaped."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(TEMPLATE)
    figures_html = {}
    for i, (name, fig) in enumerate(content.figures.items()):
        figures_html[name] = Markup(fig.to_html(
            full_html=False, include_plotlyjs=(i == 0), include_mathjax=False,
            config=PLOTLY_CONFIG,
        ))
    tables_html = {k: Markup(_table_html(v)) for k, v in content.tables.items()}
    editor = Markup(editor_html(content.editor)) if content.editor is not None else None
    return template.render(c=content, tables_html=tables_html, figures_html=figures_html,
                           editor_html=editor)


def write_excel(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """One sheet per table, bold frozen header and first column, widths, and the
    report's headers in words; numbers stay numbers, with an Excel format per kind
    (:mod:`territory.pipelines.report_format`: 3.2% deviations, whole-number amounts).

    Text that a spreadsheet would run as a formula is written as inert text
    (:func:`territory.features.spreadsheet_safe.inert_frame`).
    """
    from openpyxl.styles import Font, PatternFill

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in tables.items():
            sheet = re.sub(r"[\[\]:*?/\\]", "-", name)[:31]
            presented = present(frame)
            frame = inert_frame(presented.frame)
            shown = as_text(presented)  # as the report shows it, to size the columns
            frame.to_excel(writer, sheet_name=sheet, index=False)
            ws = writer.sheets[sheet]
            ws.freeze_panes = "B2"
            for cell in ws[1]:
                cell.font = Font(bold=True)
                cell.fill = PatternFill("solid", fgColor="DDE4EE")
            for j, column in enumerate(presented.frame.columns, start=1):  # names before inert
                letter = ws.cell(row=1, column=j).column_letter
                width = max([len(str(column)), *(len(str(v)) for v in shown[column].head(200)),
                             8])
                ws.column_dimensions[letter].width = min(width + 2, 60)
                fmt = EXCEL_FORMATS.get(presented.kinds[column])
                if fmt is not None:
                    for row in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                        row[0].number_format = fmt
