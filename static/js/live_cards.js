// The run page's cards and tables: KPI cards with their green / yellow / red rules (the
// same rules are written on the page, templates/history/live_monitor.html), agent cards
// from `account` events, the decision panel from `bot_decision` events and the recent
// trades (the last 500, newest first, filtered by agent) from `trade` events.
window.GalaxyLiveCards = (function () {
  "use strict";
  var TRADES = 500;
  var AGENTS = 4;

  function byId(id) { return document.getElementById(id); }
  function finite(v) { return typeof v === "number" && isFinite(v); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // Numbers as the server's figure() writes them: thousands separators, 4 significant.
  function num(v, digits) {
    if (!finite(v)) return "—";
    var a = Math.abs(v);
    if (digits === undefined) digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 4;
    return v.toLocaleString("en-US", {minimumFractionDigits: 0, maximumFractionDigits: digits});
  }
  function int(v) { return finite(v) ? Math.round(v).toLocaleString("en-US") : "—"; }
  function pct(v) { return finite(v) ? (100 * v).toFixed(1) + "%" : "—"; }
  function money(v) { return finite(v) ? v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2}) : "—"; }

  // "1h 02m 03s" like the server's span().
  function span(seconds) {
    if (!finite(seconds) || seconds < 0) return "—";
    var s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (h) return h + "h " + pad(m) + "m " + pad(s % 60) + "s";
    if (m) return m + "m " + pad(s % 60) + "s";
    return s + "s";
  }

  // ------------------------------------------------------------------------- KPIs

  function setKpi(key, value, state, note) {
    var card = document.querySelector('.kpi[data-kpi="' + key + '"]');
    if (!card) return;
    card.querySelector(".kpi-value").textContent = value;
    card.querySelector(".kpi-note").textContent = note || "";
    card.dataset.state = state || "none";
  }

  function mean(values) {
    var f = values.filter(finite);
    return f.length ? f.reduce(function (a, b) { return a + b; }, 0) / f.length : null;
  }

  // The rules, one function each (what the page's "the rules" list says).
  var rules = {
    speed: function (now, avg) {
      if (!finite(now) || !finite(avg) || avg <= 0) return "none";
      var r = now / avg;
      return r >= 0.75 ? "ok" : r >= 0.25 ? "warn" : "bad";
    },
    reward: function (latest, mean50) {
      if (!finite(latest)) return "none";
      if (latest > 0) return "ok";
      return latest < 0 && finite(mean50) && latest < mean50 ? "bad" : "warn";
    },
    best: function (bestEpisode, lastEpisode) {
      if (!finite(bestEpisode) || !finite(lastEpisode)) return "none";
      return lastEpisode - bestEpisode < 50 ? "ok" : "warn";
    },
    mean50: function (m, n) {
      if (!finite(m)) return "none";
      if (n < 50 || m === 0) return "warn";
      return m > 0 ? "ok" : "bad";
    },
    sharpe: function (v) {
      if (!finite(v)) return "none";
      return v >= 1 ? "ok" : v >= 0 ? "warn" : "bad";
    },
    policyLoss: function (point) {
      if (!point) return "none";
      if (!finite(point.value)) return "bad";
      return Math.abs(point.value) > 1 ? "warn" : "ok";
    }
  };

  // k: the figures (kpis from the snapshot, then updated from the stream);
  // store: the chart store (reward and Sharpe tails); run: {supervised}.
  function renderKpis(k, store, run) {
    var noEpisodes = run.supervised ? "epoch-trained: no episodes" : "no episodes yet";
    var ep = k.episode;
    setKpi("episode", ep ? int(ep.step) : "—", "none", ep ? "" : noEpisodes);
    var steps = k.env_steps;
    setKpi("env_steps", steps ? int(steps.value) : "—", "none",
           steps ? "" : run.supervised ? "not an environment run" : "no update yet");
    var speed = k.steps_per_second, avg = k.steps_per_second_mean;
    setKpi("steps_per_second", speed ? num(speed.value, 0) : "—",
           rules.speed(speed && speed.value, avg && avg.mean),
           speed && avg ? "run average " + num(avg.mean, 0) : "no data: no train/steps_per_second");
    var recent = store.recent("episode/reward", 50);
    var m50 = mean(recent);
    var latest = k.reward;
    setKpi("reward", latest ? num(latest.value) : "—", rules.reward(latest && latest.value, m50),
           latest ? "episode " + int(latest.step) : noEpisodes);
    var best = k.best_reward;
    setKpi("best_reward", best ? num(best.value) : "—",
           rules.best(best && best.step, ep && ep.step), best ? "episode " + int(best.step) : noEpisodes);
    setKpi("mean50", finite(m50) ? num(m50) : "—", rules.mean50(m50, recent.length),
           finite(m50) ? "over " + recent.length + " episodes" : noEpisodes);
    var sharpe = mean(store.recent("episode/sharpe", 10));
    setKpi("sharpe", finite(sharpe) ? num(sharpe, 2) : "—", rules.sharpe(sharpe),
           finite(sharpe) ? "last " + Math.min(10, store.recent("episode/sharpe", 10).length) + " episodes"
                          : "no data: no episode/sharpe");
    var pl = k.policy_loss;
    setKpi("policy_loss", pl ? (finite(pl.value) ? num(pl.value, 4) : "NaN") : "—",
           rules.policyLoss(pl), pl ? "update " + int(pl.step) : "no data: no train/policy_loss");
  }

  // The stream's points into the KPI figures (latest of each, best, the speed's mean).
  function updateKpis(k, points, supervised) {
    function lastOf(key) {
      var list = points[key];
      if (!list || !list.length) return null;
      var p = list.reduce(function (a, b) { return b.step >= a.step ? b : a; });
      return {step: p.step, value: finite(p.value) ? p.value : null};
    }
    function newer(old, p) { return p && (!old || p.step >= old.step) ? p : old; }
    k.episode = newer(k.episode, lastOf("episode/reward"));
    k.reward = newer(k.reward, lastOf("episode/reward"));
    (points["episode/reward"] || []).forEach(function (p) {
      if (finite(p.value) && (!k.best_reward || p.value > k.best_reward.value)) {
        k.best_reward = {step: p.step, value: p.value};
      }
    });
    // PPO's global step counts env steps; an epoch-trained run's counts epochs.
    k.env_steps = newer(k.env_steps, lastOf("train/env_steps") ||
                        (points["train/env_steps"] || supervised ? null : lastOf("train/global_step")));
    k.policy_loss = newer(k.policy_loss, lastOf("train/policy_loss"));
    (points["train/steps_per_second"] || []).forEach(function (p) {
      if (!finite(p.value)) return;
      var a = k.steps_per_second_mean || {mean: 0, count: 0};
      a.count += 1;
      a.mean += (p.value - a.mean) / a.count;
      k.steps_per_second_mean = a;
    });
    k.steps_per_second = newer(k.steps_per_second, lastOf("train/steps_per_second"));
  }

  // ----------------------------------------------------------------------- agents

  function agentCard(a) {
    var card = el("article", "agent");
    card.dataset.agent = a.agent;
    var head = el("header", "agent-head");
    head.appendChild(el("b", "", "Agent " + a.agent));
    head.appendChild(el("span", "muted small", "episode " + int(a.episode) + " · bar " + int(a.bar)));
    card.appendChild(head);
    var equity = el("div", "agent-equity", money(a.equity));
    equity.dataset.field = "equity";
    card.appendChild(equity);
    var dl = el("dl", "agent-facts");
    var rows = [
      ["Cash", money(a.cash), "cash"],
      ["Position", num(a.position) + " units", "position"],
      ["Holdings", money(a.holdings_value), "holdings_value"],
      ["Episode reward", num(a.episode_reward), "episode_reward", a.episode_reward],
      ["Total reward", num(a.total_reward), "total_reward", a.total_reward],
      ["Trades", int(a.trades) + " (" + int(a.profitable_trades) + " profitable)", "trades"],
      ["Win rate", a.win_rate === null || a.win_rate === undefined ? "— (no closed trade)" : pct(a.win_rate), "win_rate"],
      ["Fees", money(a.fees), "fees"]
    ];
    rows.forEach(function (r) {
      var dd = el("dd", finite(r[3]) ? (r[3] > 0 ? "up" : r[3] < 0 ? "down" : "") : "", r[1]);
      dd.dataset.field = r[2];
      dl.appendChild(el("dt", "", r[0]));
      dl.appendChild(dd);
    });
    card.appendChild(dl);
    if (a.trades_unlogged > 0) {
      card.appendChild(el("p", "muted small", int(a.trades_unlogged) +
                          " more trades than the trade log's rate limit kept"));
    }
    return card;
  }

  function renderAgents(agents) {
    var grid = byId("agent-grid");
    var list = Object.keys(agents).sort().map(function (k) { return agents[k]; }).slice(0, AGENTS);
    grid.replaceChildren.apply(grid, list.map(agentCard));
    byId("agents-empty").hidden = list.length > 0;
  }

  // --------------------------------------------------------------------- decision

  function renderDecision(decisions) {
    var keys = Object.keys(decisions);
    byId("decision-empty").hidden = keys.length > 0;
    byId("decision-body").hidden = keys.length === 0;
    if (!keys.length) return;
    var latest = keys.map(function (k) { return decisions[k]; })
                     .reduce(function (a, b) { return b.seq > a.seq ? b : a; });
    var d = latest.data;
    var action = byId("decision-action");
    action.textContent = d.action || "—";
    action.className = "action " + String(d.action || "").toLowerCase();
    byId("decision-confidence").textContent = pct(d.confidence);
    byId("decision-value").textContent = num(d.value);
    byId("decision-where").textContent = "agent " + d.agent + " · env step " + int(d.step) +
      " · bar " + int(d.bar);
    var bars = byId("decision-bars");
    var probs = d.probabilities || {};
    bars.replaceChildren.apply(bars, ["hold", "buy", "sell"].map(function (name) {
      var p = probs[name];
      var row = el("div", "prob-row" + (String(d.action).toLowerCase() === name ? " chosen" : ""));
      row.dataset.action = name;
      row.appendChild(el("span", "prob-name", name));
      var track = el("span", "prob-track");
      var fill = el("span", "prob-fill " + name);
      fill.style.width = (finite(p) ? Math.max(0, Math.min(1, p)) * 100 : 0) + "%";
      track.appendChild(fill);
      row.appendChild(track);
      row.appendChild(el("span", "prob-text", pct(p)));
      return row;
    }));
    var list = byId("decision-agents");
    list.replaceChildren.apply(list, keys.sort().map(function (k) {
      var x = decisions[k].data;
      return el("li", "", "agent " + x.agent + ": " + (x.action || "—") + " " + pct(x.confidence) +
                " (value " + num(x.value) + ")");
    }));
  }

  // ----------------------------------------------------------------------- trades

  function trades() {
    var rows = [];  // newest first, each {seq, wall_time, data}
    var maxSeq = 0;
    var filter = byId("trade-agent");

    function add(list) {  // list in seq order or any order; repeats dropped by seq
      var fresh = list.filter(function (t) { return t.seq > maxSeq; })
                      .sort(function (a, b) { return b.seq - a.seq; });
      if (!fresh.length) return false;
      maxSeq = fresh[0].seq;
      rows = fresh.concat(rows).slice(0, TRADES);
      return true;
    }

    function render() {
      var body = byId("trade-rows");
      var agent = filter.value;
      var shown = rows.filter(function (t) { return agent === "" || String(t.data.agent) === agent; });
      byId("trade-count").textContent = int(shown.length);
      body.replaceChildren.apply(body, shown.map(function (t) {
        var d = t.data, tr = el("tr", "side-" + String(d.side || "").toLowerCase());
        tr.dataset.seq = t.seq;
        tr.dataset.agent = d.agent;
        var time = d.time ? String(d.time).slice(0, 19).replace("T", " ")
                          : new Date(t.wall_time * 1000).toISOString().slice(11, 19);
        [[time, "nowrap"], [String(d.agent), "num"], [d.side || "—", "side"],
         [num(d.price), "num"], [num(d.quantity), "num"],
         [d.pnl === null || d.pnl === undefined ? "—" : num(d.pnl),
          "num" + (finite(d.pnl) ? (d.pnl > 0 ? " up" : d.pnl < 0 ? " down" : "") : "")],
         [num(d.fee), "num"], [int(d.step), "num"]].forEach(function (c) {
          tr.appendChild(el("td", c[1], c[0]));
        });
        return tr;
      }));
      body.parentElement.hidden = rows.length === 0;
      byId("trades-empty").hidden = rows.length > 0;
      byId("trades-empty").textContent = rows.length ? "" : "No trades: this run logs no trade events.";
    }

    filter.addEventListener("change", render);
    return {add: add, render: render, reset: function () { rows = []; maxSeq = 0; }};
  }

  return {renderKpis: renderKpis, updateKpis: updateKpis, renderAgents: renderAgents,
          renderDecision: renderDecision, trades: trades, span: span, int: int, num: num,
          rules: rules};
})();
