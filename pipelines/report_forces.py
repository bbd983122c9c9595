"""The run report of a run with sales forces: a force selector and the overlay view.

``report.html`` at the top of the run folder shows one force at a time (a
selector switches between them): its headline measures, its territories
and a link to its full report in ``forces/<force>/report.html``. The
overlay section says, for each unit, which territory and rep of each force
cover it, and lists the shared customers (units where every force sold in
the last year) with how far apart the reps' homes are. Self-contained: no
network request (a Content-Security-Policy forbids any), every text escaped.
"""

from __future__ import annotations

import html

import pandas as pd

MAX_ROWS = 200  # rows of a table shown in the page; the CSV files hold them all

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }}
th {{ background: #f2f2f2; }} .force {{ display: none; }} .force.shown {{ display: block; }}
</style></head><body>
<h1>{title}</h1>
<p>{subtitle}</p>
<label for="force">Sales force: </label>
<select id="force" onchange="show(this.value)">{options}</select>
{sections}
<h2>Overlay: who covers each unit</h2>
<p>{overlay_text}</p>
{overlay_table}
<script>
function show(name) {{
  document.querySelectorAll('.force').forEach(function (s) {{
    s.classList.toggle('shown', s.dataset.force === name); }});
}}
show(document.getElementById('force').value);
</script>
</body></html>
"""


def _table(frame: pd.DataFrame) -> str:
    """``frame`` as an escaped HTML table, numbers rounded, at most :data:`MAX_ROWS` rows."""
    shown = frame.head(MAX_ROWS).round(3)
    return shown.to_html(index=False, escape=True, na_rep="", border=0)


def overlay_summary(overlay: pd.DataFrame) -> str:
    """One sentence: how many units are shared, and how far apart the reps' homes are."""
    shared = overlay["shared"]
    text = (f"{int(shared.sum()):,} of {len(overlay):,} units are shared customers (every "
            "force sold there in the last year).")
    forces = [c.removesuffix("_territory") for c in overlay.columns if c.endswith("_territory")]
    for i, a in enumerate(forces):
        for b in forces[i + 1:]:
            km = overlay.loc[shared, f"homes_km_{a}_{b}"].dropna() if (
                f"homes_km_{a}_{b}" in overlay) else pd.Series(dtype=float)
            if len(km):
                text += (f" The reps of {a} and {b} covering a shared unit live "
                         f"{km.median():,.0f} km apart at the median, {km.max():,.0f} km at "
                         "most.")
    return text


def forces_index_html(title: str, subtitle: str,
                      forces: dict[str, tuple[dict[str, object], pd.DataFrame]],
                      overlay: pd.DataFrame) -> str:
    """The run's ``report.html``: per force its headline and territories, and the overlay.

    ``forces`` maps a force to its headline measures and its territory summary.
    """
    options, sections = [], []
    for name, (headline, summary) in forces.items():
        label = html.escape(name)
        options.append(f'<option value="{label}">{label}</option>')
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in headline.items())
        sections.append(
            f'<section class="force" data-force="{label}"><h2>{label}</h2>'
            f"<table>{rows}</table>"
            f'<p><a href="forces/{label}/report.html">Full report of {label}</a> '
            f"(maps, balance, moves, recommendations)</p>"
            f"<h3>Territories</h3>{_table(summary)}</section>")
    shared = overlay[overlay["shared"]]
    sort = [c for c in shared.columns if c.startswith("homes_km_")]
    shared = shared.sort_values(sort[0], ascending=False) if sort else shared
    return PAGE.format(title=html.escape(title), subtitle=html.escape(subtitle),
                       options="".join(options), sections="".join(sections),
                       overlay_text=html.escape(overlay_summary(overlay)),
                       overlay_table=_table(shared.reset_index()))
