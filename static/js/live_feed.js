// A run's live stream in the browser: one EventSource on
// /api/training-runs/<id>/events?last_event_id=<cursor>, started from the cursor of the
// page's snapshot (live.json), with every message handed to onMessage(type, body).
//
// Reconnects: the browser's EventSource reconnects by itself after a dropped connection
// (a server restart, a proxy timeout) and sends Last-Event-ID, from which the server
// resumes with no gap and no repeat. It gives up only when an answer is not a stream (a
// 503 when the viewer caps are full, a 5xx while the server starts): then this module
// opens a new EventSource from the last id it saw, after 1 s, 2 s, 4 s … (at most 30 s).
// That is the only timer here, and it runs only while the stream is down.
//
// `end` closes it when the run has ended (the server sends it once nothing more comes;
// the stream is closed as its reply ends, so the browser does not reconnect);
// an `end` for a run still active means only that the server closed this stream (it
// is shutting down): the browser reconnects as after any drop.
window.GalaxyLiveFeed = (function () {
  "use strict";
  var TYPES = ["training_metrics", "episode", "trade", "bot_decision", "checkpoint", "alert",
               "training_status", "log", "account", "connection_status", "end"];
  var TERMINAL = ["completed", "stopped", "failed"];
  var MAX_RETRY_MS = 30000;

  // open({url, cursor, onMessage(type, body), onState(state)}) -> {close()}
  // state: "connecting", "live", "reconnecting", "ended", "closed".
  function open(options) {
    var lastId = options.cursor || "";
    var source = null;
    var retryTimer = null;
    var failures = 0;
    var finished = false;
    var ending = false;      // `end` came: close when the server finishes the reply
    var endTimer = null;

    function state(name) { if (options.onState) options.onState(name); }

    function url() {
      return options.url + (lastId ? (options.url.indexOf("?") < 0 ? "?" : "&") +
                            "last_event_id=" + encodeURIComponent(lastId) : "");
    }

    function listen(type) {
      source.addEventListener(type, function (event) {
        if (event.lastEventId) lastId = event.lastEventId;
        var body;
        try { body = JSON.parse(event.data); } catch (e) { return; }
        failures = 0;
        if (type === "end" && !ending) {
          if (TERMINAL.indexOf(body.status) >= 0 || body.status === undefined) {
            // Closed when the reply ends (onerror, before the browser would reconnect):
            // closing now would abort a reply the server is about to finish.
            ending = true;
            state("ended");
            endTimer = setTimeout(function () { finish("ended"); }, 5000);
          }
          // else: the server closed the stream; EventSource reconnects with lastId.
        }
        options.onMessage(type, body);
      });
    }

    function connect() {
      retryTimer = null;
      state(failures ? "reconnecting" : "connecting");
      source = new EventSource(url());
      TYPES.forEach(listen);
      source.onopen = function () { state("live"); };
      source.onerror = function () {
        if (finished) return;
        if (ending) { finish("ended"); return; }
        if (source.readyState === EventSource.CLOSED) {  // the browser gave up: we retry
          source.close();
          failures += 1;
          state("reconnecting");
          retryTimer = setTimeout(connect, Math.min(MAX_RETRY_MS, 1000 * Math.pow(2, failures - 1)));
        } else {
          state("reconnecting");  // EventSource retries by itself (Last-Event-ID)
        }
      };
    }

    function finish(name) {
      finished = true;
      clearTimeout(retryTimer);
      clearTimeout(endTimer);
      if (source) source.close();
      state(name);
    }

    connect();
    return {
      close: function () { if (!finished && !ending) finish("closed"); },
      lastId: function () { return lastId; },
      readyState: function () { return source ? source.readyState : 2; }
    };
  }

  return {open: open, TERMINAL: TERMINAL};
})();
