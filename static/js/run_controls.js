// Pause / resume / stop / train again on a run page, following the run's state machine:
//   starting → running ⇄ paused;  starting/running/paused → stopping → stopped;
//   running → completed;  any active state → failed.
// A button is enabled only where its move is legal (LEGAL below); run_page.js tells the
// state live ("gm-run-state", from the stream's training_status messages). The trainer
// obeys between iterations: a request is only a request until its status message comes.
(function () {
  "use strict";
  var box = document.getElementById("run-controls");
  if (!box) return;
  var note = document.getElementById("control-note");
  var again = document.getElementById("train-again");
  var LEGAL = {pause: ["running"], resume: ["paused"], stop: ["starting", "running", "paused"],
               again: ["stopped", "completed", "failed"]};
  var pending = null;  // the action asked for and not yet obeyed

  function apply(state) {
    box.dataset.state = state;
    box.querySelectorAll("button[data-action]").forEach(function (button) {
      var action = button.getAttribute("data-action");
      var legal = LEGAL[action].indexOf(state) >= 0 && pending !== action;
      button.disabled = !legal;
    });
    var legalAgain = LEGAL.again.indexOf(state) >= 0;
    again.classList.toggle("disabled", !legalAgain);
    again.setAttribute("aria-disabled", legalAgain ? "false" : "true");
    if (legalAgain) again.removeAttribute("tabindex"); else again.setAttribute("tabindex", "-1");
  }

  document.addEventListener("gm-run-state", function (event) {
    var d = event.detail;
    if (pending && ((pending === "pause" && d.status === "paused") ||
                    (pending === "resume" && d.status === "running") ||
                    (pending === "stop" && ["stopped", "completed", "failed"].indexOf(d.status) >= 0))) {
      note.textContent = pending + " done: the run is " + d.status;
      pending = null;
    }
    apply(d.state);
  });

  again.addEventListener("click", function (event) {
    if (again.getAttribute("aria-disabled") === "true") event.preventDefault();
  });

  box.addEventListener("click", function (event) {
    var button = event.target && event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    var action = button.getAttribute("data-action");
    if (action === "stop" && !window.confirm("Stop this run? The model trained so far is saved.")) return;
    note.textContent = "asking the trainer to " + action + "…";
    button.disabled = true;
    fetch(box.getAttribute("data-control-url"), {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({action: action})
    }).then(function (response) {
      return response.json().then(function (body) {
        if (response.ok) {
          pending = action;
          note.textContent = action + " requested: the trainer applies it after its current iteration";
          document.dispatchEvent(new CustomEvent("gm-control-sent", {detail: {action: action}}));
        } else {
          note.textContent = body.error || "HTTP " + response.status;
          button.disabled = false;
        }
      });
    }).catch(function (error) {
      note.textContent = "could not reach the server: " + error;
      button.disabled = false;
    });
  });

  apply(document.getElementById("run-page").dataset.status);
})();
