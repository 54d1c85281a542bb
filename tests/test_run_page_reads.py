"""The run page's bounded reads equal a full recomputation, and its incremental feed
(``live.json?after=<cursor>``) sends exactly what came after the cursor.

Store-level equalities run on both engines (``engine_url``); the web feed on the app's
store (SQLite unless DATABASE_URL names another)."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from typing import Any

import numpy as np
import pytest

from Utilities.metric_rollups import ROLLUP_SHIFT
from Utilities.run_store import RunStore
from web import run_series
from web.run_series import LiveCursor, bucket_means, smoothed
from web.run_stats import ROLLING_WINDOW, RunData, episode_records, trailing_means
from web.store import get_store

WALL = 1.7e9


def episode_rows(run_id: str, first: int, last: int, rng: random.Random) -> list[tuple]:
    """Episodes first..last: rewards with ~5% NaN, wins, lengths; one wall second each."""
    rows = []
    for e in range(first, last + 1):
        value = float("nan") if rng.random() < 0.05 else rng.uniform(-3, 3)
        rows += [(run_id, "episode/reward", e, value, WALL + e),
                 (run_id, "episode/win", e, float(rng.random() < 0.4), WALL + e),
                 (run_id, "episode/steps", e, float(rng.randint(10, 90)), WALL + e)]
    return rows


def finite(points: list[dict]) -> list[float]:
    return [p["value"] for p in points if p["value"] is not None and math.isfinite(p["value"])]


def full_statistics(store: RunStore, run_id: str) -> dict[str, Any]:
    """The episode figures recomputed from every stored point (what the page showed before
    its reads were bounded)."""
    rewards = store.metric_series(run_id, "episode/reward")
    wins = store.metric_series(run_id, "episode/win")
    lengths = store.metric_series(run_id, "episode/steps")
    best = max(((p["step"], p["value"]) for p in rewards if p["value"] is not None),
               key=lambda sv: (sv[1], -sv[0]))
    recent_rewards = finite(rewards[-ROLLING_WINDOW:])
    recent_wins = finite(wins[-ROLLING_WINDOW:])
    return {"total_episodes": len(rewards),
            "average_reward": float(np.mean(finite(rewards))),
            "max_reward": best[1], "max_reward_note": f"episode {best[0]:,}",
            "recent_reward": float(np.mean(recent_rewards)),
            "final_win_rate": float(np.mean(recent_wins)),
            "win_rate": float(np.mean(finite(wins))),
            "mean_episode_length": float(np.mean(finite(lengths)))}


def test_figures_equal_a_full_recomputation(any_store: RunStore) -> None:
    rng = random.Random(13)
    run_id = any_store.create_run(name="figures", model_type="ppo")
    any_store.write_batch(metrics=episode_rows(run_id, 1, 1500, rng))
    any_store.write_batch(metrics=episode_rows(run_id, 1501, 1730, rng))  # a second batch
    data = RunData(any_store, any_store.get_run(run_id))
    shown = {s["key"]: s for s in data.statistics()}
    expected = full_statistics(any_store, run_id)
    for key, value in expected.items():
        if key == "max_reward_note":
            assert shown["max_reward"]["note"] == value
        else:
            assert shown[key]["value"] == pytest.approx(value, rel=1e-9), key


def test_last_episodes_equal_the_full_records_cut(any_store: RunStore) -> None:
    rng = random.Random(5)
    run_id = any_store.create_run(name="episodes", model_type="ppo")
    any_store.write_batch(metrics=episode_rows(run_id, 1, 700, rng))
    data = RunData(any_store, any_store.get_run(run_id))
    columns = {k: any_store.metric_series(run_id, k)
               for k in ("episode/reward", "episode/win", "episode/steps")}
    for limit in (1, 37, 250, 700, 5000):
        first = max(1, 700 - limit + 1)
        assert data.episodes(limit) == episode_records(columns, first), limit
    assert data.episode_count() == 700
    assert data.episodes(0) == ([], [])


def test_exact_moving_average_equals_the_full_series_mean(any_store: RunStore) -> None:
    rng = random.Random(7)
    run_id = any_store.create_run(name="exact", model_type="ppo")
    any_store.write_batch(metrics=episode_rows(run_id, 1, 900, rng))
    data = RunData(any_store, any_store.get_run(run_id))
    points = any_store.metric_series(run_id, "episode/reward")
    means = trailing_means(points, 20)
    line, level = smoothed(data, "episode/reward", 20, 1000)
    assert level == 0
    assert [p["step"] for p in line] == [p["step"] for p in points]
    assert [p["value"] for p in line] == pytest.approx(
        [None if math.isnan(m) else m for m in means])


def bucket_mean_by_points(points: list[dict], level: int, window: int) -> list[tuple]:
    """(bucket's last step, mean of the finite values of the buckets within k of it) for
    every bucket with points, from the raw points."""
    shift = ROLLUP_SHIFT * level
    k = max(1, math.ceil(window / (1 << shift)))
    buckets = sorted({p["step"] >> shift for p in points})
    last_step = max(p["step"] for p in points)
    found = []
    for b in buckets:
        inside = finite([p for p in points if b - k < p["step"] >> shift <= b])
        found.append((min(last_step, ((b + 1) << shift) - 1),
                      sum(inside) / len(inside) if inside else None))
    return found


@pytest.mark.parametrize("window", [1, 20, 100, 700])
def test_bucket_moving_average_equals_a_recomputation_from_points(
        any_store: RunStore, monkeypatch, window: int) -> None:
    monkeypatch.setattr(run_series, "EXACT_SMOOTH_POINTS", 50)  # a small run takes the rule
    rng = random.Random(window)
    run_id = any_store.create_run(name="buckets", model_type="ppo")
    rows = episode_rows(run_id, 3, 2600, rng)
    rows = [r for r in rows if not 1000 <= r[2] < 1300]  # a gap: empty buckets
    any_store.write_batch(metrics=rows)
    data = RunData(any_store, any_store.get_run(run_id))
    line, level = smoothed(data, "episode/reward", window, 100)
    assert level >= 1 and len(line) <= 100
    expected = bucket_mean_by_points(any_store.metric_series(run_id, "episode/reward"),
                                     level, window)
    assert [p["step"] for p in line] == [s for s, _ in expected]
    assert [p["value"] for p in line] == pytest.approx([v for _, v in expected])


def test_bucket_means_of_buckets_without_finite_values_are_none() -> None:
    buckets = [{"bucket": 0, "last": 7, "finite": 0, "total": 0.0},
               {"bucket": 1, "last": 15, "finite": 2, "total": 3.0},
               {"bucket": 5, "last": 47, "finite": 0, "total": 0.0}]
    assert bucket_means(buckets, 1, 1) == [{"step": 7, "value": None},
                                           {"step": 15, "value": 1.5},
                                           {"step": 47, "value": None}]
    # Two buckets wide: bucket 5's window (4, 5) holds no bucket with values.
    assert [p["value"] for p in bucket_means(buckets, 16, 1)] == [None, 1.5, None]


PACES = {"steady": lambda s: s / 10, "plateaus": lambda s: float(s // 700),
         "speeding up": lambda s: (s / 1000) ** 0.5, "slowing down": lambda s: (s / 300) ** 2}


@pytest.mark.parametrize("pace", sorted(PACES))
def test_steps_at_times_equal_a_bisection_of_the_full_series(any_store: RunStore,
                                                             pace: str) -> None:
    run_id = any_store.create_run(name="times", model_type="ppo")
    steps = sorted(random.Random(3).sample(range(1, 50_000), 3000))
    any_store.write_batch(metrics=[(run_id, "episode/reward", s, 1.0, WALL + PACES[pace](s))
                                   for s in steps])
    points = any_store.metric_series(run_id, "episode/reward")
    walls = [p["wall_time"] for p in points]
    times = [WALL - 5, walls[0], walls[len(walls) // 3], walls[-1], WALL + 1e9]
    times += [random.Random(i).uniform(walls[0], walls[-1]) for i in range(40)]
    expected = [points[i - 1]["step"] if (i := bisect_right(walls, t)) else None
                for t in times]
    assert any_store.steps_at_times(run_id, "episode/reward", times) == expected
    assert any_store.steps_at_times(run_id, "no/such", times[:2]) == [None, None]


def test_latest_events_and_their_count_are_bounded(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="events", model_type="ppo")
    seqs = any_store.log_events(run_id, [("checkpoint", {"path": f"{i}.pt"}, WALL + i)
                                         for i in range(30)] +
                                [("alert", {"title": "a"}, WALL + 40)])
    latest = any_store.latest_events(run_id, ["checkpoint"], 20)
    assert [e["payload"]["path"] for e in latest] == [f"{i}.pt" for i in range(29, 9, -1)]
    assert any_store.event_count(run_id, ["checkpoint"]) == (30, seqs[29])
    assert any_store.event_count(run_id, ["log"]) == (0, 0)


# ------------------------------------------------------------------------ the web feed


def live(client, run_id: str, query: str = "", status: int = 200) -> dict:
    response = client.get(f"/runs/{run_id}/live.json{query}")
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def merged(page: dict, reply: dict) -> dict:
    """What the page's script makes of a delta reply (static/js/history.js merge())."""
    for key, points in reply["series"].items():
        page["series"][key] = page["series"].get(key, []) + points
    for key, tail in reply["smoothed"].items():
        kept = [p for p in page["smoothed"].get(key, [])
                if tail["from"] is None or p["step"] < tail["from"]]
        page["smoothed"][key] = kept + tail["points"]
    if reply["checkpoints"]:  # the newest checkpoint is the one --resume uses
        page["checkpoints"] = [{**c, "resume": False} for c in page["checkpoints"]]
    page["checkpoints"] = (page["checkpoints"] + reply["checkpoints"])[-reply["page_checkpoints"]:]
    page["events"] = (page["events"] + reply["events"])[-reply["page_events"]:]
    for key in ("statistics", "keys", "checkpoint_count", "cursor"):
        page[key] = reply[key]
    return page


def close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 (a tail's mean sums fewer terms than the whole line's)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture(autouse=True)
def _checkpoints_folder(tmp_path, monkeypatch) -> None:
    """Checkpoint events below name files relative to the working folder: this test's."""
    monkeypatch.chdir(tmp_path)


def saved(name: str) -> str:
    """A checkpoint file that exists (run pages list only those)."""
    with open(name, "wb") as fh:
        fh.write(b"state")
    return name


def start_run(app, episodes: int) -> str:
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="live", model_type="ppo")
        store.write_batch(metrics=episode_rows(run_id, 1, episodes, random.Random(1)))
        store.log_events(run_id, [("checkpoint", {"path": saved("a.pt"), "step": 1}, WALL + 1),
                                  ("alert", {"level": "info", "title": "first"}, WALL + 2)])
    return run_id


def write_more(app, run_id: str, first: int, last: int) -> None:
    with app.app_context():
        store = get_store()
        store.write_batch(metrics=episode_rows(run_id, first, last, random.Random(first)),
                          events=[(run_id, "checkpoint", {"path": saved(f"{last}.pt"),
                                                          "step": last},
                                   WALL + last),
                                  (run_id, "alert", {"level": "warning", "title": f"at {last}"},
                                   WALL + last)])


@pytest.mark.parametrize("exact", [True, False])
def test_after_a_cursor_the_feed_sends_exactly_what_is_new(app, client, monkeypatch,
                                                           exact: bool) -> None:
    if not exact:
        monkeypatch.setattr(run_series, "EXACT_SMOOTH_POINTS", 50)
    run_id = start_run(app, 300)
    page = live(client, run_id)
    assert page["mode"] == "snapshot" and page["checkpoint_count"] == 1
    assert [e["title"] for e in page["events"]] == ["first"]

    write_more(app, run_id, 301, 340)
    reply = live(client, run_id, f"?after={page['cursor']}")
    assert reply["mode"] == "delta"
    assert sorted(reply["series"]) == ["episode/reward", "episode/steps"]  # charted keys
    with app.app_context():
        new = {k: get_store().metric_series(run_id, k, start_step=301)
               for k in ("episode/reward", "episode/steps")}
    assert reply["series"] == {k: [{"step": p["step"], "value": p["value"]} for p in points]
                               for k, points in new.items()}
    assert [c["path"] for c in reply["checkpoints"]] == ["340.pt"]
    assert reply["checkpoint_count"] == 2
    assert [e["title"] for e in reply["events"]] == ["at 340"]
    assert reply["cursor"] != page["cursor"]

    # Appended, the page holds what a fresh snapshot would show.
    page = merged(page, reply)
    fresh = live(client, run_id)
    for part in ("series", "smoothed", "checkpoints", "events", "statistics"):
        assert close(page[part], fresh[part]), part

    nothing = live(client, run_id, f"?after={reply['cursor']}")
    assert nothing["mode"] == "delta" and nothing["series"] == {} and nothing["events"] == []
    assert nothing["cursor"] == reply["cursor"]


def test_a_page_far_behind_gets_a_snapshot(app, client, monkeypatch) -> None:
    run_id = start_run(app, 100)
    cursor = live(client, run_id)["cursor"]
    monkeypatch.setattr(run_series, "DELTA_POINTS", 50)
    write_more(app, run_id, 101, 130)  # 90 new points
    reply = live(client, run_id, f"?after={cursor}")
    assert reply["mode"] == "snapshot"
    assert len(reply["series"]["episode/reward"]) == 130


def test_more_new_events_than_the_page_lists_sends_the_newest(app, client) -> None:
    run_id = start_run(app, 10)
    cursor = live(client, run_id)["cursor"]
    with app.app_context():
        get_store().log_events(run_id, [("alert", {"title": f"a{i}"}, WALL + 100 + i)
                                        for i in range(70)] +
                               [("checkpoint", {"path": saved(f"{i}.pt")}, WALL + 200 + i)
                                for i in range(25)])
    reply = live(client, run_id, f"?after={cursor}")
    assert [e["title"] for e in reply["events"]] == [f"a{i}" for i in range(20, 70)]
    assert [c["path"] for c in reply["checkpoints"]] == [f"{i}.pt" for i in range(5, 25)]
    assert reply["checkpoint_count"] == 26
    snapshot = live(client, run_id)
    assert len(snapshot["checkpoints"]) == 20 and snapshot["checkpoint_count"] == 26


@pytest.mark.parametrize("after", ["abc", "1.2", "1.2.3", "-1.0.0.0", "1.2.0.0.0", "",
                                   "1.2.11.0", "1e3.0.0.0", "9" * 19 + ".0.0.0"])
def test_a_bad_cursor_is_a_400_naming_after(app, client, after: str) -> None:
    run_id = start_run(app, 5)
    body = live(client, run_id, f"?after={after}", status=400)
    assert body["field"] == "after" and "after" in body["error"]


def test_a_cursor_for_an_unknown_run_is_a_404(client) -> None:
    body = live(client, "00000000-0000-4000-8000-000000000000", "?after=1.2.0.0", status=404)
    assert body["field"] == "run_id"


def test_cursor_text_round_trips() -> None:
    cursor = LiveCursor(123456789, 42, (0, 3))
    assert LiveCursor.parse(cursor.text()) == cursor


def test_run_page_and_api_list_the_latest_checkpoints_and_count_them(app, client) -> None:
    run_id = start_run(app, 50)
    with app.app_context():
        get_store().log_events(run_id, [("checkpoint", {"path": saved(f"c{i}.pt")},
                                         WALL + 60 + i)
                                        for i in range(30)])
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'id="checkpoint-count">31<' in page and "the newest 20 on disk" in page
    assert "c29.pt" in page and "c9.pt" not in page
    run = client.get(f"/api/training-runs/{run_id}?episodes=10").get_json()
    assert run["checkpoint_count"] == 31 and len(run["checkpoint_paths"]) == 31
    assert [e["episode"] for e in run["metrics"]["episodes"]] == list(range(41, 51))
    assert run["metrics"]["episode_count"] == 50
