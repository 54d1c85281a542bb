// Run page: archive and delete are refused while the run is live (the buttons say why);
// when the live page sees the run end (run_page.js sets #run-page's data-status), they
// turn on without a reload.
(function () {
  "use strict";
  var LIVE = ["starting", "running", "paused"];

  function apply(status) {
    var live = LIVE.indexOf(status) >= 0;
    document.querySelectorAll("#run-curate .curate-live").forEach(function (button) {
      button.disabled = live;
      if (!live && button.dataset.idleTitle) button.title = button.dataset.idleTitle;
    });
    var reason = document.getElementById("curate-reason");
    if (reason) reason.hidden = !live;
    var shown = document.getElementById("curate-status");
    if (shown) shown.textContent = status;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.getElementById("run-page");
    if (!page || !document.getElementById("run-curate")) return;
    document.querySelectorAll("#run-curate .curate-live").forEach(function (button) {
      button.dataset.idleTitle = button.id === "delete-run"
        ? "Delete the run, its metrics and events (asks first)"
        : "Hide the run from the history list (it can be restored)";
    });
    new MutationObserver(function () { apply(page.dataset.status); })
      .observe(page, {attributes: true, attributeFilter: ["data-status"]});
  });
})();
