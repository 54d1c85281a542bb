// Dark / light theme, remembered per browser. Runs in <head> so the page never flashes.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("gm-theme"); } catch (e) { /* storage disabled */ }
  document.documentElement.setAttribute("data-theme", saved || document.documentElement.getAttribute("data-theme") || "dark");
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      var next = document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", next);
      try { localStorage.setItem("gm-theme", next); } catch (e) { /* ignore */ }
    });
  });
})();
