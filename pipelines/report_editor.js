/* The report's plan editor (see territory/pipelines/report_editor.py). Offline: it reads
   the JSON in #editor-data and recomputes the balance the way evaluate_alignment does. */
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('editor-data').textContent);
  var n = D.units.length, K = D.territories.length, m = D.attributes.length;
  var plan = D.plan.slice(), edits = {}, lockedAt = {}, byId = {}, byName = {};
  D.units.forEach(function (u, i) { byId[u] = i; });
  D.territories.forEach(function (t, i) { byName[t] = i; });
  D.locked.forEach(function (p) { lockedAt[p[0]] = p[1]; });
  var soft = D.attributes.map(function (a) { return D.soft.indexOf(a) >= 0; });
  var $ = function (id) { return document.getElementById(id); };
  var SVG = 'http://www.w3.org/2000/svg';

  // Python's f"{x:.{d}f}": toFixed agrees except on exact ties at 0 decimals (half-even).
  function fixed(x, d) {
    if (d === 0 && Math.abs(x % 1) === 0.5) { var f = Math.floor(x); x = f % 2 === 0 ? f : f + 1; }
    return x.toFixed(d);
  }
  function pctText(x) { return (100 * x).toFixed(1).concat('%').replace('.0%', '%'); }
  function beyondText(x, tau) {  // territories._beyond_text
    for (var d = 1; d <= 4; d++) {
      var text = (100 * x).toFixed(d) + '%';
      if (text !== (100 * tau).toFixed(d) + '%') return d === 1 ? text.replace('.0%', '%') : text;
    }
    return (100 * x).toFixed(6) + '%';
  }
  function amount(x) { return fixed(x, 0).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function signedPct(x) { var s = (100 * x).toFixed(1); return (s[0] === '-' ? '' : '+') + s + '%'; }
  function pyEscape(s) {  // html.escape: how report_map names the map's traces
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#x27;');
  }

  var upperMax = D.attributes.map(function (a, j) {
    var top = 0;
    for (var t = 0; t < K; t++) top = Math.max(top, D.targets[t][j]);
    return [(1 + D.tolerances[j]) * top, top];
  });
  var giants = [];  // a unit alone above every upper bound: fixed by the data, not the plan
  D.attributes.forEach(function (a, j) {
    for (var i = 0; i < n; i++) {
      if (D.values[j][i] > upperMax[j][0]) {
        giants.push('unit ' + D.units[i] + ' alone exceeds the ' + a + ' target by ' +
          pctText(D.values[j][i] / upperMax[j][1] - 1) + ': τ=' + pctText(D.tolerances[j]) +
          ' cannot be met');
      }
    }
  });

  function pieces(labels) {  // connected pieces of each territory on the adjacency graph
    var seen = new Uint8Array(n), out = new Array(K).fill(0), stack = [];
    for (var s = 0; s < n; s++) {
      if (seen[s]) continue;
      out[labels[s]] += 1; seen[s] = 1; stack.push(s);
      while (stack.length) {
        var u = stack.pop();
        for (var e = D.indptr[u]; e < D.indptr[u + 1]; e++) {
          var v = D.indices[e];
          if (!seen[v] && labels[v] === labels[s]) { seen[v] = 1; stack.push(v); }
        }
      }
    }
    return out;
  }

  function evaluate(labels) {  // evaluate_alignment's totals, deviations and messages
    var totals = [], counts = new Array(K).fill(0), t, j;
    for (t = 0; t < K; t++) totals.push(new Array(m).fill(0));
    for (var i = 0; i < n; i++) {
      counts[labels[i]] += 1;
      for (j = 0; j < m; j++) totals[labels[i]][j] += D.values[j][i];
    }
    var dev = totals.map(function (row, t) {
      return row.map(function (v, j) { return v / D.targets[t][j] - 1; });
    });
    var nPieces = pieces(labels), violations = giants.slice(), missed = [];
    for (t = 0; t < K; t++) {
      var name = D.territories[t];
      if (counts[t] === 0) { violations.push(name + ': empty territory'); continue; }
      for (j = 0; j < m; j++) {
        var tau = D.tolerances[j];
        if (Math.abs(dev[t][j]) > tau + 1e-9) {
          var line = name + ': ' + D.attributes[j] + ' ' + beyondText(Math.abs(dev[t][j]), tau) +
            ' ' + (dev[t][j] > 0 ? 'over' : 'under') + ' target (τ=' + pctText(tau) + ')';
          (soft[j] ? missed : violations).push(line);
        }
      }
      if (nPieces[t] > 1) violations.push(name + ': not contiguous (' + nPieces[t] + ' separate pieces)');
    }
    var worst = D.attributes.map(function (a, j) {
      return Math.max.apply(null, dev.map(function (r) { return Math.abs(r[j]); }));
    });
    return {totals: totals, deviations: dev, units: counts, pieces: nPieces,
            violations: violations, soft_missed: missed, max_abs_deviation: worst,
            edits: Object.keys(edits).length};
  }

  function cell(row, text, cls) {
    var td = document.createElement('td'); td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  function put(td, text, cls) {  // only what changed is touched: less to lay out again
    if (td.textContent !== text) td.textContent = text;
    if (cls !== undefined && td.className !== cls) td.className = cls;
  }
  function fillList(id, lines, none) {
    var ul = $(id); ul.textContent = '';
    (lines.length ? lines : [none]).forEach(function (l) {
      var li = document.createElement('li'); li.textContent = l; ul.appendChild(li);
    });
  }

  function drawTable(state) {
    var head = $('editor-balance').tHead, body = $('editor-balance').tBodies[0], tr, t, j;
    if (!head.rows.length) {
      tr = head.insertRow();
      var words = ['Territory', 'Units', 'Pieces'];
      D.attributes.forEach(function (a) {
        var w = a.charAt(0).toUpperCase() + a.slice(1).replace(/_/g, ' ');
        words.push(w, w + ' vs target');
      });
      words.forEach(function (w, k) {
        var th = document.createElement('th'); th.textContent = w;
        if (k === 0) th.className = 'text';
        tr.appendChild(th);
      });
    }
    if (!body.rows.length) {  // built once, then only the numbers change
      for (t = 0; t < K; t++) {
        tr = body.insertRow();
        cell(tr, D.territories[t], 'text');
        for (j = 0; j < 2 + 2 * m; j++) cell(tr, '');
      }
    }
    for (t = 0; t < K; t++) {
      var cells = body.rows[t].cells;
      put(cells[1], amount(state.units[t]));
      put(cells[2], String(state.pieces[t]));
      for (j = 0; j < m; j++) {
        var out = Math.abs(state.deviations[t][j]) > D.tolerances[j] + 1e-9;
        put(cells[3 + 2 * j], amount(state.totals[t][j]));
        put(cells[4 + 2 * j], signedPct(state.deviations[t][j]), out ? 'off' : '');
      }
    }
  }

  function drawEdits() {
    var body = $('editor-edits').tBodies[0], rows = document.createDocumentFragment();
    Object.keys(edits).map(Number).sort(function (a, b) { return a - b; }).forEach(function (i) {
      var tr = document.createElement('tr');
      cell(tr, D.units[i], 'text'); cell(tr, D.names[i], 'text');
      cell(tr, D.territories[D.plan[i]], 'text'); cell(tr, D.territories[plan[i]], 'text');
      rows.appendChild(tr);
    });
    body.textContent = ''; body.appendChild(rows);
  }

  // The deviation chart: plain SVG, built once and updated in place (a plotly redraw of
  // the chart costs about 100 ms on the demo page: the whole page is laid out again).
  var COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1'], chart = null;
  function svg(tag, attrs, parent) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(el);
    return el;
  }
  function buildChart() {
    var W = 1100, H = 340, left = 60, top = 30, bottom = 110, plotH = H - top - bottom;
    var root = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img',
      'aria-label': 'Deviation from target per territory'}, $('editor-chart'));
    var slot = (W - left - 10) / K, bar = Math.max(1, slot * 0.8 / m);
    chart = {root: root, zero: svg('line', {x1: left, x2: W - 10, stroke: '#333'}, root), bars: [],
      bands: [], ticks: [], y: function (v) { return top + plotH / 2 - v * chart.scale; }, plotH: plotH};
    for (var t = 0; t < K; t++) {
      var x = left + t * slot + slot * 0.1, row = [];
      for (var j = 0; j < m; j++) {
        var r = svg('rect', {x: x + j * bar, width: bar, fill: COLOURS[j % COLOURS.length]}, root);
        row.push({rect: r, title: svg('title', {}, r)});
      }
      chart.bars.push(row);
      var label = svg('text', {x: 0, y: 0, 'font-size': 10, 'text-anchor': 'end',
        transform: 'translate(' + (x + slot * 0.4) + ',' + (H - bottom + 12) + ') rotate(-60)'}, root);
      label.textContent = D.territories[t];
    }
    D.attributes.forEach(function (a, j) {
      if (!soft[j]) {
        [-1, 1].forEach(function (sign) {
          chart.bands.push({v: sign * D.tolerances[j], line: svg('line', {x1: left, x2: W - 10,
            stroke: '#e15759', 'stroke-dasharray': '3,3'}, root)});
        });
      }
      svg('rect', {x: left + 10 + 150 * j, y: 6, width: 12, height: 12, fill: COLOURS[j % COLOURS.length]}, root);
      svg('text', {x: left + 28 + 150 * j, y: 16, 'font-size': 12}, root).textContent =
        a + (soft[j] ? ' (soft)' : ' (dotted: tolerance)');
    });
    for (var k = 0; k < 5; k++) {
      chart.ticks.push(svg('text', {x: left - 6, 'font-size': 10, 'text-anchor': 'end'}, root));
    }
  }
  function drawChart(state) {
    if (!chart) buildChart();
    var top = 0;
    state.deviations.forEach(function (r) { r.forEach(function (v) { top = Math.max(top, Math.abs(v)); }); });
    D.tolerances.forEach(function (tau) { top = Math.max(top, tau); });
    chart.scale = (chart.plotH / 2) / (1.1 * top);
    var y0 = chart.y(0);
    chart.zero.setAttribute('y1', y0); chart.zero.setAttribute('y2', y0);
    chart.bars.forEach(function (row, t) {
      row.forEach(function (b, j) {
        var v = state.deviations[t][j], y = chart.y(v);
        b.rect.setAttribute('y', Math.min(y, y0));
        b.rect.setAttribute('height', Math.abs(y - y0));
        b.rect.setAttribute('opacity', Math.abs(v) > D.tolerances[j] + 1e-9 ? 1 : 0.55);
        b.title.textContent = D.territories[t] + ' · ' + D.attributes[j] + ' ' + signedPct(v);
      });
    });
    chart.bands.forEach(function (b) { var y = chart.y(b.v); b.line.setAttribute('y1', y); b.line.setAttribute('y2', y); });
    chart.ticks.forEach(function (tick, k) {
      var v = (k - 2) / 2 * 1.1 * top;
      tick.setAttribute('y', chart.y(v) + 3); tick.textContent = signedPct(v);
    });
  }

  // The map: clicks on the units trace pick a unit. Edited and locked units are drawn on
  // an SVG layer over the plot, placed with plotly's axes (restyling the 3,000-point units
  // trace redraws every territory outline: about a second on the demo, so it is avoided).
  var mapDiv = null, unitsTrace = -1, fills = {}, marks = null;
  function findMap() {
    var box = D.map && $(D.map);
    mapDiv = box ? box.querySelector('.js-plotly-plot') : null;
    if (!mapDiv || !mapDiv.data) { mapDiv = null; return; }
    mapDiv.data.forEach(function (tr, k) {
      if (tr.name === 'units') unitsTrace = k;
      if (tr.fill === 'toself' && tr.legendgroup === 'Proposed territories') fills[tr.name] = tr.fillcolor;
    });
    if (unitsTrace < 0) { mapDiv = null; return; }
    mapDiv.on('plotly_click', function (ev) {
      var p = (ev.points || []).filter(function (q) { return q.curveNumber === unitsTrace; })[0];
      if (p) pick(p.pointIndex);
    });
    marks = document.createElementNS(SVG, 'svg');
    marks.setAttribute('class', 'editor-marks');
    marks.setAttribute('style', 'position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none;will-change:transform');
    mapDiv.style.position = 'relative';
    mapDiv.appendChild(marks);
    mapDiv.on('plotly_afterplot', paintMap);  // zoom, pan, resize, layer switch
  }
  function mark(tag, attrs) { return svg(tag, attrs, marks); }
  function paintMap() {  // edited units: their new territory's colour; locked ones: a diamond
    if (!mapDiv || !mapDiv._fullLayout) return;
    var xa = mapDiv._fullLayout.xaxis, ya = mapDiv._fullLayout.yaxis, tr = mapDiv._fullData[unitsTrace];
    marks.textContent = '';
    var shown = Object.keys(edits).concat(Object.keys(lockedAt).filter(function (i) { return !(i in edits); }));
    shown.forEach(function (key) {
      var i = Number(key), x = xa._offset + xa.l2p(tr.x[i]), y = ya._offset + ya.l2p(tr.y[i]);
      if (!(x >= xa._offset && x <= xa._offset + xa._length && y >= ya._offset && y <= ya._offset + ya._length)) return;
      if (i in lockedAt) {
        mark('rect', {x: x - 4, y: y - 4, width: 8, height: 8, fill: '#222', 'data-unit': D.units[i],
          transform: 'rotate(45 ' + x + ' ' + y + ')', class: 'locked'});
      }
      if (i in edits) {
        mark('circle', {cx: x, cy: y, r: 6, fill: fills[pyEscape(D.territories[plan[i]])] || '#000',
          stroke: '#000', 'stroke-width': 1.5, 'data-unit': D.units[i], class: 'edited'});
      }
    });
  }

  var state = null;
  function update() {
    state = evaluate(plan);
    drawTable(state); drawEdits(); drawChart(state); paintMap();
    fillList('editor-violations', state.violations, 'None: every territory meets its hard tolerance and is contiguous.');
    fillList('editor-soft', state.soft_missed, 'None.');
    var hard = D.attributes.map(function (a, j) { return a + ' ' + pctText(state.max_abs_deviation[j]); });
    $('editor-status').textContent = state.edits + ' unit(s) edited · ' + state.violations.length +
      ' violation(s) · ' + state.soft_missed.length + ' soft goal(s) missed · worst deviation: ' +
      hard.join(', ');
    return state;
  }

  function pick(i) {
    $('editor-unit').value = D.units[i];
    $('editor-territory').value = D.territories[plan[i]];
    showUnit();
  }
  function showUnit() {
    var i = byId[$('editor-unit').value];
    $('editor-unit-info').textContent = i === undefined ? 'unknown unit' :
      (D.names[i] ? D.names[i] + ' · ' : '') + 'now in ' + D.territories[plan[i]] +
      (i in lockedAt ? ' · locked by a manager' : '');
  }

  function assign(unitId, territory) {
    var i = byId[String(unitId)], t = byName[String(territory)];
    if (i === undefined) throw new Error('unknown unit ' + unitId);
    if (t === undefined) throw new Error('unknown territory ' + territory);
    plan[i] = t; edits[i] = t;
    return update();
  }

  function csvField(s) {  // quoted, and inert in a spreadsheet (as features.spreadsheet_safe)
    s = String(s);
    if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return '"' + s.replace(/"/g, '""') + '"';
  }
  function exportCsv() {  // the manager's locks: earlier ones kept, edits on top
    var rows = [csvField(D.unit_col) + ',' + csvField(D.territory_col)];
    for (var i = 0; i < n; i++) {
      if (i in edits || i in lockedAt) rows.push(csvField(D.units[i]) + ',' + csvField(D.territories[plan[i]]));
    }
    return rows.join('\r\n') + '\r\n';
  }
  function download() {
    var a = document.createElement('a');
    a.href = 'data:text/csv;charset=utf-8,' + encodeURIComponent(exportCsv());
    a.download = 'edits.csv'; document.body.appendChild(a); a.click(); a.remove();
  }
  function reset() { plan = D.plan.slice(); edits = {}; return update(); }

  function init() {
    var list = $('editor-units'), select = $('editor-territory');
    D.units.forEach(function (u, i) {
      var o = document.createElement('option'); o.value = u;
      if (D.names[i]) o.label = D.names[i];
      list.appendChild(o);
    });
    D.territories.forEach(function (t) {
      var o = document.createElement('option'); o.value = t; o.textContent = t; select.appendChild(o);
    });
    $('editor-unit').addEventListener('change', showUnit);
    $('editor-assign').addEventListener('click', function () {
      try { assign($('editor-unit').value, select.value); showUnit(); } catch (e) {
        $('editor-unit-info').textContent = e.message;
      }
    });
    $('editor-export').addEventListener('click', download);
    $('editor-reset').addEventListener('click', reset);
    findMap();
    update();
  }

  window.territoryEditor = {assign: assign, reset: reset, exportCsv: exportCsv,
    state: function () { return state; }, evaluate: function (labels) { return evaluate(labels); }};
  if (document.readyState === 'complete') init(); else window.addEventListener('load', init);
}());
