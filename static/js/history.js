// Training history list page: filters apply as soon as a select or the "show archived"
// box changes; ticked rows go to the compare view as /compare?runs=<id>,<id>,... (or to the
// held-out evaluation form, /evaluate?runs=...)
// (A run's page is run_page.js: a snapshot, then the run's event stream.)
(function () {
  "use strict";

  function initFilters(form) {
    function submit() {
      // Empty and default choices are left out of the URL; a new filter starts at page 1.
      form.querySelectorAll("select").forEach(function (s) {
        s.disabled = !s.value || s.value === s.dataset.default;
      });
      form.submit();
    }
    form.querySelectorAll("select, input[type=checkbox]").forEach(function (input) {
      input.addEventListener("change", submit);
    });
  }

  function initCompare(form) {
    var max = parseInt(form.dataset.max, 10) || 20;
    var button = document.getElementById("compare-selected");
    var evaluate = document.getElementById("evaluate-selected");
    var note = document.getElementById("compare-note");
    var hidden = document.getElementById("compare-runs");
    var picks = document.querySelectorAll(".compare-pick");

    function chosen() {
      return Array.prototype.filter.call(picks, function (p) { return p.checked; })
        .map(function (p) { return p.value; });
    }
    function update() {
      var ids = chosen();
      button.disabled = ids.length < 2 || ids.length > max;
      if (evaluate) evaluate.disabled = button.disabled;
      note.textContent = ids.length > max
        ? ids.length + " runs ticked: the compare view takes at most " + max + "."
        : ids.length < 2 ? "Tick 2 to " + max + " runs to compare them."
        : ids.length + " runs ticked.";
      hidden.value = ids.join(",");
    }
    picks.forEach(function (p) { p.addEventListener("change", update); });
    form.addEventListener("submit", function (event) {
      update();
      if (button.disabled) event.preventDefault();
    });
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("run-filters");
    if (form) initFilters(form);
    var compare = document.getElementById("compare-form");
    if (compare) initCompare(compare);
  });
})();
