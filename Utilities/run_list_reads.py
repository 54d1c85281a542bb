"""What a page of runs reads besides the runs: the latest episodes of many runs in one
statement, whatever the page's size or the runs' lengths.

Functions take an open SQLAlchemy Session of :class:`Utilities.run_store.RunStore` (its
read scope, :meth:`RunStore.reading`), like :mod:`Utilities.metric_reads`.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from Utilities.metric_reads import point
from Utilities.run_store_schema import MetricPoint, MetricSeries

REWARD_KEY = "episode/reward"  # its last step is the run's episode count
WIN_KEY = "episode/win"
EPISODE_PREFIX = "episode/"
_SERIES, _POINTS = MetricSeries.__table__, MetricPoint.__table__


def episode_windows(session: Session, run_ids: Iterable[str], episodes: int, *,
                    win_episodes: int | None = None, keys: Iterable[str] | None = None,
                    ) -> dict[str, dict[str, list[dict]]]:
    """{run_id: {key: points}} of the runs' last ``episodes`` episodes, in one statement.

    A run's window is its episodes from ``max(1, last - episodes + 1)`` on, where ``last``
    is the last step of its ``episode/reward`` series; ``episode/win`` reaches back
    ``win_episodes`` instead (default ``episodes``), so a rolling win rate over the window
    has a full history. Every ``episode/*`` series comes back, or only ``keys``; points
    in (step, write) order; a run without rewards, or a series without a point in its
    window, is left out. Each series is read by an index range on (series_id, step)
    bounded by its run's reward series' own row, so no per-series parameter is sent and
    the statement is the same for a page of 5 runs or 1,000 (a UNION of per-series tails
    would pass SQLite's limit of 500 compound terms on a large page)."""
    wanted = sorted(set(run_ids))
    result: dict[str, dict[str, list[dict]]] = {run_id: {} for run_id in wanted}
    if not wanted or episodes < 1:
        return result
    win_episodes = episodes if win_episodes is None else win_episodes
    reward, series, p = _SERIES.alias("reward"), _SERIES.alias("series"), _POINTS.c
    back = (episodes if win_episodes == episodes else
            sa.case((series.c.key == WIN_KEY, win_episodes), else_=episodes))
    low = reward.c.last_step - back + 1
    # One lower bound, not "step >= low AND step >= 1": a planner may take the constant
    # one for the index range and read the whole series.
    first = sa.case((low > 1, low), else_=1)
    chosen = (series.c.key.startswith(EPISODE_PREFIX) if keys is None
              else series.c.key.in_(sorted(set(keys))))
    query = (
        select(series.c.run_id, series.c.key, p.step, p.value, p.wall_time)
        .select_from(reward.join(series, series.c.run_id == reward.c.run_id)
                     .join(_POINTS, p.series_id == series.c.id))
        .where(reward.c.run_id.in_(wanted), reward.c.key == REWARD_KEY, reward.c.points > 0,
               chosen, p.step >= first)
        .order_by(series.c.run_id, series.c.key, p.step, p.id))
    for row in session.execute(query):
        result[row.run_id].setdefault(row.key, []).append(
            point(row.step, row.value, row.wall_time))
    return result
