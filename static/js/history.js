// Training history pages. The list: filters apply as soon as a select changes. A run
// page: draws its charts from /runs/<id>/live.json and, while the run is running or
// paused, polls it every 2 s (less often when answers are slow), updating progress,
// charts, statistics and status in place. Polls after the first send the reply's cursor
// (live.json?after=<cursor>) and get only what came after it: new points are appended to
// the charts, each average's tail replaced from its "from" step, new checkpoints and
// events added to the (bounded) tables. A snapshot is asked for again when the smoothing
// changes, a new metric appears, or a series grows past twice the points a chart needs.
// When the run ends, one more poll picks up what the trainer wrote last (final
// statistics, the saved model's metrics), the notes that only made sense while it ran
// are cleared, and polling stops. Needs charts.js (and Chart.js) on run pages.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var MAX_RETRY_MS = 15000;
  var MAX_POINTS = 1000;
  var SMOOTH_KEY = "gm-history-smooth";

  // ---------------------------------------------------------------- list page

  function initFilters(form) {
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () {
        // Empty and default choices are left out of the URL; a new filter starts at page 1.
        form.querySelectorAll("select").forEach(function (s) {
          s.disabled = !s.value || s.value === s.dataset.default;
        });
        form.submit();
      });
    });
  }

  // ----------------------------------------------------------------- run page

  function byId(id) { return document.getElementById(id); }

  // <tag class=className>text, ...children</tag>, built without parsing HTML.
  function element(tag, className, text, children) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  function show(element, visible) {
    if (element) element.hidden = !visible;
  }

  // '2026-11-21 09:33:30 UTC' like the server's `when` filter.
  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "—"; }

  function count(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }

  function alpha(colour, opacity) {
    var hex = /^#([0-9a-f]{6})$/i.exec(colour);
    if (!hex) return colour;
    var n = parseInt(hex[1], 16);
    return "rgba(" + [(n >> 16) & 255, (n >> 8) & 255, n & 255, opacity].join(",") + ")";
  }

  function points(series, scale) {
    return (series || []).map(function (p) {
      return {x: p.step, y: p.value === null ? null : p.value * (scale || 1)};
    });
  }

  function shortKey(key) { return key.slice(key.indexOf("/") + 1).replace(/_/g, " "); }

  function initRun(root) {
    var smoothing = byId("smoothing");
    var charts = {};
    var last = null;            // the page's data: the last snapshot with every delta applied
    var cursor = null;          // where the feed stands; null asks for a snapshot
    var timer = null;
    var inFlight = false;
    var again = false;
    var failures = 0;
    var active = root.dataset.active === "true";

    try {
      var saved = localStorage.getItem(SMOOTH_KEY);
      if (saved && smoothing.querySelector('option[value="' + saved + '"]')) smoothing.value = saved;
    } catch (e) { /* storage disabled */ }

    // Known from the model type before the first metric: XGBoost/Transformer count epochs.
    function xTitle(key) {
      if (key.indexOf("episode/") === 0) return "episode";
      return root.dataset.supervised === "true" ? "epoch" : "update";
    }

    function options(xLabel, yOptions, extraScales) {
      var scales = {
        x: {type: "linear", title: {display: true, text: xLabel},
            ticks: {maxTicksLimit: 8, precision: 0}},
        y: Object.assign({}, yOptions || {},
                         {ticks: Object.assign({maxTicksLimit: 6}, (yOptions || {}).ticks)})
      };
      return {
        scales: Object.assign(scales, extraScales || {}),
        interaction: {mode: "nearest", axis: "x", intersect: false},
        plugins: {legend: {labels: {boxWidth: 12}},
                  tooltip: {callbacks: {title: function (items) {
                    return items.length ? xLabel + " " + count(items[0].parsed.x) : "";
                  }}}},
        normalized: true,
        spanGaps: true
      };
    }

    // Create the chart, or update it in place when it has the same datasets.
    function draw(id, canvas, datasets, chartOptions) {
      var chart = charts[id];
      if (chart && chart.data.datasets.length === datasets.length &&
          chart.data.datasets.every(function (d, i) { return d.label === datasets[i].label; })) {
        datasets.forEach(function (d, i) { chart.data.datasets[i].data = d.data; });
        chart.update("none");
        return;
      }
      if (chart) chart.destroy();
      charts[id] = GalaxyCharts.line(canvas, [], datasets, chartOptions);
    }

    function drop(id) {
      if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    }

    function drawReward(data) {
      var raw = data.series["episode/reward"] || [];
      show(byId("box-reward"), raw.length > 0);
      show(byId("smoothing-control"), raw.length > 0);
      if (!raw.length) { drop("reward"); return; }
      var smooth = Number(data.smooth);
      var accent = GalaxyCharts.color(0);
      var datasets = [{label: "reward", data: points(raw),
                       color: smooth > 1 ? alpha(accent, 0.3) : accent, borderWidth: 1}];
      if (smooth > 1) {
        datasets.push({label: "moving average (" + smooth + ")",
                       data: points(data.smoothed["episode/reward"]),
                       color: GalaxyCharts.color(1), borderWidth: 2});
      }
      draw("reward", byId("chart-reward"), datasets, options("episode"));
    }

    function drawWinRate(data) {
      var rate = data.smoothed["episode/win"] || [];
      show(byId("box-winrate"), rate.length > 0);
      if (!rate.length) { drop("winrate"); return; }
      draw("winrate", byId("chart-winrate"),
           [{label: "win rate %", data: points(rate, 100), color: GalaxyCharts.color(2),
             borderWidth: 2}],
           options("episode", {min: 0, max: 100, ticks: {callback: function (v) { return v + "%"; }}}));
    }

    function lossKeys(keys) {
      var losses = keys.filter(function (k) { return k.indexOf("train/") === 0 && /loss$/.test(k); });
      if (losses.indexOf("train/train_loss") >= 0) {  // train/loss repeats train_loss
        losses = losses.filter(function (k) { return k !== "train/loss"; });
      }
      return losses;
    }

    function accuracyKeys(keys) {
      return keys.filter(function (k) { return k.indexOf("train/") === 0 && /accuracy$/.test(k); });
    }

    function drawGroup(id, keys, data, scale, yOptions) {
      var box = byId("box-" + id);
      var withData = keys.filter(function (k) { return (data.series[k] || []).length; });
      show(box, withData.length > 0);
      if (!withData.length) { drop(id); return; }
      // The value loss of PPO is often 10-100x the policy loss: it gets the right axis.
      var twoAxes = withData.indexOf("train/value_loss") >= 0 && withData.length > 1;
      var datasets = withData.map(function (k, i) {
        var set = {label: shortKey(k), data: points(data.series[k], scale),
                   color: GalaxyCharts.color(i), borderWidth: 1.5};
        if (twoAxes && k === "train/value_loss") set.yAxisID = "y1";
        return set;
      });
      var extra = twoAxes ? {y1: {position: "right", grid: {drawOnChartArea: false},
                                  title: {display: true, text: "value loss"}}} : null;
      draw(id, byId("chart-" + id), datasets, options(xTitle(withData[0]), yOptions, extra));
    }

    function drawExtras(data, used) {
      var container = byId("extra-charts");
      var keys = data.keys.filter(function (k) {
        return used.indexOf(k) < 0 && k !== "episode/terminated" && (data.series[k] || []).length;
      });
      show(byId("more-charts"), keys.length > 0);
      keys.forEach(function (key, i) {
        var id = "extra:" + key;
        var canvas = container.querySelector('canvas[data-key="' + key + '"]');
        if (!canvas) {
          var figure = document.createElement("figure");
          figure.className = "chart-box";
          var caption = document.createElement("figcaption");
          caption.textContent = key;
          var wrap = document.createElement("div");
          wrap.className = "chart-wrap";
          canvas = document.createElement("canvas");
          canvas.setAttribute("data-key", key);
          canvas.setAttribute("aria-label", key + " chart");
          wrap.appendChild(canvas);
          figure.appendChild(caption);
          figure.appendChild(wrap);
          container.appendChild(figure);
        }
        draw(id, canvas, [{label: shortKey(key), data: points(data.series[key]),
                           color: GalaxyCharts.color(i + 1), borderWidth: 1.5}],
             Object.assign(options(xTitle(key)), {plugins: {legend: {display: false}}}));
      });
    }

    function drawCharts(data) {
      var losses = lossKeys(data.keys);
      var accuracy = accuracyKeys(data.keys);
      drawReward(data);
      drawWinRate(data);
      drawGroup("loss", losses, data, 1);
      drawGroup("accuracy", accuracy, data, 100,
                {ticks: {callback: function (v) { return v + "%"; }}});
      var used = ["episode/reward", "episode/win", "train/loss"].concat(losses, accuracy);
      drawExtras(data, used);
      show(byId("charts-empty"), data.keys.length === 0);
      byId("charts-empty").textContent = active
        ? "No metrics logged yet — charts appear with the first episode or epoch."
        : "This run logged no metrics.";
    }

    function renderStatus(run) {
      ["run-status", "run-status-badge"].forEach(function (id) {
        var badge = byId(id);
        badge.className = "badge " + run.status;
        badge.textContent = run.status;
      });
      root.dataset.status = run.status;
      root.dataset.active = run.active ? "true" : "false";
      root.dataset.supervised = run.supervised ? "true" : "false";
      root.dataset.resumable = run.resumable ? "true" : "false";
      byId("run-ended").textContent = run.display.end_time;
      byId("run-duration").textContent = run.display.duration;
      byId("run-heartbeat").textContent = run.display.heartbeat;
      show(byId("run-error"), Boolean(run.error));
      byId("run-error-text").textContent = run.error || "";
      show(byId("live-note"), run.active);
      show(byId("resume-form"), run.resumable);
      renderProgress(run);
      renderModel(run);
      renderSummary(run.summary_rows || []);
    }

    // Done / total, elapsed and time left while the run is live.
    function renderProgress(run) {
      var p = run.progress;
      show(byId("run-progress"), run.active && Boolean(p));
      if (!p) return;
      byId("progress-done").textContent = p.done_text;
      byId("progress-percent").textContent = p.percent_text;
      byId("progress-elapsed").textContent = p.elapsed_text;
      byId("progress-left").textContent = p.left_text;
      var fill = byId("progress-fill");
      fill.style.width = (p.percent || 0) + "%";
      if (p.percent !== null) fill.parentElement.setAttribute("aria-valuenow", p.percent.toFixed(1));
    }

    // The saved model's metrics, written by the trainer as the run completes.
    function renderSummary(rows) {
      var box = byId("summary-items");
      show(byId("run-summary"), rows.length > 0);
      box.replaceChildren.apply(box, rows.map(function (r) {
        var item = element("span", "metric", r.key + " ", [element("b", "", r.text)]);
        item.dataset.key = r.key;
        return item;
      }));
    }

    // Notes that describe a run in flight ("yet", "asking the trainer…") end with it.
    function clearTransientNotes() {
      var note = byId("control-note");
      if (note) note.textContent = "";
      show(byId("charts-error"), false);
      byId("stats-empty").textContent = "No metrics logged.";
      byId("checkpoints-empty").textContent = "No checkpoints saved.";
      var model = byId("run-model");
      var pending = model && model.querySelector(".muted");
      if (pending) pending.textContent = "— (no model saved)";
    }

    // The model folder appears when the run saves its model (as it completes).
    function renderModel(run) {
      var cell = byId("run-model");
      if (!cell || !run.model_dir_name || cell.querySelector("a")) return;
      var link = document.createElement("a");
      link.href = "/models/" + encodeURIComponent(run.model_dir_name);
      link.title = run.model_dir || "";
      var code = document.createElement("code");
      code.textContent = run.model_dir_name;
      link.appendChild(code);
      cell.replaceChildren(link);
    }

    function renderStats(stats) {
      var grid = byId("stats-grid");
      grid.replaceChildren.apply(grid, stats.map(function (s) {
        var cell = element("div", "stat", "", [
          element("span", "stat-label", s.label), element("span", "stat-value", s.text)]);
        if (s.note) cell.appendChild(element("span", "stat-note", s.note));
        cell.dataset.key = s.key;
        return cell;
      }));
      show(byId("stats-empty"), stats.length === 0);
    }

    function cell(row, text, className) {
      var td = document.createElement("td");
      if (className) td.className = className;
      td.textContent = text;
      row.appendChild(td);
      return td;
    }

    // The latest checkpoints (the page lists a bounded number; the count is all of them).
    function renderCheckpoints(checkpoints, total) {
      var body = byId("checkpoint-rows");
      byId("checkpoint-count").textContent = count(total);
      var note = byId("checkpoints-shown");
      note.textContent = total > checkpoints.length ? "latest " + checkpoints.length + " shown" : "";
      show(body.parentElement, checkpoints.length > 0);
      show(byId("checkpoints-empty"), checkpoints.length === 0);
      var seqs = checkpoints.map(function (c) { return c.seq; }).join(",");
      if (body.dataset.seqs === seqs) return;
      body.dataset.seqs = seqs;
      body.textContent = "";
      checkpoints.forEach(function (c) {
        var row = document.createElement("tr");
        cell(row, count(c.episode), "num");
        cell(row, count(c.step), "num");
        var path = cell(row, "");
        var code = document.createElement("code");
        code.textContent = c.path;
        code.title = c.path;
        path.appendChild(code);
        cell(row, when(c.time), "nowrap");
        body.appendChild(row);
      });
    }

    function renderEvents(events) {
      var list = byId("event-rows");
      show(byId("events"), events.length > 0);
      list.replaceChildren.apply(list, events.map(function (e) {
        var item = element("li", "event " + e.level, "", [
          element("span", "muted", when(e.time)), document.createTextNode(" "),
          element("b", "", e.title || e.kind)]);
        item.appendChild(document.createTextNode(" " + e.message));
        return item;
      }));
    }

    // A delta reply on the page's data: points appended, averages' tails replaced,
    // tables extended and cut to what the page lists; the rest replaced.
    function merge(data, reply) {
      Object.keys(reply.series).forEach(function (key) {
        data.series[key] = (data.series[key] || []).concat(reply.series[key]);
      });
      Object.keys(reply.smoothed).forEach(function (key) {
        var tail = reply.smoothed[key];
        var kept = (data.smoothed[key] || []).filter(function (p) {
          return tail.from === null || p.step < tail.from;
        });
        data.smoothed[key] = kept.concat(tail.points);
      });
      data.checkpoints = data.checkpoints.concat(reply.checkpoints).slice(-reply.page_checkpoints);
      data.events = data.events.concat(reply.events).slice(-reply.page_events);
      ["run", "keys", "smooth", "statistics", "checkpoint_count", "cursor"].forEach(function (k) {
        data[k] = reply[k];
      });
      return data;
    }

    // Whether the next poll must ask for a snapshot: a metric the page has no history of,
    // or a series grown past what a chart needs (a snapshot thins it again).
    function needsSnapshot(data, reply) {
      var grown = Object.keys(data.series).concat(Object.keys(data.smoothed)).some(function (k) {
        return (data.series[k] || []).length > 2 * MAX_POINTS ||
               (data.smoothed[k] || []).length > 2 * MAX_POINTS;
      });
      return grown || reply.keys.some(function (k) { return last.keys.indexOf(k) < 0; });
    }

    function render(reply) {
      var ended = active && !reply.run.active;
      var snapshotNext = reply.mode === "delta" && needsSnapshot(last, reply);
      var data = reply.mode === "delta" ? merge(last, reply) : reply;
      last = data;
      cursor = snapshotNext ? null : data.cursor;
      // Asked with another smoothing than the select shows now: its averages are stale.
      if (String(reply.smooth) !== smoothing.value) cursor = null;
      active = data.run.active;
      renderStatus(data.run);
      if (!active) clearTransientNotes();
      renderStats(data.statistics);
      renderCheckpoints(data.checkpoints, data.checkpoint_count);
      renderEvents(data.events);
      drawCharts(data);
      root.dataset.feed = reply.mode;  // for people and tests to see
      show(byId("charts-error"), false);
      byId("live-updated").textContent = "Updated " + new Date().toLocaleTimeString();
      return ended;
    }

    function showError(message) {
      var box = byId("charts-error");
      box.textContent = "Could not refresh this run: " + message +
        (active ? " — retrying." : "");
      show(box, true);
    }

    // finalPoll: once more after the run ended, for what the trainer wrote last.
    function schedule(delay, finalPoll) {
      clearTimeout(timer);
      var next = active || Boolean(finalPoll);
      timer = next ? setTimeout(load, delay) : null;
      root.dataset.polling = next ? "true" : "false";  // for people and tests to see
    }

    function load() {
      if (inFlight) { again = true; return; }
      inFlight = true;
      clearTimeout(timer);
      var url = root.dataset.liveUrl + "?smooth=" + encodeURIComponent(smoothing.value) +
                "&max_points=" + MAX_POINTS + (cursor ? "&after=" + cursor : "");
      var started = Date.now();
      fetch(url, {headers: {Accept: "application/json"}, cache: "no-store"})
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            if (response.status === 404) active = false;  // deleted meanwhile: stop asking
            if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
            return body;
          });
        })
        .then(function (data) {
          failures = 0;
          var ended = render(data);
          // A very long run takes the server a while to summarise: never ask more
          // often than three times the time the last answer took.
          schedule(Math.max(POLL_MS, 3 * (Date.now() - started)), ended);
        })
        .catch(function (error) {
          failures += 1;
          cursor = null;  // whatever went wrong, the next answer starts from a snapshot
          showError(error.message);
          schedule(Math.min(MAX_RETRY_MS, POLL_MS * Math.pow(2, failures)));
          show(byId("live-note"), active);
        })
        .then(function () {
          inFlight = false;
          if (again) { again = false; load(); }
        });
    }

    smoothing.addEventListener("change", function () {
      try { localStorage.setItem(SMOOTH_KEY, smoothing.value); } catch (e) { /* ignore */ }
      cursor = null;  // the averages' tails follow the window they were drawn with
      load();
    });

    // theme.js switches the theme on the button itself, before this document listener:
    // rebuild the charts so their series take the new theme's colours.
    document.addEventListener("click", function (event) {
      if (!event.target || event.target.id !== "theme-toggle" || !last) return;
      Object.keys(charts).forEach(drop);
      drawCharts(last);
    });

    load();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = byId("run-filters");
    if (form) initFilters(form);
    var root = byId("run-page");
    if (root && window.GalaxyCharts) initRun(root);
  });
})();
