// Model page: draws the validation-history charts from the JSON the page embeds
// (<script id="history-data">: [{id, title, x_title, y_title, labels, series}]).
// Needs vendor/chartjs/chart.umd.min.js and js/charts.js.
(function () {
  "use strict";
  var charts = [];

  function draw() {
    var node = document.getElementById("history-data");
    if (!node || !window.GalaxyCharts || !window.Chart) return;
    var specs;
    try { specs = JSON.parse(node.textContent); } catch (e) { return; }
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
    specs.forEach(function (spec) {
      var canvas = document.getElementById(spec.id);
      if (!canvas) return;
      // Few evaluations: show the points, a single one would otherwise be invisible.
      var radius = spec.labels.length <= 60 ? 2.5 : 0;
      var series = spec.series.map(function (s) {
        return Object.assign({pointRadius: radius, spanGaps: true}, s);
      });
      charts.push(GalaxyCharts.line(canvas, spec.labels, series, {
        plugins: {legend: {labels: {usePointStyle: true, pointStyle: "line", boxWidth: 24}}},
        scales: {
          x: {title: {display: true, text: spec.x_title}, ticks: {maxTicksLimit: 12}},
          y: {title: {display: true, text: spec.y_title}}
        }
      }));
      canvas.dataset.drawn = "true";
    });
  }

  // A chart keeps the colours it was made with: redraw ours in the new theme's colours.
  document.addEventListener("click", function (event) {
    if (event.target && event.target.id === "theme-toggle") draw();
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
