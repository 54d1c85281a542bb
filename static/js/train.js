// Train form: bring the first problem into view (and focus it), and keep the values
// shown in step with the chosen preset.
(function () {
  "use strict";
  const form = document.getElementById("train-form");
  if (!form) return;

  // The input of a field name; a folded section is opened first so it can be seen.
  function reveal(name) {
    const input = document.getElementById(name);
    if (!input) return null;
    const folded = input.closest("details");
    if (folded) folded.open = true;
    return input;
  }

  function showFirstProblem() {
    const first = form.querySelector(".field.invalid select, .field.invalid input:not([type=hidden])");
    const target = first ? reveal(first.id) : document.getElementById("error-summary");
    if (!target) return;
    target.scrollIntoView({ block: "center" });
    if (first) first.focus({ preventScroll: true });
  }

  // The summary's links open a folded section before the browser jumps to the input.
  const summary = document.getElementById("error-summary");
  if (summary) {
    summary.addEventListener("click", function (event) {
      const link = event.target.closest("a[data-field]");
      if (!link) return;
      const input = reveal(link.dataset.field);
      if (!input) return;
      event.preventDefault();
      input.scrollIntoView({ block: "center" });
      input.focus({ preventScroll: true });
    });
  }

  // Switching the preset shows its values in every input still at the old preset's.
  const mode = document.getElementById("mode");
  if (mode) {
    let previous = mode.value;
    mode.addEventListener("change", function () {
      const next = mode.value;
      form.querySelectorAll("[data-full][data-smoke]").forEach(function (input) {
        if (input.value === input.dataset[previous]) input.value = input.dataset[next];
      });
      previous = next;
    });
  }

  // A newly chosen file replaces the kept upload (the server reads a new upload first):
  // the note names the new file.
  const upload = document.getElementById("csv_upload");
  const kept = document.getElementById("kept-upload");
  if (upload && kept) {
    upload.addEventListener("change", function () {
      if (upload.files.length) kept.textContent = upload.files[0].name;
    });
  }

  showFirstProblem();
})();
