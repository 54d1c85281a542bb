// The run page's training plots: the seed's eight mapped to PPO (profit/loss, training
// loss, entropy, learning rate, rolling win rate, Sharpe, max drawdown, value estimates)
// plus equity per agent, accuracy for epoch-trained runs and "other metrics".
//
// GalaxyLiveCharts.store() keeps the page's series: the snapshot's (downsampled by the
// server) and every point the stream brings after it. A point whose step is not past the
// series' last is a repeat (the snapshot and the stream overlap by design) and is dropped.
// Averages go on point by point from the raw tail the snapshot sent (the last `window`
// values), so the line the stream extends is the line the server drew. A series longer
// than 2 × LIMIT points is re-bucketed to LIMIT (min and max of each bucket, both ends
// kept), so a chart stays light however long the run watches.
window.GalaxyLiveCharts = (function () {
  "use strict";
  var LIMIT = 1000;
  // Series the plots read as averages only, never drawn raw.
  var NOT_CHARTED = ["episode/win", "episode/terminated", "train/global_step"];
  var EQUITY = /^agents\/(\d+)\/equity$/;

  function finite(v) { return typeof v === "number" && isFinite(v); }

  // Min and max of each of `target / 2` buckets, in step order; both ends kept.
  function rebucket(points, target) {
    var buckets = Math.max(1, Math.floor(target / 2));
    var size = points.length / buckets;
    var out = [points[0]];
    for (var b = 0; b < buckets; b++) {
      var from = Math.floor(b * size), to = Math.min(points.length, Math.floor((b + 1) * size));
      var lo = null, hi = null;
      for (var i = from; i < to; i++) {
        var p = points[i];
        if (!finite(p.y)) continue;
        if (!lo || p.y < lo.y) lo = p;
        if (!hi || p.y > hi.y) hi = p;
      }
      if (!lo) continue;
      var pair = lo.x <= hi.x ? [lo, hi] : [hi, lo];
      pair.forEach(function (q) { if (q !== out[out.length - 1]) out.push(q); });
    }
    var last = points[points.length - 1];
    if (out[out.length - 1] !== last) out.push(last);
    return out;
  }

  function store() {
    var s = {raw: {}, avg: {}, tails: {}, windows: {}, tailSize: {}, last: {}, keys: []};

    function toXY(points) {
      return (points || []).map(function (p) { return {x: p.step, y: p.value}; });
    }

    function bound(list) { return list.length > 2 * LIMIT ? rebucket(list, LIMIT) : list; }

    // The snapshot: series, averages and tails; replaces everything held.
    s.load = function (reply) {
      var m = reply.monitor || {};
      s.keys = reply.keys.slice();
      s.raw = {}; s.avg = {}; s.tails = {}; s.last = {};
      Object.keys(reply.series).forEach(function (k) {
        s.raw[k] = toXY(reply.series[k]);
        if (s.raw[k].length) s.last[k] = s.raw[k][s.raw[k].length - 1].x;
      });
      s.windows = m.windows || {};
      s.tailSize = {};
      Object.keys(s.windows).forEach(function (k) {
        s.avg[k] = toXY((m.averages || {})[k]);
        var tail = (m.tails || {})[k] || [];
        s.tailSize[k] = Math.max(s.windows[k], k === "episode/reward" ? 50 : 0);
        s.tails[k] = tail.map(function (p) { return p.value; });
        if (tail.length) s.last[k] = Math.max(s.last[k] || 0, tail[tail.length - 1].step);
      });
    };

    // Points from the stream ({key: [{step, value}]}); returns the keys that changed.
    s.append = function (points) {
      var changed = [];
      Object.keys(points).forEach(function (k) {
        var list = points[k].slice().sort(function (a, b) { return a.step - b.step; });
        var added = false;
        list.forEach(function (p) {
          if (s.last[k] !== undefined && p.step <= s.last[k]) return;  // a repeat
          s.last[k] = p.step;
          added = true;
          if (NOT_CHARTED.indexOf(k) < 0) (s.raw[k] = s.raw[k] || []).push({x: p.step, y: p.value});
          if (s.windows[k]) {
            var tail = s.tails[k] = s.tails[k] || [];
            tail.push(p.value);
            if (tail.length > s.tailSize[k]) tail.splice(0, tail.length - s.tailSize[k]);
            (s.avg[k] = s.avg[k] || []).push({x: p.step, y: mean(tail.slice(-s.windows[k]))});
          }
        });
        if (!added) return;
        if (s.keys.indexOf(k) < 0) s.keys.push(k);
        if (s.raw[k]) s.raw[k] = bound(s.raw[k]);
        if (s.avg[k]) s.avg[k] = bound(s.avg[k]);
        changed.push(k);
      });
      return changed;
    };

    // The last `n` raw values of a key the page keeps a tail of (reward: 50).
    s.recent = function (k, n) { return (s.tails[k] || []).slice(-n); };
    return s;
  }

  function mean(values) {
    var sum = 0, n = 0;
    values.forEach(function (v) { if (finite(v)) { sum += v; n += 1; } });
    return n ? sum / n : null;
  }

  // -------------------------------------------------------------------- the plots

  function alpha(colour, opacity) {
    var hex = /^#([0-9a-f]{6})$/i.exec(colour);
    if (!hex) return colour;
    var n = parseInt(hex[1], 16);
    return "rgba(" + [(n >> 16) & 255, (n >> 8) & 255, n & 255, opacity].join(",") + ")";
  }

  function count(n) { return Number(n).toLocaleString("en-US"); }

  function options(xLabel, y, lines, legend) {
    return {
      scales: {
        x: {type: "linear", title: {display: true, text: xLabel}, ticks: {maxTicksLimit: 7, precision: 0}},
        y: Object.assign({ticks: {maxTicksLimit: 6}}, y || {})
      },
      interaction: {mode: "nearest", axis: "x", intersect: false},
      plugins: {legend: {display: legend !== false, labels: {boxWidth: 12}},
                refLines: {lines: lines || []},
                tooltip: {callbacks: {title: function (items) {
                  return items.length ? xLabel + " " + count(items[0].parsed.x) : "";
                }}}},
      normalized: true, spanGaps: true, parsing: false
    };
  }

  function line(label, data, colour, width, extra) {
    return Object.assign({label: label, data: data, color: colour, borderWidth: width || 1.5}, extra || {});
  }

  function scaled(points, factor) {
    return points.map(function (p) { return {x: p.x, y: finite(p.y) ? p.y * factor : p.y}; });
  }

  // mean ± std joined by step: each mean point takes the std of its step or the last before.
  function band(means, stds, sign) {
    var j = 0, std = null;
    return means.map(function (p) {
      while (j < stds.length && stds[j].x <= p.x) { if (finite(stds[j].y)) std = stds[j].y; j += 1; }
      return {x: p.x, y: finite(p.y) && std !== null ? p.y + sign * std : null};
    });
  }

  function plots(ctx) {
    var C = GalaxyCharts, s = ctx.store, supervised = ctx.supervised;
    var stepLabel = supervised ? "epoch" : "update";
    function raw(k) { return s.raw[k] || []; }
    var out = {};

    out.reward = function () {
      var pts = raw("episode/reward");
      if (!pts.length) return null;
      var w = s.windows["episode/reward"], accent = C.color(0);
      var sets = [line("reward", pts, w > 1 ? alpha(accent, 0.35) : accent, 1)];
      if (w > 1) sets.push(line("moving average (" + w + ")", s.avg["episode/reward"] || [], C.color(1), 2));
      return {sets: sets, options: options("episode", null, [{y: 0, label: "0"}])};
    };

    out.loss = function () {
      var key = ctx.lossKey, pts = key ? raw(key) : [];
      var sets = [];
      if (pts.length) {
        var w = s.windows[key];
        sets.push(line(key.slice(6).replace(/_/g, " "), pts, alpha(C.color(0), 0.4), 1));
        if (w) sets.push(line("moving average (" + w + ")", s.avg[key] || [], C.color(1), 2));
      }
      if (raw("train/val_loss").length) sets.push(line("val loss", raw("train/val_loss"), C.color(2), 1.5));
      if (!sets.length) return null;
      // A log axis needs positive values: PPO's total loss can go below 0.
      var positive = sets.every(function (d) {
        return d.data.every(function (p) { return !finite(p.y) || p.y > 0; });
      });
      var note = document.getElementById("loss-note");
      if (note) note.textContent = "(per " + stepLabel + (s.windows[key] ? ", " + s.windows[key] + "-step moving average" : "") +
        (positive ? ", log axis)" : ", linear axis: the loss went to 0 or below)");
      return {sets: sets, options: options(stepLabel, {type: positive ? "logarithmic" : "linear"})};
    };

    function single(key, label, colour, xLabel, y) {
      return function () {
        var pts = raw(key);
        if (!pts.length) return null;
        return {sets: [line(label, pts, colour, 1.5)], options: options(xLabel || stepLabel, y, [], false)};
      };
    }
    out.entropy = single("train/entropy", "entropy", C.color(2));
    out.lr = single("train/learning_rate", "learning rate", C.color(0), null,
                    {ticks: {maxTicksLimit: 6, callback: function (v) { return Number(v).toExponential(2); }}});
    out.drawdown = single("episode/max_drawdown", "max drawdown %", C.color(3), "episode",
                          {ticks: {maxTicksLimit: 6, callback: function (v) { return v + "%"; }}});

    out.winrate = function () {
      var pts = s.avg["episode/win"] || [];
      if (!pts.length) return null;
      return {sets: [line("win rate % (" + s.windows["episode/win"] + ")", scaled(pts, 100), C.color(2), 2)],
              options: options("episode", {min: 0, max: 100, ticks: {callback: function (v) { return v + "%"; }}},
                               [{y: 50, label: "50%"}])};
    };

    out.sharpe = function () {
      var pts = raw("episode/sharpe");
      if (!pts.length) return null;
      return {sets: [line("sharpe", pts, alpha(C.color(0), 0.35), 1),
                     line("moving average (" + s.windows["episode/sharpe"] + ")", s.avg["episode/sharpe"] || [], C.color(1), 2)],
              options: options("episode", null, [{y: 0, label: "0"}, {y: 1, label: "1"}])};
    };

    out.value = function () {
      var means = raw("train/value_mean");
      if (!means.length) return null;
      var stds = raw("train/value_std"), c = C.color(0);
      var sets = [line("mean", means, c, 2)];
      if (stds.length) {
        sets.push(line("+ std", band(means, stds, 1), alpha(c, 0.25), 0, {fill: false}));
        sets.push(line("− std", band(means, stds, -1), alpha(c, 0.25), 0,
                       {fill: "-1", backgroundColor: alpha(c, 0.18)}));
      }
      return {sets: sets, options: options(stepLabel)};
    };

    out.equity = function () {
      var keys = s.keys.filter(function (k) { return EQUITY.test(k) && raw(k).length; }).sort();
      if (!keys.length) return null;
      return {sets: keys.map(function (k, i) {
        return line("agent " + EQUITY.exec(k)[1], raw(k), C.color(i), 1.5);
      }), options: options("env step")};
    };

    out.accuracy = function () {
      var keys = s.keys.filter(function (k) { return /^train\/.*accuracy$/.test(k) && raw(k).length; });
      if (!keys.length) return null;
      return {sets: keys.map(function (k, i) {
        return line(k.slice(6).replace(/_/g, " "), scaled(raw(k), 100), C.color(i), 1.5);
      }), options: options("epoch", {ticks: {callback: function (v) { return v + "%"; }}})};
    };
    return out;
  }

  // The keys the plots above draw (the rest go to "other metrics").
  var USED = ["episode/reward", "episode/win", "train/val_loss",
              "train/entropy", "train/learning_rate", "episode/sharpe", "episode/max_drawdown",
              "train/value_mean", "train/value_std"];

  function extraKeys(s, lossKey) {
    return s.keys.filter(function (k) {
      if (k === lossKey || (lossKey === "train/train_loss" && k === "train/loss")) return false;
      return USED.indexOf(k) < 0 && NOT_CHARTED.indexOf(k) < 0 && !EQUITY.test(k) &&
             !/^train\/.*accuracy$/.test(k) && (s.raw[k] || []).length;
    }).sort();
  }

  return {store: store, plots: plots, extraKeys: extraKeys, options: options, line: line,
          rebucket: rebucket, LIMIT: LIMIT};
})();
