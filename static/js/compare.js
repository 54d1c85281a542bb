// The compare page: one chart per chosen metric with a line per run (series from
// /api/compare, already downsampled by the server), an x axis by logged step, environment
// step or wall time, W&B-style exponential smoothing (debiased EMA, raw line kept faint
// behind), run colours shared by every table, and "only differing keys" for the
// hyperparameters. Needs Chart.js and charts.js.
window.GalaxyCompare = (function () {
  "use strict";
  // 20 distinct colours (one per run at most), readable on both themes.
  var COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                 "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f", "#ff7f0e"];
  var section = document.getElementById("overlay");
  var state = {reply: null, charts: [], runs: []};

  function finite(v) { return typeof v === "number" && isFinite(v); }
  function colour(i) { return COLOURS[i % COLOURS.length]; }

  // Debiased exponential moving average (W&B's "exponential moving average"): weight 0
  // is the raw series; gaps (null) stay gaps and do not move the average.
  function ema(points, weight) {
    var last = 0, debias = 0;
    return points.map(function (p) {
      if (!finite(p[1])) return {x: p[0], y: null};
      if (!weight) return {x: p[0], y: p[1]};
      last = last * weight + (1 - weight) * p[1];
      debias = debias * weight + (1 - weight);
      return {x: p[0], y: last / debias};
    });
  }

  function paintSwatches() {
    document.querySelectorAll(".swatch[data-index]").forEach(function (el) {
      el.style.background = colour(Number(el.dataset.index));
    });
  }

  function chosenKeys() {
    return Array.prototype.map.call(
      document.querySelectorAll('#key-picker input[name="key"]:checked'),
      function (box) { return box.value; });
  }

  function runIndex() {
    var index = {};
    document.querySelectorAll("#compare-runs tr[data-run]").forEach(function (row, i) {
      index[row.dataset.run] = {i: i, name: row.querySelector("b").textContent};
    });
    return index;
  }

  function datasets(lines, weight, runs) {
    var out = [];
    lines.forEach(function (line) {
      var run = runs[line.run_id] || {i: 0, name: line.run_id};
      var c = colour(run.i);
      if (weight > 0) {
        out.push({label: run.name + " (raw)", data: ema(line.points, 0), borderColor: c + "40",
                  backgroundColor: c + "40", borderWidth: 1, pointRadius: 0, raw: true});
      }
      out.push({label: run.name, data: ema(line.points, weight), borderColor: c,
                backgroundColor: c, borderWidth: 1.6, pointRadius: 0, spanGaps: true});
    });
    return out;
  }

  function chartFor(key, index, lines, reply, weight, runs) {
    var box = document.createElement("div");
    box.className = "chart-box";
    box.dataset.key = key;
    var title = document.createElement("h3");
    title.textContent = key;
    var wrap = document.createElement("div");
    wrap.className = "chart-wrap";
    var canvas = document.createElement("canvas");
    canvas.id = "compare-chart-" + index;
    wrap.appendChild(canvas);
    box.appendChild(title);
    box.appendChild(wrap);
    var missing = (reply.missing || {})[key];
    if (missing && missing.length) {
      var note = document.createElement("p");
      note.className = "note muted small";
      note.textContent = missing.length + " run(s) have no line here" +
        (reply.x === "step" ? " (no environment-step record)" : "") + ".";
      box.appendChild(note);
    }
    document.getElementById("charts").appendChild(box);
    GalaxyCharts.applyTheme();
    return new Chart(canvas, {
      type: "line",
      data: {datasets: datasets(lines, weight, runs)},
      options: {
        responsive: true, maintainAspectRatio: false, parsing: true, normalized: true,
        interaction: {mode: "nearest", intersect: false},
        scales: {x: {type: "linear", title: {display: true, text: reply.x_label}},
                 y: {type: "linear"}},
        plugins: {legend: {labels: {boxWidth: 10, filter: function (item, data) {
          return !data.datasets[item.datasetIndex].raw; }}}}
      }
    });
  }

  function draw() {
    var reply = state.reply;
    state.charts.forEach(function (chart) { chart.destroy(); });
    state.charts = [];
    document.getElementById("charts").innerHTML = "";
    var weight = Number(document.getElementById("smoothing").value);
    var runs = runIndex();
    reply.keys.forEach(function (key, i) {
      state.charts.push(chartFor(key, i, reply.series[key] || [], reply, weight, runs));
    });
    section.dataset.drawn = String(reply.keys.length);
  }

  function restyle() {
    var weight = Number(document.getElementById("smoothing").value);
    document.getElementById("smoothing-value").textContent = weight.toFixed(2);
    if (!state.reply) return;
    var runs = runIndex();
    state.charts.forEach(function (chart, i) {
      var key = state.reply.keys[i];
      chart.data.datasets = datasets(state.reply.series[key] || [], weight, runs);
      chart.update("none");
    });
  }

  function load() {
    var keys = chosenKeys();
    var status = document.getElementById("overlay-status");
    document.getElementById("keys-shown").textContent = keys.join(", ") || "none";
    if (!keys.length) {
      status.textContent = "Choose at least one series.";
      state.reply = {keys: [], series: {}, x_label: ""};
      draw();
      return Promise.resolve();
    }
    var url = section.dataset.api + "&tables=0&points=" + section.dataset.points +
      "&x=" + encodeURIComponent(document.getElementById("x-axis").value) +
      "&keys=" + encodeURIComponent(keys.join(","));
    status.textContent = "Loading series…";
    return fetch(url, {headers: {Accept: "application/json"}})
      .then(function (r) { return r.json().then(function (b) { return {ok: r.ok, body: b}; }); })
      .then(function (res) {
        if (!res.ok) throw new Error(res.body.error || "the series could not be read");
        state.reply = res.body;
        var count = 0;
        Object.values(res.body.series).forEach(function (lines) {
          lines.forEach(function (l) { count += l.points.length; });
        });
        status.textContent = count.toLocaleString() + " points drawn (at most " +
          res.body.points.toLocaleString() + " per run and series, min/max downsampled).";
        draw();
      })
      .catch(function (err) { status.textContent = "Could not draw the series: " + err.message; });
  }

  function init() {
    paintSwatches();
    if (!section) return;
    document.getElementById("x-axis").addEventListener("change", load);
    document.getElementById("smoothing").addEventListener("input", restyle);
    document.querySelectorAll('#key-picker input[name="key"]').forEach(function (box) {
      box.addEventListener("change", load);
    });
    var only = document.getElementById("only-differing");
    if (only) {
      only.addEventListener("change", function () {
        document.querySelector("#hyperparameters table").classList.toggle("hide-same", only.checked);
      });
    }
    load();
  }

  init();
  return {ema: ema, state: state, load: load, colour: colour};
})();
