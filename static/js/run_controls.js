// Pause / resume / stop buttons of a run page. The trainer obeys between iterations;
// the page's polling (history.js) then shows the new status, which picks the buttons.
(function () {
  "use strict";
  var box = document.getElementById("run-controls");
  if (!box) return;
  var note = document.getElementById("control-note");
  box.addEventListener("click", function (event) {
    var action = event.target && event.target.getAttribute("data-action");
    if (!action) return;
    if (action === "stop" && !window.confirm("Stop this run? The model trained so far is saved.")) return;
    note.textContent = "asking the trainer to " + action + "…";
    fetch(box.getAttribute("data-control-url"), {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({action: action})
    }).then(function (response) {
      return response.json().then(function (body) {
        note.textContent = response.ok ? action + " requested: the trainer applies it after "
          + "its current iteration" : (body.error || "HTTP " + response.status);
      });
    }).catch(function (error) { note.textContent = "could not reach the server: " + error; });
  });
})();
