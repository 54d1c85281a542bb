// Dark / light / cyberpunk theme (the seeds' three), remembered per browser. Runs in
// <head> so the page never flashes. The toggle cycles through them and then tells the
// page with a "gm-theme" event (charts recolour themselves on it); pages that listen for
// the button's click still see it after the theme has changed.
(function () {
  var THEMES = ["dark", "light", "cyberpunk"];
  var saved = null;
  try { saved = localStorage.getItem("gm-theme"); } catch (e) { /* storage disabled */ }
  // A person's choice, else the server's default (the dashboard's `theme` setting, put on
  // <html> by base.html), else dark.
  var fallback = document.documentElement.getAttribute("data-theme");
  document.documentElement.setAttribute("data-theme", THEMES.indexOf(saved) >= 0 ? saved
    : THEMES.indexOf(fallback) >= 0 ? fallback : "dark");

  function label(button, theme) {
    var next = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    button.title = "Theme: " + theme + " (click for " + next + ")";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    label(button, document.documentElement.getAttribute("data-theme"));
    button.addEventListener("click", function () {
      var now = document.documentElement.getAttribute("data-theme");
      var next = THEMES[(THEMES.indexOf(now) + 1) % THEMES.length];
      document.documentElement.setAttribute("data-theme", next);
      try { localStorage.setItem("gm-theme", next); } catch (e) { /* ignore */ }
      label(button, next);
      document.dispatchEvent(new CustomEvent("gm-theme", {detail: {theme: next}}));
    });
  });
})();
