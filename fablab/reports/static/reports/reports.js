/* The report pages' charts, drawn with the vendored uPlot (fablab/static/vendor/uplot/), and the print
 * button of the printable report.
 *
 * Everything a chart shows comes from the server (#report-charts, built by fablab/reports/views.py from
 * protected cells): one entry per chart with the month numbers, translated labels, colours and values.
 * A hidden (suppressed) or banded figure arrives as null and leaves a gap: the chart never shows more
 * than the tables beside it. Month names on the axis come from the browser, in the page's language.
 * No innerHTML: labels are text nodes.
 */
(function () {
  "use strict";

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  var dataNode = document.getElementById("report-charts");
  if (!dataNode || !window.uPlot) return;
  var D = JSON.parse(dataNode.textContent);
  if (!D) return;
  var lang = document.documentElement.lang || undefined;
  var monthName = new Intl.DateTimeFormat(lang, { month: "short" });
  var charts = [];
  window.fablabReportCharts = charts;  // for the browser tests and for debugging in the console

  function fmtNumber(value, digits) {
    return new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(value);
  }

  function legend(figure, spec) {
    var list = figure.querySelector(".chart-legend");
    if (!list) {
      list = document.createElement("ul");
      list.className = "chart-legend";
      figure.appendChild(list);
    }
    spec.series.forEach(function (s) {
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch" + (spec.kind === "bars" ? " block" : "");
      swatch.style.borderColor = s.colour;
      swatch.style.backgroundColor = spec.kind === "bars" ? s.colour : "transparent";
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.label));
      list.appendChild(item);
    });
  }

  function draw(key, spec) {
    var figure = document.querySelector('.chart-figure[data-chart="' + key + '"]');
    var holder = figure && figure.querySelector(".chart-plot");
    if (!holder || !spec || !spec.months.length) {
      if (figure) figure.hidden = true;
      return;
    }
    var xs = spec.months.map(function (m) { return m - 1; });
    var names = spec.months.map(function (m) { return monthName.format(new Date(2001, m - 1, 15)); });
    var bars = spec.kind === "bars";
    var widths = [0.8, 0.55, 0.3];
    var series = [{ label: "" }].concat(spec.series.map(function (s, i) {
      var one = {
        label: s.label,
        stroke: s.colour,
        width: bars ? 0 : 2,
        spanGaps: false,
        points: { show: true, size: 6 },
        value: function (u, v) { return v == null ? "–" : fmtNumber(v, 1) + " " + spec.unit; }
      };
      if (bars) {
        one.fill = s.colour;
        one.points = { show: false };
        one.paths = uPlot.paths.bars({ size: [widths[i % widths.length], Infinity], align: 0 });
      }
      return one;
    }));
    var data = [xs].concat(spec.series.map(function (s) { return s.values; }));
    var opts = {
      width: Math.max(200, holder.clientWidth),
      height: 240,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: function (u, min, max) { return [min - 0.5, max + 0.5]; } },
        y: {
          range: function (u, min, max) {
            var top = spec.unit === "%" ? Math.max(100, max || 0) : Math.max(1, (max || 0) * 1.1);
            return [0, top];
          }
        }
      },
      axes: [
        {
          splits: function () { return xs; },
          // Every month where there is room, every second or third one on a phone.
          values: function (u, splits) {
            var room = u.bbox.width / (window.devicePixelRatio || 1) / Math.max(1, xs.length);
            var every = room < 20 ? 3 : room < 34 ? 2 : 1;
            return splits.map(function (x) { return x % every ? "" : names[xs.indexOf(x)] || ""; });
          }
        },
        { values: function (u, splits) { return splits.map(function (v) { return fmtNumber(v, 0) + " " + spec.unit; }); }, size: 60 }
      ],
      series: series
    };
    var chart = new uPlot(opts, data, holder);
    charts.push(chart);
    legend(figure, spec);
    var resize = function () { chart.setSize({ width: Math.max(200, holder.clientWidth), height: 240 }); };
    if (window.ResizeObserver) new ResizeObserver(resize).observe(holder);
    else window.addEventListener("resize", resize);
  }

  draw("utilisation", D.utilisation);
  draw("hours", D.hours);
})();
