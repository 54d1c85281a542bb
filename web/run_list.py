"""The run list: what the history page's rows and the runs API say about each run of a
page, read for the whole page at once.

A page costs the same few statements whatever its size or its runs' lengths: the runs
and their count, one query for every run's series statistics (kept by the writer:
last step, last value …) and one for every run's latest episodes
(:meth:`Utilities.run_store.RunReads.episode_windows`), all in one read scope of the
store (:meth:`Utilities.run_store.RunStore.reading`). Before issue 13 each run cost
a query and a scan of every one of its metric rows.

A run's latest episodes are counted in episode numbers, as the run page and the API
always have: the window of the last N episodes is episodes ``last - N + 1 .. last``,
``last`` the last step of ``episode/reward``.
"""

from __future__ import annotations

from typing import Any

from Utilities.number_format import figure
from Utilities.run_list_reads import REWARD_KEY, WIN_KEY
from Utilities.run_store import RunReads
from web.run_stats import ROLLING_WINDOW, episode_records, num, values

# (key, label, kind) of a run's recent episode figures and of its final epoch figure
# (the first that has a value), in the order a row shows them.
RECENT_FIGURES = ((REWARD_KEY, "mean reward", "num"), (WIN_KEY, "win rate", "pct"))
FINAL_EPOCH_FIGURES = (("train/val_accuracy", "val. accuracy", "pct"),
                       ("train/val_loss", "val. loss", "num"))
EPOCH_PREFIX = "train/"


def overviews(reads: RunReads, runs: list[dict]) -> list[dict[str, Any]]:
    """What each run's row shows beside its fields, for a page of runs (two statements)."""
    ids = [run["run_id"] for run in runs]
    stats = reads.series_statistics(ids)
    windows = reads.episode_windows(stats, ROLLING_WINDOW,
                                    keys=[key for key, _, _ in RECENT_FIGURES])
    return [overview(stats[run_id], windows[run_id]) for run_id in ids]


def overview(stats: dict[str, dict], window: dict[str, list[dict]]) -> dict[str, Any]:
    """A row's episodes (or epochs) and its final metric: the mean reward and win rate
    of the last ``ROLLING_WINDOW`` episodes, else the last epoch's validation figure.

    ``stats``: the run's series statistics by key; ``window``: the points of its last
    ``ROLLING_WINDOW`` episodes by key."""
    result: dict[str, Any] = {"episodes": None, "epochs": None, "final": None}
    if REWARD_KEY in stats:
        parts = []
        for key, label, kind in RECENT_FIGURES:
            recent = values(window.get(key, []))
            if recent:
                parts.append((label, figure(sum(recent) / len(recent), kind),
                              f"{label} of the last {len(recent)} episodes"))
        return {**result, "episodes": stats[REWARD_KEY]["last_step"], "final": parts or None}
    epoch_steps = [s["last_step"] for key, s in stats.items() if key.startswith(EPOCH_PREFIX)]
    if epoch_steps:
        result["epochs"] = max(epoch_steps)
    for key, label, kind in FINAL_EPOCH_FIGURES:
        last = num(stats[key]["last_value"]) if key in stats else None
        if last is not None:
            result["final"] = [(label, figure(last, kind), f"{label} of the last epoch")]
            break
    return result


def episode_metrics(reads: RunReads, runs: list[dict], episodes: int) -> list[dict[str, Any]]:
    """Each run's ``metrics`` in the runs API, for a page of runs (at most two
    statements): its last ``episodes`` episodes, their rolling win rate and its
    episode count."""
    ids = [run["run_id"] for run in runs]
    stats = reads.series_statistics(ids)
    # The win series reaches back a window further: the first episode's rolling rate
    # covers a full window.
    windows = (reads.episode_windows(stats, episodes,
                                     win_episodes=episodes + ROLLING_WINDOW - 1)
               if episodes else {})
    return [list_metrics(stats[run_id], windows.get(run_id, {}), episodes) for run_id in ids]


def list_metrics(stats: dict[str, dict], window: dict[str, list[dict]],
                 episodes: int) -> dict[str, Any]:
    """A run's last ``episodes`` episode records, their rolling win rate and the episode
    count, from its series statistics and the points of its episode window."""
    if REWARD_KEY not in stats:
        return {"episode_count": 0, "episodes": [], "rolling_win_rate": []}
    last = stats[REWARD_KEY]["last_step"]
    if episodes == 0:
        return {"episode_count": last, "episodes": [], "rolling_win_rate": []}
    found, rolling = episode_records(window, max(1, last - episodes + 1))
    return {"episode_count": last, "episodes": found, "rolling_win_rate": rolling}
