// A run's page as a live monitor. The first paint comes from ONE snapshot
// (/runs/<id>/live.json: downsampled series and averages, KPI figures, the agents'
// latest accounts and decisions, the last 500 trades, and `stream_cursor`, read before
// all of them); everything after it comes over the run's event stream (live_feed.js),
// started from that cursor. Stream points whose step the page already holds, and events
// whose seq it already holds, are repeats of the snapshot and dropped. Nothing is polled:
// a request is made again only when a person picks another window (smoothing, win rate),
// and once when the run ends (its final statistics and saved model's metrics).
// Needs charts.js, live_feed.js, live_charts.js, live_cards.js.
(function () {
  "use strict";
  var MAX_POINTS = 1000;
  var SMOOTH_KEY = "gm-history-smooth";
  var PAGE_CHECKPOINTS = 20, PAGE_EVENTS = 50;
  var TERMINAL = ["completed", "stopped", "failed"];
  var ACTIVE = ["starting", "running", "paused"];

  function byId(id) { return document.getElementById(id); }
  function show(node, visible) { if (node) node.hidden = !visible; }
  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "—"; }
  function isoOf(wall) { return new Date(wall * 1000).toISOString(); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function initRun(root) {
    var Cards = GalaxyLiveCards, Charts = GalaxyLiveCharts;
    var smoothing = byId("smoothing"), winWindow = byId("win-window");
    var store = Charts.store();
    var charts = {};
    var kpis = {};
    var agents = {}, decisions = {};
    var trades = Cards.trades();
    var feed = null;
    var loading = false, buffered = null;   // stream messages held while a snapshot loads
    var run = {status: root.dataset.status, control: null, lossKeys: [],
               supervised: root.dataset.supervised === "true"};
    var progress = null, loadedAt = Date.now();
    var eventSeq = 0, checkpointSeq = 0;
    var dirty = {}, frame = null;
    var finalDone = false;

    try {
      var saved = localStorage.getItem(SMOOTH_KEY);
      if (saved && smoothing.querySelector('option[value="' + saved + '"]')) smoothing.value = saved;
    } catch (e) { /* storage disabled */ }

    // ------------------------------------------------------------- charts

    function draw(id, spec) {
      var box = byId("box-" + id), canvas = byId("chart-" + id);
      var empty = box && box.querySelector(".chart-empty");
      if (!spec) {
        if (charts[id]) { charts[id].destroy(); delete charts[id]; }
        if (id === "accuracy") { show(box, false); return; }
        if (box) box.classList.add("no-data");
        if (empty) empty.textContent = "No data: " + (box.dataset.emptyText || "nothing logged") + ".";
        return;
      }
      show(box, true);
      if (box) box.classList.remove("no-data");
      // A line of one or two points draws nothing without markers (a run's first update).
      spec.sets.forEach(function (d) { d.pointRadius = d.data.length < 3 ? 3 : 0; });
      var chart = charts[id];
      var same = chart && chart.data.datasets.length === spec.sets.length &&
        chart.data.datasets.every(function (d, i) { return d.label === spec.sets[i].label; }) &&
        chart.options.scales.y.type === (spec.options.scales.y.type || "linear");
      if (same) {
        spec.sets.forEach(function (d, i) {
          chart.data.datasets[i].data = d.data;
          chart.data.datasets[i].pointRadius = d.pointRadius;
        });
        chart.update("none");
        return;
      }
      if (chart) chart.destroy();
      if (!spec.options.scales.y.type) spec.options.scales.y.type = "linear";
      charts[id] = GalaxyCharts.line(canvas, [], spec.sets, spec.options);
    }

    function drawExtras() {
      var keys = Charts.extraKeys(store, lossKey()), container = byId("extra-charts");
      show(byId("more-charts"), keys.length > 0);
      keys.forEach(function (key, i) {
        var canvas = container.querySelector('canvas[data-key="' + key + '"]');
        if (!canvas) {
          var fig = el("figure", "chart-box");
          fig.appendChild(el("figcaption", "", key));
          var wrap = el("div", "chart-wrap");
          canvas = el("canvas");
          canvas.setAttribute("data-key", key);
          canvas.setAttribute("aria-label", key + " chart");
          wrap.appendChild(canvas);
          fig.appendChild(wrap);
          container.appendChild(fig);
        }
        var id = "extra:" + key;
        var x = key.indexOf("agents/") === 0 ? "env step" : key.indexOf("episode/") === 0 ? "episode"
              : run.supervised ? "epoch" : "update";
        var spec = {sets: [Charts.line(key.slice(key.indexOf("/") + 1).replace(/_/g, " "),
                                       store.raw[key], GalaxyCharts.color(i + 1), 1.5)],
                    options: Charts.options(x, null, [], false)};
        var chart = charts[id];
        if (chart) { chart.data.datasets[0].data = spec.sets[0].data; chart.update("none"); }
        else charts[id] = GalaxyCharts.line(canvas, [], spec.sets, spec.options);
      });
    }

    // The loss plot's key: the snapshot's, else the first of the server's candidates
    // that has come over the stream since (a page opened before the first update).
    function lossKey() {
      return run.lossKey || run.lossKeys.filter(function (k) { return store.keys.indexOf(k) >= 0; })[0] || null;
    }

    var PLOTS = ["reward", "loss", "entropy", "lr", "winrate", "sharpe", "drawdown", "value", "equity", "accuracy"];

    function drawAll() {
      var plots = Charts.plots({store: store, supervised: run.supervised, lossKey: lossKey()});
      PLOTS.forEach(function (id) { draw(id, plots[id]()); });
      drawExtras();
      var total = Object.keys(store.raw).reduce(function (n, k) { return n + store.raw[k].length; }, 0);
      byId("charts-points").textContent = total ? total.toLocaleString("en-US") + " points drawn" : "";
      show(byId("charts-empty"), store.keys.length === 0);
      byId("charts-empty").textContent = isActive()
        ? "No metrics logged yet — plots appear with the first episode or epoch."
        : "This run logged no metrics.";
    }

    // Redraws coalesce to one per animation frame (a burst of messages draws once).
    function redraw(what) {
      dirty[what] = true;
      if (frame) return;
      frame = requestAnimationFrame(function () {
        frame = null;
        var todo = dirty;
        dirty = {};
        if (todo.charts) drawAll();
        if (todo.kpis) Cards.renderKpis(kpis, store, run);
        if (todo.agents) Cards.renderAgents(agents);
        if (todo.decisions) Cards.renderDecision(decisions);
        if (todo.trades) trades.render();
        byId("live-updated").textContent = "updated " + new Date().toLocaleTimeString();
      });
    }

    // ------------------------------------------------------------- status

    function isActive() { return ACTIVE.indexOf(run.status) >= 0; }

    // The state shown: the store's status, or "stopping" while a stop waits for the trainer.
    function shownState() {
      return isActive() && run.control === "stop" ? "stopping" : run.status;
    }

    function renderStatus() {
      ["run-status", "run-status-badge"].forEach(function (id) {
        var badge = byId(id);
        badge.className = "badge " + run.status;
        badge.textContent = run.status;
      });
      root.dataset.status = run.status;
      root.dataset.active = isActive() ? "true" : "false";
      var state = shownState();
      root.dataset.state = state;
      document.querySelectorAll("#state-machine li").forEach(function (li) {
        li.classList.toggle("current", li.dataset.state === state);
      });
      show(byId("live-note"), isActive());
      show(byId("run-progress"), isActive() && Boolean(progress));
      document.dispatchEvent(new CustomEvent("gm-run-state", {detail: {status: run.status, control: run.control, state: state}}));
    }

    function renderProgress() {
      if (!progress) return;
      byId("progress-done").textContent = progress.done_text;
      byId("progress-percent").textContent = progress.percent_text || "";
      byId("progress-left").textContent = progress.left_text;
      var fill = byId("progress-fill");
      fill.style.width = (progress.percent || 0) + "%";
      if (progress.percent !== null) fill.parentElement.setAttribute("aria-valuenow", progress.percent.toFixed(1));
    }

    // The done count from the stream's train/global_step; the time left from its rate.
    function advanceProgress(points) {
      var list = points["train/global_step"];
      if (!progress || !list || !list.length) return;
      var p = list[list.length - 1];
      if (!(typeof p.value === "number")) return;
      // The rate between stream points (the trainer's clock on both ends).
      var first = progress.rateFrom || (progress.rateFrom = {done: p.value, at: p.wall_time});
      progress.done = p.value;
      var unit = progress.unit + "s", total = progress.total;
      var done = Math.round(p.value).toLocaleString("en-US");
      progress.done_text = total ? done + " / " + total.toLocaleString("en-US") + " " + unit : done + " " + unit;
      progress.percent = total ? Math.min(100, 100 * p.value / total) : null;
      progress.percent_text = progress.percent === null ? "" : progress.percent.toFixed(1) + "%";
      var rate = (p.value - first.done) / (p.wall_time - first.at);
      if (run.status === "running" && total && rate > 0) {
        var left = (total - p.value) / rate;
        progress.left_text = left < 1 ? "almost done" : "about " + Cards.span(left);
      }
      renderProgress();
    }

    // Elapsed time ticks locally once a second while the run is active (no request).
    function tick() {
      if (!progress) return;
      var card = document.querySelector('.kpi[data-kpi="elapsed"] .kpi-value');
      if (!isActive()) {  // ended: the run's whole duration, as the snapshot says
        if (card) card.textContent = Cards.span(progress.elapsed_seconds);
        return;
      }
      var elapsed = (progress.elapsed_seconds || 0) + (Date.now() - loadedAt) / 1000;
      var text = Cards.span(elapsed);
      byId("progress-elapsed").textContent = text;
      byId("run-duration").textContent = text + " so far";
      if (card) card.textContent = text;
    }

    // ---------------------------------------------------- tables (static parts)

    function renderStats(stats) {
      var grid = byId("stats-grid");
      grid.replaceChildren.apply(grid, stats.map(function (s) {
        var cell = el("div", "stat");
        cell.appendChild(el("span", "stat-label", s.label));
        cell.appendChild(el("span", "stat-value", s.text));
        if (s.note) cell.appendChild(el("span", "stat-note", s.note));
        cell.dataset.key = s.key;
        return cell;
      }));
      show(byId("stats-empty"), stats.length === 0);
    }

    function renderSummary(rows) {
      var box = byId("summary-items");
      show(byId("run-summary"), rows.length > 0);
      box.replaceChildren.apply(box, rows.map(function (r) {
        var item = el("span", "metric", r.key + " ");
        item.appendChild(el("b", "", r.text));
        item.dataset.key = r.key;
        return item;
      }));
    }

    function renderModel(r) {
      var cell = byId("run-model");
      if (!cell || !r.model_dir_name || cell.querySelector("a")) return;
      var link = el("a");
      link.href = "/models/" + encodeURIComponent(r.model_dir_name);
      link.title = r.model_dir || "";
      link.appendChild(el("code", "", r.model_dir_name));
      cell.replaceChildren(link);
    }

    function checkpointRow(c) {
      var row = el("tr");
      row.dataset.seq = c.seq;
      var cnt = function (n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); };
      row.appendChild(el("td", "num", cnt(c.episode)));
      row.appendChild(el("td", "num", cnt(c.step)));
      var path = el("td");
      var code = el("code", "", c.path);
      code.title = c.path;
      path.appendChild(code);
      if (c.resume) path.appendChild(resumeMark());
      row.appendChild(path);
      row.appendChild(el("td", "nowrap", when(c.time)));
      return row;
    }

    // The newest checkpoint on disk: the one --resume continues from.
    function resumeMark() {
      var mark = el("span", "badge resume-mark", "--resume uses this");
      mark.title = "Resume from checkpoint (and run_training.py --resume <run id>) continues from this file";
      return mark;
    }

    function renderCheckpoints(list, total) {
      var body = byId("checkpoint-rows");
      body.replaceChildren.apply(body, list.map(checkpointRow));
      setCheckpointCount(total, list.length);
    }

    function setCheckpointCount(total, listed) {
      byId("checkpoint-count").textContent = total.toLocaleString("en-US");
      byId("checkpoints-shown").textContent = total > listed ? "the newest " + listed + " on disk" : "";
      show(byId("checkpoint-rows").parentElement, listed > 0);
      show(byId("checkpoints-empty"), listed === 0);
    }

    function addCheckpoint(message) {
      if (message.seq <= checkpointSeq) return;
      checkpointSeq = message.seq;
      var d = message.data || {};
      var body = byId("checkpoint-rows");
      body.querySelectorAll(".resume-mark").forEach(function (m) { m.remove(); });
      body.appendChild(checkpointRow({seq: message.seq, episode: d.episode, step: d.step, resume: true,
                                      path: String(d.path || ""), time: isoOf(message.wall_time)}));
      // The trainer keeps only its newest d.keep files: older rows name deleted files.
      var limit = d.keep > 0 ? Math.min(d.keep, PAGE_CHECKPOINTS) : PAGE_CHECKPOINTS;
      while (body.children.length > limit) body.removeChild(body.firstChild);
      var total = Number(byId("checkpoint-count").textContent.replace(/,/g, "")) + 1;
      setCheckpointCount(total, body.children.length);
    }

    function eventItem(e) {
      var item = el("li", "event " + e.level);
      item.appendChild(el("span", "muted", when(e.time)));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("b", "", e.title || e.kind));
      item.appendChild(document.createTextNode(" " + (e.message || "")));
      return item;
    }

    function renderEvents(list) {
      var ul = byId("event-rows");
      ul.replaceChildren.apply(ul, list.map(eventItem));
      show(byId("events"), list.length > 0);
    }

    function addEvent(kind, message) {
      if (message.seq <= eventSeq) return;
      eventSeq = message.seq;
      var d = message.data || {};
      var ul = byId("event-rows");
      ul.appendChild(eventItem({kind: kind, level: String(d.level || "info"), title: String(d.title || ""),
                                message: String(d.message || ""), time: isoOf(message.wall_time)}));
      while (ul.children.length > PAGE_EVENTS) ul.removeChild(ul.firstChild);
      show(byId("events"), true);
    }

    // ------------------------------------------------------------- snapshot

    function snapshotUrl() {
      return root.dataset.liveUrl + "?smooth=" + encodeURIComponent(smoothing.value) +
        "&win_window=" + encodeURIComponent(winWindow.value) + "&max_points=" + MAX_POINTS;
    }

    function applySnapshot(reply) {
      var m = reply.monitor || {};
      store.load(reply);
      run.status = reply.run.status;
      run.control = reply.run.control || null;
      run.supervised = Boolean(reply.run.supervised);
      run.lossKey = m.loss_key || null;
      run.lossKeys = m.loss_keys || [];
      root.dataset.supervised = run.supervised ? "true" : "false";
      progress = reply.run.progress ? Object.assign({}, reply.run.progress) : null;
      loadedAt = Date.now();
      kpis = m.kpis || {};
      agents = {}; decisions = {};
      (m.agents || []).forEach(function (a) { agents[a.data.agent] = Object.assign({seq: a.seq}, a.data); });
      (m.decisions || []).forEach(function (d) { decisions[d.data.agent] = d; });
      trades.reset();
      trades.add(m.trades || []);
      renderStats(reply.statistics);
      renderSummary(reply.run.summary_rows || []);
      renderModel(reply.run);
      byId("run-ended").textContent = reply.run.display.end_time;
      byId("run-duration").textContent = reply.run.display.duration;
      byId("run-heartbeat").textContent = reply.run.display.heartbeat;
      show(byId("run-error"), Boolean(reply.run.error));
      byId("run-error-text").textContent = reply.run.error || "";
      show(byId("resume-form"), reply.run.resumable);
      renderCheckpoints(reply.checkpoints, reply.checkpoint_count);
      checkpointSeq = Math.max.apply(null, [0].concat(reply.checkpoints.map(function (c) { return c.seq; })));
      renderEvents(reply.events);
      eventSeq = Math.max.apply(null, [0].concat(reply.events.map(function (e) { return e.seq; })));
      renderStatus();
      renderProgress();
      tick();
      ["charts", "kpis", "agents", "decisions", "trades"].forEach(redraw);
    }

    // One snapshot; stream messages that arrive meanwhile wait and are applied after it.
    function loadSnapshot() {
      loading = true;
      buffered = buffered || [];
      return fetch(snapshotUrl(), {headers: {Accept: "application/json"}, cache: "no-store"})
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
            return body;
          });
        })
        .then(function (reply) {
          applySnapshot(reply);
          show(byId("charts-error"), false);
          var held = buffered;
          loading = false;
          buffered = null;
          held.forEach(function (m) { onMessage(m[0], m[1]); });
          return reply;
        })
        .catch(function (error) {
          loading = false;
          var box = byId("charts-error");
          box.textContent = "Could not load this run: " + error.message;
          show(box, true);
          throw error;
        });
    }

    // ------------------------------------------------------------- the stream

    function onMessage(type, body) {
      if (loading) { buffered.push([type, body]); return; }
      root.dataset.messages = String(Number(root.dataset.messages || 0) + 1);
      if (type === "training_metrics") {
        var changed = store.append(body.points);
        if (changed.length) {
          Cards.updateKpis(kpis, body.points, run.supervised);
          advanceProgress(body.points);
          redraw("charts");
          redraw("kpis");
        }
      } else if (type === "account") {
        var a = body.data || {};
        var old = agents[a.agent];
        if (typeof a.agent === "number" && a.agent < 4 && (!old || body.seq > old.seq)) {
          agents[a.agent] = Object.assign({seq: body.seq}, a);
          redraw("agents");
        }
      } else if (type === "bot_decision") {
        var d = body.data || {};
        var prev = decisions[d.agent];
        if (typeof d.agent === "number" && (!prev || body.seq > prev.seq)) {
          decisions[d.agent] = body;
          redraw("decisions");
        }
      } else if (type === "trade") {
        if (trades.add([body])) redraw("trades");
      } else if (type === "checkpoint") {
        addCheckpoint(body);
      } else if (type === "alert" || type === "log") {
        addEvent(type, body);
      } else if (type === "training_status") {
        var s = (body.data || {}).status;
        if (s) {
          run.status = s;
          if (TERMINAL.indexOf(s) >= 0 || s === "paused" || s === "running") run.control = null;
          if (body.data.error) { byId("run-error-text").textContent = body.data.error; show(byId("run-error"), true); }
          renderStatus();
        }
      } else if (type === "connection_status") {
        if (body.status && body.status !== run.status) { run.status = body.status; renderStatus(); }
      } else if (type === "end") {
        if (TERMINAL.indexOf(body.status) >= 0) finish();  // else: the stream reconnects
      }
    }

    function setStreamState(state) {
      root.dataset.stream = state;
      var label = byId("stream-state");
      label.dataset.state = state;
      label.textContent = {connecting: "connecting…", live: "streaming", reconnecting: "reconnecting…",
                           ended: "run ended", closed: "closed"}[state] || state;
    }

    // The run ended: one more snapshot for what the trainer wrote last (final statistics,
    // the saved model's metrics, the model folder); then nothing more is asked.
    function finish() {
      if (finalDone) return;
      finalDone = true;
      if (feed) feed.close();
      loadSnapshot().then(function () {
        clearTransientNotes();
        root.dataset.finished = "true";
      }, function () { /* shown in charts-error */ });
    }

    function clearTransientNotes() {
      var note = byId("control-note");
      if (note) note.textContent = "";
      show(byId("live-note"), false);
      show(byId("run-progress"), false);
      byId("stats-empty").textContent = "No metrics logged.";
      byId("checkpoints-empty").textContent = "No checkpoints saved.";
      var model = byId("run-model");
      var pending = model && model.querySelector(".muted");
      if (pending) pending.textContent = "— (no model saved)";
    }

    function start(reply) {
      if (TERMINAL.indexOf(reply.run.status) >= 0) {  // finished: nothing will come
        finalDone = true;
        setStreamState("ended");
        root.dataset.finished = "true";
        clearTransientNotes();
        return;
      }
      feed = GalaxyLiveFeed.open({url: root.dataset.streamUrl, cursor: reply.stream_cursor,
                                  onMessage: onMessage, onState: setStreamState});
    }

    // A person picks another window: a new snapshot of the averages (the stream goes on).
    function rewindow() {
      try { localStorage.setItem(SMOOTH_KEY, smoothing.value); } catch (e) { /* ignore */ }
      loadSnapshot().catch(function () { /* shown */ });
    }
    smoothing.addEventListener("change", rewindow);
    winWindow.addEventListener("change", rewindow);

    // A new theme: rebuild the charts so their series take its colours.
    document.addEventListener("gm-theme", function () {
      Object.keys(charts).forEach(function (id) { charts[id].destroy(); delete charts[id]; });
      drawAll();
    });

    // run_controls.js tells what the page asked the trainer (a stop shows "stopping").
    document.addEventListener("gm-control-sent", function (event) {
      run.control = event.detail.action;
      renderStatus();
    });

    setInterval(tick, 1000);
    setStreamState("connecting");
    loadSnapshot().then(start, function () { setStreamState("closed"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = byId("run-page");
    if (root && window.GalaxyCharts && window.GalaxyLiveFeed) initRun(root);
  });
})();
