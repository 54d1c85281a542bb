// The experiment page's parameter-vs-metric scatter: one point per run, x a hyperparameter
// (numbers on a linear axis; text values as categories), y a metric; both chosen on the
// page, redrawn from the data the page carries (no request).
window.GalaxyScatter = (function () {
  "use strict";
  var points = JSON.parse(document.getElementById("scatter-data").textContent);
  var param = document.getElementById("scatter-param");
  var metric = document.getElementById("scatter-metric");
  var note = document.getElementById("scatter-note");
  var chart = null;

  function finite(v) { return typeof v === "number" && isFinite(v); }

  function draw() {
    var key = param.value, name = metric.value;
    var usable = points.filter(function (p) {
      return p.params[key] !== undefined && p.params[key] !== null && finite(p.metrics[name]);
    });
    var numeric = usable.every(function (p) { return finite(p.params[key]); });
    var categories = numeric ? [] : Array.from(new Set(usable.map(function (p) {
      return String(p.params[key]); }))).sort();
    var data = usable.map(function (p) {
      return {x: numeric ? p.params[key] : categories.indexOf(String(p.params[key])),
              y: p.metrics[name], name: p.name, run: p.run_id};
    });
    note.textContent = data.length + " of " + points.length + " runs have both " + key +
      " and " + name + ".";
    if (chart) chart.destroy();
    GalaxyCharts.applyTheme();
    var accent = GalaxyCharts.cssVar("--accent");
    chart = new Chart(document.getElementById("scatter"), {
      type: "scatter",
      data: {datasets: [{label: name, data: data, pointRadius: 5, pointHoverRadius: 7,
                         borderColor: accent, backgroundColor: accent + "99"}]},
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: {
          x: {type: "linear", grace: "5%", title: {display: true, text: key},
              ticks: numeric ? {} : {stepSize: 1, callback: function (v) {
                return categories[v] !== undefined ? categories[v] : ""; }}},
          y: {grace: "5%", title: {display: true, text: name}}
        },
        plugins: {legend: {display: false}, tooltip: {callbacks: {label: function (ctx) {
          var raw = ctx.raw;
          var x = numeric ? raw.x : categories[raw.x];
          return raw.name + ": " + key + "=" + x + ", " + name + "=" + raw.y.toPrecision(4);
        }}}}
      }
    });
    document.getElementById("scatter-card").dataset.points = String(data.length);
  }

  param.addEventListener("change", draw);
  metric.addEventListener("change", draw);
  if (param.value && metric.value) draw();
  return {draw: draw, chart: function () { return chart; }};
})();
