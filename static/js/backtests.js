// Backtest pages. The form: a model's defaults follow the model select until the person
// edits a field. A queued or running job: its progress, polled from the status URL,
// until the same URL shows the result (or the form with the error). The result: equity,
// drawdown and price charts from #backtest-data (x = the bar's position in the period,
// t = its time), drawn with GalaxyCharts, and the histogram of the random policies'
// returns with the strategy's return marked (#random-data).
(function () {
  "use strict";

  // ------------------------------------------------------------------ the form
  function setUpForm(form) {
    var model = form.querySelector("#model");
    var follow = ["commission", "slippage", "initial_balance", "csv"];
    follow.forEach(function (name) {
      var field = form.querySelector("#" + name);
      if (!field) return;
      field.addEventListener("input", function () { field.dataset.touched = "1"; });
      field.addEventListener("change", function () { field.dataset.touched = "1"; });
    });
    function applyModel() {
      var option = model.options[model.selectedIndex];
      if (!option) return;
      follow.forEach(function (name) {
        var field = form.querySelector("#" + name);
        var value = option.dataset[name];
        if (field && !field.dataset.touched && value) field.value = value;
      });
      var help = form.querySelector("#model-help");
      if (help) {
        var text = option.dataset.label + " · " + (option.dataset.trainedOn ?
          "trained on " + option.dataset.trainedOn : "training file not recorded");
        if (option.dataset.testStart) {
          text += " · held-out test slice " + option.dataset.testStart + " → " +
            option.dataset.testEnd;
        }
        help.textContent = text;
      }
    }
    if (model) model.addEventListener("change", function () { applyModel(); warnInSample(); });
    ["start", "end"].forEach(function (name) {
      var field = form.querySelector("#" + name);
      if (field) field.addEventListener("input", warnInSample);
    });
    warnInSample();

    // A custom range that overlaps the dates the chosen model learned from (its train and
    // validation parts, from the model folder) is in-sample: said before it runs. The
    // result page says it again, knowing whether the file is the training file itself.
    function warnInSample() {
      var note = form.querySelector("#in-sample-warning");
      var option = model && model.options[model.selectedIndex];
      if (!note || !option) return;
      var start = form.querySelector("#start").value.trim();
      var end = form.querySelector("#end").value.trim();
      var trainStart = option.dataset.trainStart, trainEnd = option.dataset.trainEnd;
      note.hidden = true;
      if ((!start && !end) || !trainStart || !trainEnd) return;
      var from = start ? moment(start, false) : "";
      var to = end ? moment(end, true) : "9999";
      var overlaps = from <= moment(trainEnd, true) && to >= moment(trainStart, false);
      if (!overlaps) return;
      note.textContent = "In-sample: this range overlaps the dates " + option.value +
        " was trained on (" + trainStart + " → " + trainEnd + "). Its results there show " +
        "what it learned, not how it trades bars it has not seen" +
        (option.dataset.testStart ? "; its held-out test slice is " +
          option.dataset.testStart + " → " + option.dataset.testEnd + "." : ".");
      note.hidden = false;
    }
    form.addEventListener("submit", function () {
      var button = form.querySelector("#run-backtest");
      if (button) button.disabled = true;
      var running = form.querySelector("#running");
      if (running) running.hidden = false;
    });
  }

  // "YYYY-MM-DD[ HH:MM[:SS]]" as a sortable string; a bare date at the end of a range is
  // its whole day.
  function moment(text, endOfDay) {
    var value = text.replace("T", " ");
    if (value.length <= 10) return value + (endOfDay ? " 23:59:59" : " 00:00:00");
    return (value + ":00:00").slice(0, 19);
  }

  // ------------------------------------------------------------------ a job in progress
  function setUpJob(node) {
    var url = node.dataset.statusUrl, every = parseInt(node.dataset.pollMs, 10) || 700;
    var bar = document.getElementById("job-bar"), percent = document.getElementById("job-percent");
    var stage = document.getElementById("job-stage"), error = document.getElementById("job-error");
    var progress = node.querySelector("[role=progressbar]"), misses = 0;
    function show(status) {
      var pct = Math.round(100 * (status.progress || 0));
      bar.style.width = (100 * (status.progress || 0)).toFixed(1) + "%";
      percent.textContent = pct + " %";
      progress.setAttribute("aria-valuenow", String(pct));
      stage.textContent = status.stage || status.status;
    }
    function poll() {
      fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"})
        .then(function (response) {
          return response.json().then(function (body) { return {ok: response.ok, body: body}; });
        })
        .then(function (reply) {
          if (!reply.ok) throw new Error(reply.body.error || "the status is not available");
          misses = 0;
          error.hidden = true;
          if (reply.body.status === "done" || reply.body.status === "failed") {
            show(reply.body);
            window.location.reload();  // this URL now shows the result, or the form
            return;
          }
          show(reply.body);
          window.setTimeout(poll, every);
        })
        .catch(function (problem) {
          misses += 1;
          error.textContent = "Cannot reach the dashboard (" + problem.message + "); retrying…";
          error.hidden = misses < 3;
          window.setTimeout(poll, Math.min(every * Math.pow(2, misses), 10000));
        });
    }
    window.setTimeout(poll, every);
  }

  // ------------------------------------------------------------------ the charts
  function points(xs, ys) {
    return xs.map(function (x, i) { return {x: x, y: ys[i]}; });
  }

  // The time of the plotted bar nearest to position x (xs ascending).
  function timeAt(xs, ts, x) {
    var lo = 0, hi = xs.length - 1;
    if (hi < 0) return "";
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] <= x) lo = mid; else hi = mid;
    }
    return Math.abs(xs[hi] - x) < Math.abs(xs[lo] - x) ? ts[hi] : ts[lo];
  }

  function timeAxis(xs, ts, bars, showTicks) {
    return {type: "linear", min: 0, max: Math.max(bars - 1, 1), grid: {display: false},
            ticks: {display: showTicks !== false, maxRotation: 0, autoSkipPadding: 24,
                    includeBounds: false,
                    maxTicksLimit: 8, callback: function (v) { return timeAt(xs, ts, v); }}};
  }

  function money(v) {
    return v === null || v === undefined ? "—" :
      v.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2});
  }

  function alpha(colour, a) {  // "#rrggbb" -> rgba
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour);
    return m ? "rgba(" + parseInt(m[1], 16) + "," + parseInt(m[2], 16) + "," +
      parseInt(m[3], 16) + "," + a + ")" : colour;
  }

  function equityCharts(data) {
    var e = data.equity, C = GalaxyCharts;
    var colours = [C.cssVar("--accent"), C.cssVar("--muted"), C.cssVar("--warn")];
    var series = e.series.map(function (s, i) {
      return {label: s.label, data: points(e.x, s.data), color: colours[i % colours.length],
              borderWidth: i === 0 ? 2 : 1.2, order: i === 0 ? 0 : 1};
    });
    var tooltip = {callbacks: {
      title: function (items) { return items.length ? e.t[items[0].dataIndex] : ""; },
      label: function (item) { return item.dataset.label + ": " + money(item.parsed.y); }}};
    var equity = C.line(document.getElementById("equity-chart"), undefined, series, {
      parsing: false, normalized: true,
      interaction: {mode: "index", intersect: false},
      scales: {x: timeAxis(e.x, e.t, data.bars),
               y: {ticks: {callback: function (v) { return v.toLocaleString(); }}}},
      plugins: {legend: {labels: {boxWidth: 12}}, tooltip: tooltip}});
    var bad = C.cssVar("--bad");
    var drawdown = C.line(document.getElementById("drawdown-chart"), undefined, [
      {label: "Drawdown %", data: points(e.x, e.drawdown), color: bad, fill: "origin",
       backgroundColor: alpha(bad, 0.25), borderWidth: 1}], {
      parsing: false, normalized: true,
      interaction: {mode: "index", intersect: false},
      scales: {x: timeAxis(e.x, e.t, data.bars), y: {max: 0}},
      plugins: {legend: {display: false}, tooltip: {callbacks: {
        title: function (items) { return items.length ? e.t[items[0].dataIndex] : ""; },
        label: function (item) { return "Drawdown " + item.parsed.y.toFixed(2) + " %"; }}}}});
    return [equity, drawdown];
  }

  function decisionLines(p, i) {
    var lines = [];
    if (p.action && p.action[i]) lines.push("Decision: " + p.action[i]);
    p.decisions.forEach(function (d) {
      var v = d.data[i];
      if (v === null || v === undefined) return;
      lines.push(d.label + ": " + (d.format === "pct" ? (100 * v).toFixed(1) + " %" :
        v.toFixed(4)));
    });
    return lines;
  }

  function priceChart(data) {
    var p = data.price, C = GalaxyCharts;
    var ok = C.cssVar("--ok"), bad = C.cssVar("--bad");
    var many = p.buys.length + p.sells.length > 150;  // smaller marks on a busy chart
    var marker = {type: "scatter", pointStyle: "triangle", pointRadius: many ? 3.5 : 6,
                  pointHoverRadius: many ? 6 : 8, borderWidth: 1, showLine: false};
    var series = [
      {label: "Close", data: points(p.x, p.close), color: C.cssVar("--accent"), borderWidth: 1.3,
       pointHitRadius: 4, pointStyle: "line", order: 2},
      Object.assign({}, marker, {label: "Buy", data: p.buys, color: ok, order: 0}),
      Object.assign({}, marker, {label: "Sell", data: p.sells, color: bad, rotation: 180,
                                 order: 1})];
    return C.line(document.getElementById("price-chart"), undefined, series, {
      parsing: false, normalized: true,
      interaction: {mode: "nearest", axis: "x", intersect: false},
      scales: {x: timeAxis(p.x, p.t, data.bars),
               y: {ticks: {callback: function (v) { return v.toLocaleString(); }}}},
      plugins: {legend: {labels: {boxWidth: 12, usePointStyle: true}}, tooltip: {callbacks: {
        title: function (items) {
          if (!items.length) return "";
          var it = items[0];
          return it.datasetIndex === 0 ? p.t[it.dataIndex] : it.raw.t;
        },
        label: function (item) {
          if (item.datasetIndex === 0) return "Close: " + money(item.parsed.y);
          var r = item.raw, text = r.what + " at " + money(r.y);
          if (r.pnl !== undefined) text += " · PnL " + money(r.pnl) + " (" +
            r.return_pct.toFixed(2) + " %)";
          return text;
        },
        afterBody: function (items) {
          var line = items.filter(function (it) { return it.datasetIndex === 0; })[0];
          return line ? decisionLines(p, line.dataIndex) : [];
        }}}}});
  }

  // The model's figure as a vertical line across the histogram: bins are equal and a bar
  // chart's categories split the width evenly, so a value's x is linear in the edges.
  var modelMarker = {
    id: "modelMarker",
    afterDatasetsDraw: function (chart, args, options) {
      var edges = options.edges || [], value = options.value, area = chart.chartArea;
      if (value === null || value === undefined || edges.length < 2) return;
      var low = edges[0], high = edges[edges.length - 1];
      var x = area.left + (value - low) / (high - low) * (area.right - area.left);
      var text = options.label;
      if (x < area.left || x > area.right) {  // far outside the policies: at the edge
        x = Math.min(Math.max(x, area.left), area.right);
        text = x === area.left ? "← " + text : text + " →";
      }
      var ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = ctx.fillStyle = options.color;
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.moveTo(x, area.top);
      ctx.lineTo(x, area.bottom);
      ctx.stroke();
      ctx.font = "600 12px " + Chart.defaults.font.family;
      var width = ctx.measureText(text).width;
      var left = x + 6 + width > area.right ? x - 6 - width : x + 6;
      ctx.fillText(text, left, area.top + 12);
      ctx.restore();
      chart.$modelX = x;  // where it was drawn (the browser test reads it)
    }
  };

  function number(v, digits) {
    return v === null || v === undefined ? "—" : v.toFixed(digits);
  }

  function randomChart(ranked) {
    var h = ranked.histogram, C = GalaxyCharts, figure = ranked.return_pct;
    C.applyTheme();
    var muted = C.cssVar("--muted"), accent = C.cssVar("--accent");
    var labels = h.counts.map(function (c, i) {
      return number(h.edges[i], 2) + " … " + number(h.edges[i + 1], 2) + " %";
    });
    return new Chart(document.getElementById("random-chart"), {
      type: "bar",
      data: {labels: labels, datasets: [{label: "Random policies", data: h.counts,
        backgroundColor: alpha(muted, 0.45), borderColor: muted, borderWidth: 1,
        barPercentage: 1, categoryPercentage: 1}]},
      options: {responsive: true, maintainAspectRatio: false,
        scales: {
          x: {title: {display: true, text: "Return [%] of each random policy"}, grid: {display: false},
              ticks: {maxRotation: 0, autoSkip: true, maxTicksLimit: 7,
                      callback: function (v, i) { return number(h.edges[i], 1); }}},
          y: {title: {display: true, text: "policies"}, beginAtZero: true, ticks: {precision: 0}}},
        plugins: {legend: {display: false},
          modelMarker: {value: figure.model, edges: h.edges, color: accent,
                        label: "Strategy " + number(figure.model, 2) + " % · percentile " +
                               number(figure.percentile, 1)},
          tooltip: {callbacks: {label: function (item) {
            return item.parsed.y + " of " + ranked.policies + " policies"; }}}}},
      plugins: [modelMarker]});
  }

  function setUpResult(node) {
    var data = JSON.parse(node.textContent);
    var charts = [];
    var ranked = document.getElementById("random-data");
    ranked = ranked ? JSON.parse(ranked.textContent) : null;
    var histogram = null;
    function render() {
      charts.forEach(function (chart) { chart.destroy(); });
      charts = equityCharts(data).concat([priceChart(data)]);
      if (histogram) histogram.destroy();
      histogram = ranked && ranked.histogram.counts.length ? randomChart(ranked) : null;
    }
    render();
    // Rebuild in the new theme's colours (the dataset colours are read when drawn).
    document.addEventListener("click", function (event) {
      if (event.target && event.target.id === "theme-toggle") render();
    });
    window.backtestCharts = function () { return charts; };
    window.randomChart = function () { return histogram; };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("backtest-form");
    if (form) setUpForm(form);
    var job = document.getElementById("job");
    if (job && job.dataset.statusUrl) setUpJob(job);
    var data = document.getElementById("backtest-data");
    if (data && window.GalaxyCharts) setUpResult(data);
  });
})();
