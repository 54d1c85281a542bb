// API hosting playground: fill a window from a CSV, send it, show the reply, and the
// same call as curl (against the host this page came from) and as a standalone server.
(function () {
  "use strict";
  var root = document.getElementById("playground");
  if (!root || !document.getElementById("pg-target")) return;

  function $(id) { return document.getElementById(id); }
  var target = $("pg-target"), csv = $("pg-csv"), end = $("pg-end"), fill = $("pg-fill");
  var info = $("pg-window-info"), request = $("pg-request"), send = $("pg-send");
  var status = $("pg-status"), reply = $("pg-response"), urlLabel = $("pg-url");
  var curl = $("pg-curl"), standalone = $("pg-standalone");

  function endpoint() {
    var model = target.value;  // "" is the hosted model
    return model ? root.dataset.modelUrl.replace("__MODEL__", encodeURIComponent(model))
                 : root.dataset.predictUrl;
  }

  function shellQuote(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }

  function compactBody() {
    try { return JSON.stringify(JSON.parse(request.value)); }
    catch (e) { return request.value.trim(); }  // sent as typed; the server names the problem
  }

  function updateCommands() {
    var path = endpoint();
    urlLabel.textContent = "POST " + path;
    // Beyond loopback the API wants a token (made on /settings): the command says where.
    var auth = curl.getAttribute("data-auth") === "1"
      ? "  -H \"Authorization: Bearer $GALAXY_TOKEN\" \\\n" : "";
    curl.textContent = "curl -s -X POST " + shellQuote(window.location.origin + path) + " \\\n" +
      "  -H 'Content-Type: application/json' \\\n" + auth + "  -d " + shellQuote(compactBody());
    var option = target.options[target.selectedIndex];
    var dir = option ? option.getAttribute("data-model-dir") : "";
    standalone.textContent = dir ? ".venv/bin/python Api_Loader.py --model-dir " + dir + " --port 8001"
                                 : "(choose a model)";
  }

  function showInfo(text, isError) {
    info.textContent = text;
    info.classList.toggle("error-text", !!isError);
    info.classList.toggle("muted", !isError);
  }

  function showReply(code, text, ok) {
    status.hidden = false;
    status.textContent = code;
    status.className = "badge " + (ok ? "completed" : "failed");
    reply.textContent = text;
    reply.classList.remove("muted");
    reply.classList.toggle("is-error", !ok);
  }

  function errorText(body, fallback) {
    if (body && body.error) return body.error + (body.field ? " (field: " + body.field + ")" : "");
    return fallback;
  }

  async function fillWindow() {
    var params = new URLSearchParams({ csv: csv.value, end: end.value.trim() });
    if (target.value) params.set("model", target.value);
    fill.disabled = true;
    showInfo("Loading a window…", false);
    try {
      var response = await fetch(root.dataset.sampleUrl + "?" + params.toString(),
                                 { headers: { Accept: "application/json" } });
      var body = await response.json().catch(function () { return null; });
      if (!response.ok) {
        showInfo("Could not fill a window: " + errorText(body, "HTTP " + response.status), true);
        return;
      }
      request.value = JSON.stringify({ window: body.window }, null, 2);
      showInfo(body.window_size + " bars of " + body.csv + " for " + body.model +
               ", ending at bar " + body.end.index + " (" + body.end.time + "); the file has " +
               body.rows + " bars, " + body.first + " to " + body.last + ".", false);
      updateCommands();
    } catch (e) {
      showInfo("Could not fill a window: " + e.message, true);
    } finally {
      fill.disabled = false;
    }
  }

  async function sendRequest() {
    send.disabled = true;
    try {
      var response = await fetch(endpoint(), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: request.value,
      });
      var text = await response.text(), pretty = text;
      try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      showReply(response.status + " " + (response.statusText || ""), pretty, response.ok);
    } catch (e) {
      showReply("no reply", "The request failed: " + e.message, false);
    } finally {
      send.disabled = false;
    }
  }

  function copy(button) {
    var text = $(button.getAttribute("data-copy")).textContent;
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    navigator.clipboard.writeText(text).then(done, function () {
      button.textContent = "Copy failed";
    });
  }
  var canCopy = !!(navigator.clipboard && window.isSecureContext);

  target.addEventListener("change", updateCommands);
  request.addEventListener("input", updateCommands);
  fill.addEventListener("click", fillWindow);
  send.addEventListener("click", sendRequest);
  end.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { event.preventDefault(); fillWindow(); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("#playground button.copy"),
    function (button) {
      if (!canCopy) { button.hidden = true; return; }  // plain http on another host
      button.addEventListener("click", function () { copy(button); });
    });
  updateCommands();
})();
