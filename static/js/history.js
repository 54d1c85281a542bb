// Training history list page: filters apply as soon as a select changes. (A run's page
// is run_page.js: a snapshot, then the run's event stream.)
(function () {
  "use strict";

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

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("run-filters");
    if (form) initFilters(form);
  });
})();
