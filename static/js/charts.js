// Shared Chart.js set-up for every page: theme colours from the CSS variables, compact
// defaults, one way to draw a line chart, and reference lines (a zero line, a 50 % line)
// drawn by a small plugin from `options.plugins.refLines: [{y, label?}]`, so they span
// the chart whatever its x range. Needs vendor/chartjs/chart.umd.min.js.
window.GalaxyCharts = (function () {
  "use strict";
  var PALETTE = ["--accent", "--warn", "--ok", "--bad", "--muted"];

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function color(i) { return cssVar(PALETTE[i % PALETTE.length]); }

  function applyTheme() {
    Chart.defaults.color = cssVar("--muted");
    Chart.defaults.borderColor = cssVar("--border");
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false;  // charts update live; no re-animation
  }

  // Dashed horizontal lines at fixed values, under the datasets.
  var refLines = {
    id: "refLines",
    beforeDatasetsDraw: function (chart, args, options) {
      var lines = (options && options.lines) || [];
      var y = chart.scales.y, area = chart.chartArea;
      if (!y || !lines.length) return;
      var ctx = chart.ctx;
      ctx.save();
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1;
      ctx.font = "11px " + Chart.defaults.font.family;
      lines.forEach(function (line) {
        if (line.y < y.min || line.y > y.max) return;
        var py = y.getPixelForValue(line.y);
        ctx.strokeStyle = ctx.fillStyle = line.color || cssVar("--muted");
        ctx.beginPath();
        ctx.moveTo(area.left, py);
        ctx.lineTo(area.right, py);
        ctx.stroke();
        if (line.label) ctx.fillText(line.label, area.left + 4, py - 3);
      });
      ctx.restore();
    }
  };
  if (window.Chart) Chart.register(refLines);

  // line(canvas, labels, series[, options]): series = [{label, data, color?, ...}]
  function line(canvas, labels, series, options) {
    applyTheme();
    var datasets = series.map(function (s, i) {
      var c = s.color || color(i);
      return Object.assign({borderColor: c, backgroundColor: c, pointRadius: 0,
                            borderWidth: 1.5, tension: 0}, s, {color: undefined});
    });
    return new Chart(canvas, {
      type: "line",
      data: {labels: labels, datasets: datasets},
      options: Object.assign({responsive: true, maintainAspectRatio: false,
                              interaction: {mode: "index", intersect: false},
                              plugins: {legend: {labels: {boxWidth: 12}}}}, options || {})
    });
  }

  // Chart.js copies the default colours into each chart when it is created, so a theme
  // switch recolours every chart's scales and legend itself, then redraws it.
  function recolour(chart) {
    var text = cssVar("--muted"), grid = cssVar("--border");
    Object.values(chart.options.scales || {}).forEach(function (scale) {
      if (scale.grid) scale.grid.color = grid;
      if (scale.border) scale.border.color = grid;
      if (scale.ticks) scale.ticks.color = text;
      if (scale.title) scale.title.color = text;
    });
    var legend = chart.options.plugins && chart.options.plugins.legend;
    if (legend && legend.labels) legend.labels.color = text;
    chart.update("none");
  }

  // theme.js announces a new theme before any click listener of a page runs.
  document.addEventListener("gm-theme", function () {
    applyTheme();
    Object.values(Chart.instances).forEach(recolour);
  });

  return {line: line, color: color, cssVar: cssVar, applyTheme: applyTheme};
})();
