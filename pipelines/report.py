"""Manager report: one self-contained HTML file and an Excel workbook.

Maps and charts are drawn with matplotlib and embedded as base64 PNG, so the
page opens offline and makes no network request. Every user-supplied text
(territory, rep and unit names) goes through Jinja's autoescaping.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from matplotlib.figure import Figure

PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
]


@dataclass
class ReportContent:
    """Everything the report shows; built by the flow, rendered here."""

    title: str
    subtitle: str
    headline: list[tuple[str, str]]
    quality_sentences: list[str]
    figures: dict[str, str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def territory_colours(labels: pd.Series, units: gpd.GeoDataFrame) -> pd.Series:
    """A palette colour per unit such that touching territories differ (greedy)."""
    dissolved = units.assign(_t=labels.to_numpy()).dissolve("_t").rename_axis(None)
    touching = gpd.sjoin(dissolved, dissolved, predicate="touches")
    neighbours = touching.groupby(level=0)["index_right"].apply(set).to_dict()
    colour: dict = {}
    for terr in dissolved.index:
        used = {colour.get(n) for n in neighbours.get(terr, set())}
        colour[terr] = next((c for c in PALETTE if c not in used), PALETTE[len(colour) % 10])
    return labels.map(colour)


def figure_to_data_uri(fig: Figure, dpi: int = 110) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def territory_map(units: gpd.GeoDataFrame, labels: pd.Series, title: str) -> Figure:
    """Units coloured by territory, territory borders drawn on top."""
    fig = Figure(figsize=(10, 6.2))
    ax = fig.subplots()
    colours = territory_colours(labels, units)
    units.plot(ax=ax, color=colours.to_numpy(), linewidth=0)
    units.assign(_t=labels.to_numpy()).dissolve("_t").boundary.plot(
        ax=ax, color="#222", linewidth=0.6
    )
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def value_map(units: gpd.GeoDataFrame, values: pd.Series, title: str, cmap: str) -> Figure:
    """Choropleth of a unit value on quantile classes."""
    fig = Figure(figsize=(10, 6.2))
    ax = fig.subplots()
    ranks = values.rank(pct=True).to_numpy()
    units.assign(_v=ranks).plot(column="_v", ax=ax, cmap=cmap, linewidth=0, legend=True,
                                legend_kwds={"label": "percentile", "shrink": 0.6})
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def balance_chart(before: pd.Series, after: pd.Series, tolerance: float, what: str) -> Figure:
    """Deviation from the mean per territory, current versus proposed."""
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, series, name in ((axes[0], before, "current"), (axes[1], after, "proposed")):
        ordered = series.sort_values()
        ax.bar(range(len(ordered)), ordered.to_numpy() * 100,
               color=np.where(ordered.abs() > tolerance, "#e15759", "#59a14f"))
        ax.axhspan(-tolerance * 100, tolerance * 100, color="#59a14f", alpha=0.12)
        ax.set_title(f"{name}: max |deviation| {series.abs().max():.0%}")
        ax.set_xlabel("territories, sorted")
    axes[0].set_ylabel(f"{what} vs mean (%)")
    return fig


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{ c.title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px}
.kpis{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.kpi{background:#f4f6f8;border-radius:8px;padding:10px 14px;min-width:150px}
.kpi b{display:block;font-size:1.3em}
img{max-width:100%} table{border-collapse:collapse;font-size:.85em;margin:8px 0 24px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f4f6f8;cursor:pointer;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
.tabs button{margin-right:6px;padding:6px 10px;border:1px solid #ccc;background:#fff;border-radius:6px;cursor:pointer}
.tabs button.on{background:#4e79a7;color:#fff}
.scroll{max-height:420px;overflow:auto}
</style></head><body>
<h1>{{ c.title }}</h1><p class="sub">{{ c.subtitle }}</p>
<div class="kpis">{% for k, v in c.headline %}<div class="kpi">{{ k }}<b>{{ v }}</b></div>{% endfor %}</div>
<h2>Model quality</h2><ul>{% for s in c.quality_sentences %}<li>{{ s }}</li>{% endfor %}</ul>
<h2>Map</h2>
<div class="tabs" id="maptabs">{% for name in c.figures if name.startswith('map:') %}<button data-map="{{ loop.index0 }}" class="{{ 'on' if loop.first else '' }}">{{ name[4:] }}</button>{% endfor %}</div>
<div id="maps">{% for name, uri in c.figures.items() if name.startswith('map:') %}<img class="map" alt="{{ name[4:] }}" src="{{ uri }}" style="{{ '' if loop.first else 'display:none' }}">{% endfor %}</div>
{% for name, uri in c.figures.items() if not name.startswith('map:') %}<h2>{{ name }}</h2><img alt="{{ name }}" src="{{ uri }}">{% endfor %}
{% for name, table in c.tables.items() %}<h2>{{ name }}</h2><div class="scroll">{{ tables_html[name] }}</div>{% endfor %}
<script>
document.querySelectorAll('#maptabs button').forEach(function(b){b.addEventListener('click',function(){
 var i=+b.dataset.map; document.querySelectorAll('img.map').forEach(function(m,j){m.style.display=j===i?'':'none'});
 document.querySelectorAll('#maptabs button').forEach(function(x){x.classList.toggle('on',x===b)});});});
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
    return frame.to_html(
        index=False, escape=True, classes="sortable", border=0, float_format=lambda v: f"{v:,.2f}"
    )


def render_html(content: ReportContent) -> str:
    """The report as one HTML string; all text is escaped."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(TEMPLATE)
    tables_html = {k: Markup(_table_html(v)) for k, v in content.tables.items()}
    return template.render(c=content, tables_html=tables_html)


def write_excel(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """One sheet per table, bold frozen header, sensible number formats and widths."""
    from openpyxl.styles import Font, PatternFill

    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in tables.items():
            sheet = name[:31]
            frame.to_excel(writer, sheet_name=sheet, index=False)
            ws = writer.sheets[sheet]
            ws.freeze_panes = "A2"
            for cell in ws[1]:
                cell.font = Font(bold=True)
                cell.fill = PatternFill("solid", fgColor="DDE4EE")
            for j, column in enumerate(frame.columns, start=1):
                letter = ws.cell(row=1, column=j).column_letter
                width = max(len(str(column)), *(len(str(v)) for v in frame[column].head(200)), 8)
                ws.column_dimensions[letter].width = min(width + 2, 60)
                if pd.api.types.is_float_dtype(frame[column]):
                    fmt = "0.0%" if any(k in column for k in ("deviation", "penetration", "share")) \
                        else "#,##0.00"
                    for row in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                        row[0].number_format = fmt
