// The live overview (/live): totals and one card per run, drawn from the page's first
// overview and then from each one the server pushes (EventSource on /api/live/overview).
(function () {
  "use strict";
  var urls = document.getElementById("live-urls").dataset;
  var cards = document.getElementById("live-cards");
  var template = document.getElementById("card-template");
  var streamState = document.getElementById("stream-state");
  var byRun = {};

  function number(value, digits) {
    if (value === null || value === undefined) return "—";
    return Number(value).toLocaleString(undefined, {maximumFractionDigits: digits});
  }
  function percent(value) { return value === null || value === undefined ? "—" : number(100 * value, 1) + " %"; }
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds || 0));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }
  function url(pattern, run, action) {
    return pattern.replace("RUN_ID", encodeURIComponent(run)).replace("ACTION", action || "");
  }
  function set(card, field, text) { card.querySelector('[data-field="' + field + '"]').textContent = text; }

  function newCard(run) {
    var card = template.content.firstElementChild.cloneNode(true);
    card.dataset.runId = run.run_id;
    card.querySelector('[data-field="name"]').href = url(urls.run, run.run_id);
    card.querySelector('[data-field="open"]').href = url(urls.run, run.run_id);
    card.querySelector('[data-field="again"]').href = url(urls.again, run.run_id);
    card.addEventListener("click", function (event) {
      var action = event.target.getAttribute("data-action");
      if (action) control(card, action);
    });
    return card;
  }

  function control(card, action) {
    if (action === "stop" && !window.confirm("Stop this run? The model trained so far is saved.")) return;
    var note = card.querySelector('[data-field="note"]');
    note.textContent = "asking the trainer to " + action + "…";
    fetch(url(urls.control, card.dataset.runId, action), {method: "POST"}).then(function (response) {
      return response.json().then(function (body) {
        note.textContent = response.ok ? action + " requested: the trainer applies it after its current iteration"
          : (body.error || "HTTP " + response.status);
        if (response.ok) enable(card, body.allowed_actions, body.state);
      });
    }).catch(function (error) { note.textContent = "could not reach the server: " + error; });
  }

  function enable(card, allowed, state) {
    card.querySelectorAll("button[data-action]").forEach(function (button) {
      button.disabled = allowed.indexOf(button.dataset.action) < 0;
      button.title = button.disabled ? "not possible while the run is " + state : "";
    });
  }

  function drawCard(run) {
    var card = byRun[run.run_id] || (byRun[run.run_id] = newCard(run));
    set(card, "name", run.name);
    var badge = card.querySelector('[data-field="state"]');
    badge.textContent = run.state;
    badge.className = "badge " + run.state;
    set(card, "model_type", run.model_type);
    set(card, "elapsed", duration(run.elapsed_seconds));
    set(card, "episodes", number(run.episodes, 0));
    set(card, "env_steps", number(run.env_steps, 0));
    set(card, "steps_per_second", number(run.steps_per_second, 0));
    set(card, "latest_reward", number(run.latest_reward, 3));
    set(card, "best_reward", run.best_reward === null ? "—" : number(run.best_reward, 3) + " (ep " + number(run.best_episode, 0) + ")");
    set(card, "mean_reward", number(run.mean_reward, 3));
    set(card, "win_rate", percent(run.win_rate));
    set(card, "policy_loss", number(run.policy_loss === null ? run.val_loss : run.policy_loss, 4));
    var error = card.querySelector('[data-field="error"]');
    error.hidden = !run.error;
    error.textContent = run.error || "";
    card.classList.toggle("ended", !run.live);
    enable(card, run.allowed_actions, run.state);
    return card;
  }

  function draw(overview) {
    var problem = document.getElementById("overview-error");
    problem.hidden = !overview.error;
    problem.textContent = overview.error || "";
    if (overview.error) return;
    var totals = overview.totals || {};
    document.getElementById("total-active").textContent = number(totals.active, 0);
    document.getElementById("total-episodes").textContent = number(totals.episodes, 0);
    document.getElementById("total-env-steps").textContent = number(totals.env_steps, 0);
    document.getElementById("total-steps-per-second").textContent = number(totals.steps_per_second, 0);
    document.getElementById("total-avg-reward").textContent = number(totals.avg_reward, 3);
    document.getElementById("total-best-reward").textContent = number(totals.best_reward, 3);
    document.getElementById("total-policy-loss").textContent = number(totals.policy_loss, 4);
    document.getElementById("total-elapsed").textContent = duration(totals.elapsed_seconds);
    var shown = {};
    overview.runs.forEach(function (run, index) {
      var card = drawCard(run);
      shown[run.run_id] = true;
      if (cards.children[index] !== card) cards.insertBefore(card, cards.children[index] || null);
    });
    Object.keys(byRun).forEach(function (id) {
      if (!shown[id]) { byRun[id].remove(); delete byRun[id]; }
    });
    document.getElementById("no-runs").hidden = overview.runs.length > 0;
  }

  draw(JSON.parse(document.getElementById("overview-first").textContent));
  var source = new EventSource(urls.stream);
  source.addEventListener("overview", function (event) { draw(JSON.parse(event.data)); });
  source.onopen = function () { streamState.textContent = "live"; streamState.className = "stream-state live"; };
  source.onerror = function () { streamState.textContent = "reconnecting…"; streamState.className = "stream-state down"; };
})();
