/* Telemetry charts of a machine's live page, drawn with the vendored uPlot (fablab/static/vendor/uplot/).
 *
 * Everything a chart shows comes from the server (#telemetry-data, built by devices/charts.py):
 * one chart per unit, translated titles and labels, each series' points (a null breaks the line
 * over a silence), the y scale (1-2-5 ticks, never below 0 for quantities that cannot be negative)
 * and the legend's sentence. The time window is the data's: from the first point to the last.
 *
 * Live points come from the lab board's WebSocket, which board.js already keeps open: it fires
 * "board:painted" on #board with every card it paints, and the card's frame carries the machine's
 * live readings and their time (readings_at). The same frame paints the card and the chart, so the
 * legend's "now" and the card always agree. Points older than the chosen period scroll out.
 *
 * niceScale() mirrors devices.charts.nice_scale (tests/devices/test_charts.py, and the browser test
 * checks the two agree). No innerHTML: labels are text nodes.
 */
(function () {
  "use strict";
  var dataNode = document.getElementById("telemetry-data");
  var holder = document.getElementById("telemetry-charts");
  if (!dataNode || !holder || !window.uPlot) return;
  var D = JSON.parse(dataNode.textContent);
  var lang = document.documentElement.lang || undefined;
  var tz = D.time_zone || undefined;
  var board = document.getElementById("board");
  var only = board ? board.dataset.only : null;
  var GAP_FACTOR = 5;
  var charts = {};
  var order = [];
  // For the browser tests and for anyone debugging a chart in the console.
  window.fablabCharts = { charts: charts, niceScale: niceScale };

  // ------------------------------------------------------------------ numbers and scales

  function tidy(value, step) {
    var decimals = Math.max(0, -Math.floor(Math.log10(step))) + 1;
    var f = Math.pow(10, decimals);
    return Math.round(value * f) / f + 0;
  }
  function niceStep(span, target) {
    var raw = span / Math.max(target || 5, 1);
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var fraction = raw / power;
    var steps = [[1.5, 1], [3, 2], [7, 5]];
    for (var i = 0; i < steps.length; i++) {
      if (fraction < steps[i][0]) return steps[i][1] * power;
    }
    return 10 * power;
  }
  function niceScale(low, high, nonNegative) {
    if (nonNegative) low = Math.min(0, low);
    if (high - low < 1e-9 * Math.max(1, Math.abs(high))) {
      var pad = Math.abs(high) * 0.05 || 1;
      high = high + pad;
      low = nonNegative && low >= 0 ? low : low - pad;
      if (nonNegative && low > 0) low = 0;
    }
    var step = niceStep(high - low);
    var lo = Math.floor(low / step + 1e-9) * step;
    var hi = Math.ceil(high / step - 1e-9) * step;
    return { low: tidy(lo, step), high: tidy(hi, step), step: step };
  }
  function number(value) {  // as board.js writes the card's readings
    var digits = Math.abs(value) >= 1000 ? 0 : 1;
    return new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
  }
  function tick(value, step) {
    var digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
  }
  function fmt(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return values[key] == null ? "" : String(values[key]); })
      .replace(/%%/g, "%");
  }
  function readingValue(raw) {
    if (raw && typeof raw === "object") raw = raw.value != null ? raw.value : raw.v;
    return typeof raw === "number" && isFinite(raw) ? raw : null;
  }
  var timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz });
  var secondsFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZone: tz });
  var dayFormat = new Intl.DateTimeFormat(lang, { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz });

  // ------------------------------------------------------------------ one chart

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  // A figure like the server's (machine_live.html), for a chart that starts live.
  function createFigure(spec) {
    var figure = el("figure", "chart-figure");
    figure.dataset.chart = spec.key;
    var caption = el("figcaption");
    caption.id = "chart-" + spec.key + "-title";
    caption.appendChild(el("strong", null, spec.title));
    if (spec.unit) caption.appendChild(document.createTextNode(" (" + spec.unit + ")"));
    figure.appendChild(caption);
    var plot = el("div", "chart-plot");
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-labelledby", caption.id + " chart-" + spec.key + "-legend");
    figure.appendChild(plot);
    var legend = el("ul", "chart-legend");
    legend.id = "chart-" + spec.key + "-legend";
    figure.appendChild(legend);
    holder.appendChild(figure);
    var note = document.getElementById("telemetry-note");
    if (note) note.hidden = true;
    return figure;
  }

  function legendItem(chart, s) {
    var legend = chart.figure.querySelector(".chart-legend");
    var item = legend.querySelector('[data-series="' + CSS.escape(s.name) + '"]');
    if (!item) {
      item = el("li");
      item.dataset.series = s.name;
      var swatch = el("span", "swatch" + (s.dashed ? " dashed" : ""));
      swatch.style.borderColor = s.colour;
      item.appendChild(swatch);
      item.appendChild(el("span", "series-label", s.label));
      item.appendChild(document.createTextNode(": "));
      item.appendChild(el("span", "series-values"));
      legend.appendChild(item);
    }
    return item.querySelector(".series-values");
  }

  function writeLegend(chart) {
    chart.series.forEach(function (s) {
      var values = s.v.filter(function (v) { return v != null; });
      if (!values.length) return;
      legendItem(chart, s).textContent = fmt(D.strings.legend, {
        last: number(s.now), unit: chart.unit,
        low: number(Math.min.apply(null, values)), high: number(Math.max.apply(null, values))
      });
    });
  }

  function plotData(chart) {
    return uPlot.join(chart.series.map(function (s) { return [s.t, s.v]; }));
  }

  // Dots where a series has too few points for a line to show (a single reading, a new series).
  function sparse(u, seriesIdx, idx0, idx1) {
    var values = u.data[seriesIdx], count = 0;
    for (var i = idx0; i <= idx1; i++) if (values[i] != null) count++;
    return count < 3 || u.bbox.width / count > 24 * (window.devicePixelRatio || 1);
  }

  function plotHeight(width) { return width < 500 ? 220 : 260; }

  function draw(chart) {
    var box = chart.figure.querySelector(".chart-plot");
    var width = box.clientWidth || chart.figure.clientWidth || 300;
    if (chart.plot) chart.plot.destroy();
    chart.plot = null;
    if (!chart.series.length) return;  // a chart started live draws with its first series
    var opts = {
      width: width,
      height: plotHeight(width),
      ms: 1,  // epoch milliseconds
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts), tz); },
      legend: { show: false },  // the legend is the page's own text (and the screen readers')
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          // The window is the data's: first to last point (a single point gets a minute either side).
          range: function (u) {
            var xs = u.data[0];
            if (!xs || !xs.length) return [Date.now() - 60000, Date.now()];
            var min = xs[0], max = xs[xs.length - 1];
            return max - min < 60000 ? [min - 30000, max + 30000] : [min, max];
          }
        },
        y: {
          range: function (u, min, max) {
            if (min == null) { min = chart.y.low; max = chart.y.high; }
            chart.y = niceScale(min, max, chart.nonNegative);
            return [chart.y.low, chart.y.high];
          }
        }
      },
      axes: [
        {
          font: "12px system-ui, sans-serif",
          stroke: "#333",
          grid: { stroke: "#e4e4e4", width: 1 },
          ticks: { stroke: "#ccc", width: 1 },
          space: 70,
          values: function (u, splits, axisIdx, space, incr) {
            var span = u.scales.x.max - u.scales.x.min;
            // Ticks less than a minute apart need their seconds, a window of more than a day its weekdays.
            var f = incr < 60000 ? secondsFormat : span > 20 * 3600 * 1000 ? dayFormat : timeFormat;
            return splits.map(function (t) { return f.format(new Date(t)); });
          }
        },
        {
          font: "12px system-ui, sans-serif",
          labelFont: "12px system-ui, sans-serif",
          stroke: "#333",
          label: chart.unit || null,
          labelSize: chart.unit ? 18 : 0,
          grid: { stroke: "#e4e4e4", width: 1 },
          ticks: { stroke: "#ccc", width: 1 },
          splits: function () {
            var out = [];
            for (var v = chart.y.low; v <= chart.y.high + chart.y.step / 2; v += chart.y.step) out.push(tidy(v, chart.y.step));
            return out;
          },
          values: function (u, splits) { return splits.map(function (v) { return tick(v, chart.y.step); }); },
          size: function (u, values) {
            var longest = (values || []).reduce(function (n, v) { return Math.max(n, String(v).length); }, 3);
            return Math.ceil(longest * 7.5) + 24;  // tick length and gap, so the unit label never touches a value
          }
        }
      ],
      series: [{}].concat(chart.series.map(function (s) {
        return {
          label: s.label, stroke: s.colour, width: 2, dash: s.dashed ? [6, 4] : undefined, spanGaps: false,
          points: { show: sparse, size: 6, fill: s.colour }
        };
      }))
    };
    chart.plot = new uPlot(opts, plotData(chart), box);
    chart.plot.root.setAttribute("aria-hidden", "true");  // the figure's caption and legend say it in words
  }

  function addChart(spec) {
    var figure = holder.querySelector('[data-chart="' + CSS.escape(spec.key) + '"]') || createFigure(spec);
    var chart = {
      key: spec.key, title: spec.title, unit: spec.unit, nonNegative: spec.non_negative,
      y: spec.y || { low: 0, high: 1, step: 0.2 }, serverY: spec.y || null, figure: figure, plot: null,
      series: (spec.series || []).map(function (s) {
        return { name: s.name, label: s.label, colour: s.colour, dashed: s.dashed, now: s.now, t: s.t.slice(), v: s.v.slice() };
      })
    };
    charts[spec.key] = chart;
    order.push(spec.key);
    draw(chart);
    if (window.ResizeObserver) {
      var box = figure.querySelector(".chart-plot");
      var lastWidth = box.clientWidth;
      new ResizeObserver(function () {
        var width = box.clientWidth;
        if (!width || width === lastWidth || !chart.plot) return;
        lastWidth = width;
        chart.plot.setSize({ width: width, height: plotHeight(width) });
      }).observe(box);
    }
    return chart;
  }

  D.charts.forEach(addChart);

  // ------------------------------------------------------------------ live points

  function medianInterval(t) {
    var gaps = [];
    for (var i = Math.max(1, t.length - 20); i < t.length; i++) gaps.push(t[i] - t[i - 1]);
    gaps.sort(function (a, b) { return a - b; });
    return gaps.length ? gaps[Math.floor(gaps.length / 2)] : 0;
  }

  function seriesFor(name) {
    var info = D.names[name];
    if (!info) return null;  // a name the page was not told about: it shows after a reload
    var chart = charts[info.chart];
    if (!chart) {
      if (!D.live) return null;
      chart = addChart({ key: info.chart, title: info.title, unit: info.unit, non_negative: info.non_negative, series: [] });
    }
    for (var i = 0; i < chart.series.length; i++) if (chart.series[i].name === name) return { chart: chart, s: chart.series[i] };
    var s = {
      name: name, label: info.label, dashed: info.dashed, now: null, t: [], v: [],
      colour: D.palette[chart.series.length % D.palette.length]
    };
    chart.series.push(s);
    chart.redraw = true;  // one more line: uPlot is built again with it
    return { chart: chart, s: s };
  }

  function addReadings(frame) {
    if (only && frame.machine !== only) return;
    var at = frame.readings_at;
    var readings = frame.readings || {};
    if (typeof at !== "number") return;
    var touched = {};
    Object.keys(readings).forEach(function (name) {
      var value = readingValue(readings[name]);
      if (value == null) return;
      var found = seriesFor(name);
      if (!found) return;
      var s = found.s;
      s.now = value;  // the card's number, from the same frame
      var last = s.t.length ? s.t[s.t.length - 1] : null;
      if (last != null && at <= last) { touched[found.chart.key] = found.chart; return; }
      var typical = medianInterval(s.t);
      if (last != null && typical && at - last > GAP_FACTOR * typical) {
        s.t.push(Math.round((last + at) / 2));
        s.v.push(null);
      }
      s.t.push(at);
      s.v.push(value);
      touched[found.chart.key] = found.chart;
    });
    Object.keys(touched).forEach(function (key) {
      var chart = touched[key];
      // The chart scrolls: what is older than the chosen period leaves it.
      var newest = Math.max.apply(null, chart.series.map(function (s) { return s.t.length ? s.t[s.t.length - 1] : -Infinity; }));
      chart.series.forEach(function (s) {
        var keep = 0;
        while (keep < s.t.length && s.t[keep] < newest - D.period_ms) keep++;
        while (keep < s.v.length && s.v[keep] === null) keep++;  // never start on a gap
        if (keep) { s.t.splice(0, keep); s.v.splice(0, keep); }
      });
      if (chart.redraw || !chart.plot) {
        chart.redraw = false;
        draw(chart);
      } else {
        chart.plot.setData(plotData(chart));
      }
      writeLegend(chart);
    });
  }

  if (board) board.addEventListener("board:painted", function (event) { addReadings(event.detail || {}); });
})();
