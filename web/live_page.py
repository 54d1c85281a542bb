"""What the run page's live monitor needs beside the charts' series, in its one snapshot
(``live.json``): the stream cursor it goes on from, the plots' moving averages with the
raw tail each one continues from, the KPI cards' figures, the agents' latest accounts and
decisions, and the recent trades. Everything after it comes over the run's event stream
(:mod:`web.live_stream`); nothing here is polled.

The stream cursor is read FIRST, before any figure: whatever is written between the two
reads is both in the snapshot and on the stream, and the page drops the repeats (points
by step, events by seq). Read the other way round, a row written in between would be in
neither.

All reads are bounded whatever the run's length: averages from the store's rollups past
:data:`web.run_series.EXACT_SMOOTH_POINTS`, tails and events read newest first with a
limit, KPI figures from the series' statistics rows.
"""

from __future__ import annotations

from typing import Any

from web.live_tail import stream_start
from web.run_series import smoothed
from web.run_stats import RunData, num

# The plots' averages (key -> window) as the seed draws them; the win rate's window is the
# page's choice (``win_window``, default WIN_WINDOW).
PNL_WINDOW = 10
LOSS_WINDOW = 20
SHARPE_WINDOW = 10
WIN_WINDOW = 20
MAX_WIN_WINDOW = 1000
RECENT_REWARDS = 50        # the "mean of the last 50" KPI
TRADES = 500               # rows of the recent-trades table
MAX_AGENTS = 4             # featured accounts ("agents") the page shows
AGENT_EVENTS = 64          # latest account/decision events read to find each agent's last
# The loss the loss plot draws, the first the run has: a supervised run's train loss (its
# train/loss repeats it), PPO's total loss, else (runs before issue 14) the policy loss.
LOSS_KEYS = ("train/train_loss", "train/loss", "train/policy_loss")


def loss_key(keys: list[str]) -> str | None:
    """The key of the loss plot's main line (None when the run logs no loss)."""
    return next((k for k in LOSS_KEYS if k in keys), None)


def windows(win_window: int, pnl_window: int = PNL_WINDOW) -> dict[str, int]:
    """{key: window} of the averages the page draws: for every key it may draw, so a
    series that first appears over the stream (a page opened as training starts) is
    averaged as it comes."""
    return {"episode/reward": pnl_window, "episode/win": win_window,
            "episode/sharpe": SHARPE_WINDOW, **dict.fromkeys(LOSS_KEYS, LOSS_WINDOW)}


def _latest_per_agent(events: list[dict]) -> list[dict]:
    """The newest event of each agent (events newest first), by agent number."""
    found: dict[int, dict] = {}
    for event in events:
        payload = event["payload"] or {}
        agent = payload.get("agent")
        if isinstance(agent, int) and 0 <= agent < MAX_AGENTS and agent not in found:
            found[agent] = _shown(event)
    return [found[a] for a in sorted(found)]


def _shown(event: dict) -> dict:
    return {"seq": event["seq"], "wall_time": event["wall_time"], "data": event["payload"]}


def kpis(data: RunData) -> dict[str, Any]:
    """The KPI cards' figures from the series' statistics (no series read), and the
    counts each running figure goes on from (the page updates them from the stream)."""
    stats, latest = data.stats, data.latest

    def last(key: str) -> dict | None:
        if key not in latest:
            return None
        return {"step": latest[key]["step"], "value": num(latest[key]["value"])}

    reward = stats.get("episode/reward")
    speed = stats.get("train/steps_per_second")
    return {
        "episode": last("episode/reward"),
        # PPO's global step counts env steps; an epoch-trained run's counts epochs.
        "env_steps": last("train/env_steps") or (
            None if data.supervised else last("train/global_step")),
        "steps_per_second": last("train/steps_per_second"),
        "steps_per_second_mean": {"mean": num(speed["mean"]), "count": speed["finite"]}
        if speed else None,
        "reward": last("episode/reward"),
        "best_reward": {"step": reward["max_step"], "value": num(reward["max_value"])}
        if reward and reward["finite"] else None,
        "policy_loss": last("train/policy_loss"),
        "sharpe": last("episode/sharpe"),
    }


def monitor(data: RunData, win_window: int, max_points: int,
            pnl_window: int = PNL_WINDOW, known: dict[str, list] | None = None,
            ) -> dict[str, Any]:
    """The live monitor's part of a snapshot; ``data.stats`` must be read after
    ``stream_cursor`` (the caller reads the cursor first: see the module docstring).
    ``known``: averages already computed with these windows (not read again)."""
    averages = windows(win_window, pnl_window)
    present = {key: window for key, window in averages.items() if key in data.stats}
    known = known or {}
    smooth = {key: known[key] if key in known else smoothed(data, key, window, max_points)[0]
              for key, window in present.items()}
    # Each average goes on, point by point, from the raw values before it: the page keeps
    # the last `window` of them (and the reward's last 50 for its KPI).
    tail_sizes = dict(present)
    if "episode/reward" in tail_sizes:
        tail_sizes["episode/reward"] = max(tail_sizes["episode/reward"], RECENT_REWARDS)
    tails = {}
    if tail_sizes:
        ids = {data.stats[k]["id"]: k for k in tail_sizes}
        found = data.store.recent_points(ids, max(tail_sizes.values()))
        tails = {key: [{"step": p["step"], "value": num(p["value"])}
                       for p in found[sid][-tail_sizes[key]:]] for sid, key in ids.items()}
    store, run_id = data.store, data.run_id
    accounts = store.latest_events(run_id, ["account"], AGENT_EVENTS)
    decisions = store.latest_events(run_id, ["decision"], AGENT_EVENTS)
    trades = store.latest_events(run_id, ["trade"], TRADES)
    return {"windows": averages, "averages": smooth, "tails": tails, "kpis": kpis(data),
            "loss_key": loss_key(data.keys), "loss_keys": list(LOSS_KEYS),
            "agents": _latest_per_agent(accounts),
            "decisions": _latest_per_agent(decisions),
            "trades": [_shown(e) for e in trades]}


def stream_cursor(data: RunData) -> str:
    """Where the page's stream starts: the run's current end, read before its figures."""
    return stream_start(data.store, data.run_id).text()
