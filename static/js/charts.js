// Shared Chart.js set-up for every page: theme colours from the CSS variables, compact
// defaults, and one way to draw a line chart. Needs vendor/chartjs/chart.umd.min.js.
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
    Chart.defaults.animation = false;  // charts update by polling; no re-animation
  }

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

  document.addEventListener("click", function (event) {
    if (!event.target || event.target.id !== "theme-toggle") return;
    applyTheme();
    Object.values(Chart.instances).forEach(recolour);
  });

  return {line: line, color: color, cssVar: cssVar, applyTheme: applyTheme};
})();
