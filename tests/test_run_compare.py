"""Compare, leaderboard and experiment views on SQLite and PostgreSQL: the 2–20 rule,
unknown runs and metrics, exports that parse back to the same tables, differing
hyperparameters, figures equal to a recomputation from the raw points, and SQL statement
counts that do not grow with the number of runs."""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers.apps import drop_all, error_of, make_app
from tests.helpers.compare_runs import add_run, loss, reward, save_backtest
from Utilities.run_figures import direction_of, figures_of_runs
from Utilities.run_store import RunStore
from web.store import get_store


@pytest.fixture()
def compare_app(engine_url: str, tmp_path: Path) -> Iterator[Flask]:
    (tmp_path / "Models").mkdir()
    app = make_app(engine_url, tmp_path / "Models", tmp_path)
    yield app
    with app.app_context():
        drop_all(get_store())


def seeded(app: Flask, count: int, **kwargs) -> list[str]:
    with app.app_context():
        store = get_store()
        return [add_run(store, i, **kwargs) for i in range(count)]


def statements(app: Flask, path: str) -> int:
    """SQL statements one GET of ``path`` sends (it must answer 200)."""
    seen: list[str] = []
    with app.app_context():
        engine = get_store().engine

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        response = app.test_client().get(path)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200, response.get_data(as_text=True)
    return len(seen)


# ----------------------------------------------------------------------- figures


def test_figures_equal_a_recomputation_from_the_raw_points(any_store: RunStore) -> None:
    ids = [add_run(any_store, i, episodes=150 + 7 * i) for i in range(3)]
    runs = [any_store.get_run(r) for r in ids]
    figures = figures_of_runs(any_store, runs)
    for index, (run_id, found) in enumerate(zip(ids, figures, strict=True)):
        for key in ("episode/reward", "train/policy_loss"):
            points = any_store.metric_series(run_id, key)
            values = [p["value"] for p in points if p["value"] is not None]
            expect_best = (min if direction_of(key) == "lower" else max)(values)
            series = found.series[key]
            assert series["final"] == pytest.approx(points[-1]["value"])
            assert series["best"] == pytest.approx(expect_best)
            assert series["mean"] == pytest.approx(sum(values) / len(values))
            assert series["points"] == len(points)
        # the functions the helper logged, recomputed independently of the store
        episodes = 150 + 7 * index
        rewards = [v for e in range(1, episodes + 1) if not math.isnan(v := reward(index, e))]
        assert found.value("best:episode/reward") == pytest.approx(max(rewards))
        assert found.value("final:train/policy_loss") == pytest.approx(loss(index, 12))
        assert found.value("best:train/policy_loss") == pytest.approx(loss(index, 12))
        assert found.value("summary:test_return_pct") == 2.0 * index - 5
        assert found.value("backtest:Return [%]") is None


def test_overlay_points_keep_ends_and_extremes(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="long", model_type="ppo")
    values = [math.sin(s / 50) * (1 + s / 5000) for s in range(1, 20_001)]
    values[7_777] = 99.0  # a spike the overlay must keep
    any_store.log_metrics(run_id, [("k", s, v, 1.0 + s) for s, v in enumerate(values, 1)])
    stats = any_store.series_statistics([run_id])[run_id]["k"]
    with any_store.reading() as reads:
        points = reads.overlay_points(stats, 1000)
        short = reads.overlay_points(stats, 30_000)
    assert 1000 / 8 <= len(points) <= 1000
    steps = [p["step"] for p in points]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 20_000
    assert max(p["value"] for p in points) == 99.0
    assert min(p["value"] for p in points) == pytest.approx(min(values))
    assert [p["value"] for p in short] == pytest.approx(values)  # short enough: whole


def test_direction_rule() -> None:
    assert direction_of("train/val_loss") == "lower"
    assert direction_of("episode/reward") == "higher"
    assert direction_of("backtest:Max. Drawdown [%]") == "zero"
    assert direction_of("summary:best_val_loss") == "lower"
    assert direction_of("backtest:Sharpe Ratio") == "higher"


def test_figures_take_one_statement_for_any_number_of_runs(any_store: RunStore) -> None:
    ids = [add_run(any_store, i, episodes=20, updates=2) for i in range(12)]
    runs = [any_store.get_run(r) for r in ids]
    seen: list[str] = []

    def listener(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    counts = []
    for size in (0, 2, 12):
        seen.clear()
        sa.event.listen(any_store.engine, "before_cursor_execute", listener)
        try:
            with any_store.reading() as reads:
                figures_of_runs(reads, runs[:size])
        finally:
            sa.event.remove(any_store.engine, "before_cursor_execute", listener)
        counts.append(len(seen))
    assert counts[1] - counts[0] == counts[2] - counts[0] == 1  # the one statistics read


# ------------------------------------------------------------------- compare API


def test_compare_needs_two_to_twenty_runs(compare_app: Flask) -> None:
    ids = seeded(compare_app, 2, episodes=10, updates=2)
    client = compare_app.test_client()
    assert error_of(client.get(f"/api/compare?runs={ids[0]}"), 422)["field"] == "runs"
    many = ",".join(ids + [str(uuid.uuid4()) for _ in range(19)])
    body = error_of(client.get(f"/api/compare?runs={many}"), 422)
    assert body["field"] == "runs" and "21" in body["error"]
    assert error_of(client.get("/api/compare.csv?runs="), 422)["field"] == "runs"
    page = client.get(f"/compare?runs={ids[0]}")
    assert page.status_code == 422 and "2 to 20 runs" in page.get_data(as_text=True)
    assert client.get(f"/compare?runs={ids[0]},{ids[1]}").status_code == 200
    chooser = client.get("/compare")  # nothing chosen: the ways to choose, not an error
    assert chooser.status_code == 200 and 'id="choose"' in chooser.get_data(as_text=True)


def test_unknown_runs_are_404(compare_app: Flask) -> None:
    ids = seeded(compare_app, 2, episodes=10, updates=2)
    client = compare_app.test_client()
    stranger = str(uuid.uuid4())
    body = error_of(client.get(f"/api/compare?runs={ids[0]},{stranger}"), 404)
    assert stranger in body["error"] and body["field"] == "runs"
    assert error_of(client.get(f"/api/compare.json?runs={ids[0]},not-a-run"), 404)
    assert client.get(f"/compare?runs={ids[0]},{stranger}").status_code == 404
    assert error_of(client.get("/api/compare?experiment=nobody"), 404)["field"] == "experiment"


def test_overlay_series_by_each_x_axis(compare_app: Flask) -> None:
    ids = seeded(compare_app, 3)
    client = compare_app.test_client()
    runs = ",".join(ids)
    body = client.get(f"/api/compare?runs={runs}&keys=episode/reward,train/policy_loss"
                      "&x=episode&points=50").get_json()
    assert body["keys"] == ["episode/reward", "train/policy_loss"]
    lines = body["series"]["episode/reward"]
    assert [line["run_id"] for line in lines] == ids
    assert all(len(line["points"]) <= 50 for line in lines)
    xs = [x for x, _ in lines[0]["points"]]
    assert xs[0] == 1 and xs[-1] == 120 and xs == sorted(xs)  # both ends kept
    # env step: train/* by iteration (64 steps each), exactly
    body = client.get(f"/api/compare?runs={runs}&keys=train/policy_loss&x=step").get_json()
    assert [x for x, _ in body["series"]["train/policy_loss"][0]["points"]] == \
        [64 * u for u in range(1, 13)]
    # episodes by wall time: monotone, between the first and the last update's env step
    body = client.get(f"/api/compare?runs={runs}&keys=episode/reward&x=step").get_json()
    steps = [x for x, _ in body["series"]["episode/reward"][0]["points"]]
    assert steps == sorted(steps) and steps[0] >= 64 and steps[-1] == 64 * 12
    body = client.get(f"/api/compare?runs={runs}&keys=episode/reward&x=wall_time").get_json()
    seconds = [x for x, _ in body["series"]["episode/reward"][1]["points"]]
    assert seconds == sorted(seconds) and seconds[-1] - seconds[0] == pytest.approx(59.5, abs=0.01)
    assert error_of(client.get(f"/api/compare?runs={runs}&x=time"), 422)["field"] == "x"
    assert error_of(client.get(f"/api/compare?runs={runs}&keys=nope"), 422)["field"] == "keys"


def test_differing_hyperparameters_come_first(compare_app: Flask) -> None:
    ids = seeded(compare_app, 3, episodes=10, updates=2)
    body = compare_app.test_client().get(f"/api/compare?runs={','.join(ids)}").get_json()
    rows = body["hyperparameters"]
    differs = [row["key"] for row in rows if row["differs"]]
    assert differs == ["train_params.learning_rate", "train_params.n_envs"]
    assert [row["differs"] for row in rows] == sorted((row["differs"] for row in rows),
                                                      reverse=True)
    same = {row["key"]: row["values"] for row in rows if not row["differs"]}
    assert same["model_params.hidden_dim"] == [64, 64, 64]
    rate = next(row for row in rows if row["key"] == "train_params.learning_rate")
    assert rate["values"] == pytest.approx([1e-4, 2e-4, 3e-4])
    page = compare_app.test_client().get(f"/compare?runs={','.join(ids)}").get_data(
        as_text=True)
    cells = page[page.index('data-key="train_params.learning_rate"'):].split("</tr>")[0]
    assert [c.split("</td>")[0] for c in cells.split("<td>")[2:]] == [
        "0.0001", "0.0002", "0.0003"]  # as set, without float noise (0.0001 * 3)


def test_exports_parse_back_to_the_tables(compare_app: Flask, tmp_path: Path) -> None:
    models = ["PPO_a", "PPO_b", ""]
    with compare_app.app_context():
        store = get_store()
        ids = [add_run(store, i, model_dir=f"/m/{m}" if m else "", episodes=30)
               for i, m in enumerate(models)]
    root = tmp_path / "backtests"
    save_backtest(root, "PPO_a", "a-old-oos", return_pct=3.0, created_at="2026-01-01T00:00:00Z")
    save_backtest(root, "PPO_a", "a-new-in", return_pct=50.0, created_at="2026-02-01T00:00:00Z",
                  in_sample=True)
    save_backtest(root, "PPO_b", "b-1", return_pct=6.0, created_at="2026-01-05T00:00:00Z")
    client = compare_app.test_client()
    runs = ",".join(ids)
    tables = client.get(f"/api/compare?runs={runs}").get_json()
    bt = tables["backtests"]
    assert [s and s["result_id"] for s in bt["sources"]] == ["a-old-oos", "b-1", None]
    returns = next(row for row in bt["rows"] if row["key"] == "Return [%]")
    assert returns["values"] == [3.0, 6.0, None] and returns["best"] == 1
    assert returns["baselines"] == {"Buy & Hold": [4.0, 4.0, None],
                                    "Random": [-1.5, -1.5, None]}

    exported = client.get(f"/api/compare.json?runs={runs}")
    assert "attachment" in exported.headers["Content-Disposition"]
    parsed = json.loads(exported.get_data(as_text=True))
    for name in ("runs", "hyperparameters", "summary", "backtests"):
        assert parsed[name] == tables[name], name

    response = client.get(f"/api/compare.csv?runs={runs}")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[1] == ["run", "run_id", *ids]
    by_key = {(row[0], row[1]): row[2:] for row in rows[2:]}
    rates = [float(v) for v in by_key[("hyperparameter", "train_params.learning_rate")]]
    assert rates == [1e-4 * (i + 1) for i in range(3)]  # exact: repr round-trips
    best = [float(v) for v in by_key[("summary", "best:episode/reward")]]
    assert best == pytest.approx([r["values"][i] for r in tables["summary"]
                                  if r["key"] == "best:episode/reward" for i in range(3)])
    assert by_key[("backtest", "Return [%]")] == ["3.0", "6.0", ""]
    assert by_key[("baseline:Random", "Return [%]")] == ["-1.5", "-1.5", ""]
    assert len(rows) == 2 + len(tables["hyperparameters"]) + len(tables["summary"]) + \
        sum(1 + len(r["baselines"]) for r in bt["rows"])


def test_an_experiment_compares_its_first_runs_by_the_metric(compare_app: Flask) -> None:
    ids = seeded(compare_app, 4, episodes=20, updates=2, experiment="lr-sweep")
    seeded(compare_app, 1, episodes=20, updates=2, experiment="other")
    client = compare_app.test_client()
    body = client.get("/api/compare?experiment=lr-sweep&metric=summary:test_return_pct"
                      "&tables=0").get_json()
    assert [r["run_id"] for r in body["runs"]] == ids[::-1]  # test return 2i - 5: best last
    assert body["experiment"] == "lr-sweep"
    one = error_of(client.get("/api/compare?experiment=other"), 422)
    assert one["field"] == "experiment"
    assert client.get("/compare?experiment=lr-sweep").status_code == 200


def test_table_reads_do_not_grow_with_the_number_of_runs(compare_app: Flask) -> None:
    ids = seeded(compare_app, 20, episodes=30, updates=3, experiment="e")
    few, all_ = ",".join(ids[:2]), ",".join(ids)
    for path in ("/api/compare.json?runs={}", "/api/compare.csv?runs={}", "/compare?runs={}"):
        assert statements(compare_app, path.format(few)) == \
            statements(compare_app, path.format(all_)), path
    # The overlay adds one statistics read, then a few statements per (run, key) chart
    # (its rollups; here the whole short series): never a statistics read per series.
    tables = statements(compare_app, f"/api/compare.json?runs={few}")
    small = statements(compare_app, f"/api/compare?runs={few}&keys=episode/reward")
    large = statements(compare_app, f"/api/compare?runs={all_}&keys=episode/reward")
    per_series = (small - tables - 1) / 2
    assert 1 <= per_series <= 4 and large - small == 18 * per_series


# ---------------------------------------------------------------- leaderboard


def test_leaderboard_ranks_by_any_metric(compare_app: Flask) -> None:
    ids = seeded(compare_app, 5, episodes=40, updates=4)
    client = compare_app.test_client()
    body = client.get("/api/leaderboard?metric=summary:test_return_pct&top=3").get_json()
    assert [r["run_id"] for r in body["rows"]] == ids[::-1][:3]
    assert [r["rank"] for r in body["rows"]] == [1, 2, 3]
    body = client.get("/api/leaderboard?metric=final:train/policy_loss").get_json()
    values = [r["value"] for r in body["rows"]]
    assert values == sorted(values) and body["direction"] == "lower"  # loss: lowest first
    body = client.get("/api/leaderboard?metric=final:train/policy_loss&order=desc").get_json()
    assert [r["value"] for r in body["rows"]] == sorted(values, reverse=True)
    assert client.get("/leaderboard?metric=best:episode/reward").status_code == 200


def test_leaderboard_filters(compare_app: Flask) -> None:
    with compare_app.app_context():
        store = get_store()
        a = add_run(store, 0, episodes=10, updates=2, experiment="x", tags=("keep",))
        b = add_run(store, 1, episodes=10, updates=2, data_file="/d/IBM.csv")
    client = compare_app.test_client()
    metric = "metric=best:episode/reward"
    assert [r["run_id"] for r in client.get(
        f"/api/leaderboard?{metric}&experiment=x").get_json()["rows"]] == [a]
    assert [r["run_id"] for r in client.get(
        f"/api/leaderboard?{metric}&tag=keep").get_json()["rows"]] == [a]
    assert [r["run_id"] for r in client.get(
        f"/api/leaderboard?{metric}&data_file=IBM.csv").get_json()["rows"]] == [b]
    assert client.get(f"/api/leaderboard?{metric}&model_type=xgboost").get_json()["rows"] == []


def test_unknown_metric_is_422_naming_it(compare_app: Flask) -> None:
    seeded(compare_app, 2, episodes=10, updates=2, experiment="e")
    client = compare_app.test_client()
    body = error_of(client.get("/api/leaderboard?metric=best:no/such"), 422)
    assert body["field"] == "metric" and "best:no/such" in body["error"]
    body = error_of(client.get("/api/leaderboard?metric=sharpe"), 422)
    assert body["field"] == "metric"
    assert client.get("/leaderboard?metric=best:no/such").status_code == 422
    assert error_of(client.get("/api/experiments?metric=best:no/such"), 422)["field"] == "metric"
    assert error_of(client.get("/api/leaderboard?metric=best:episode/reward&order=up"),
                    422)["field"] == "order"


def test_leaderboard_statements_do_not_grow_with_runs(compare_app: Flask) -> None:
    seeded(compare_app, 3, episodes=10, updates=2)
    path = "/api/leaderboard?metric=best:episode/reward"
    few = statements(compare_app, path)
    seeded(compare_app, 12, episodes=10, updates=2)
    assert statements(compare_app, path) == few
    assert statements(compare_app, "/api/experiments") <= few + 2


# ------------------------------------------------------------------ experiments


def test_experiment_pages(compare_app: Flask) -> None:
    ids = seeded(compare_app, 3, episodes=20, updates=2, experiment="lr-sweep")
    client = compare_app.test_client()
    listing = client.get("/api/experiments?metric=summary:test_return_pct").get_json()
    assert listing["experiments"][0]["name"] == "lr-sweep"
    assert listing["experiments"][0]["runs"] == 3
    assert listing["experiments"][0]["best"]["run_id"] == ids[2]
    detail = client.get("/api/experiments/lr-sweep?metric=summary:test_return_pct").get_json()
    assert detail["best"]["run_id"] == ids[2]
    assert [r["run_id"] for r in detail["runs"]] == ids[::-1]
    assert detail["default_param"] == "train_params.learning_rate"
    point = next(p for p in detail["points"] if p["run_id"] == ids[1])
    assert point["params"]["train_params.learning_rate"] == pytest.approx(2e-4)
    assert point["metrics"]["summary:test_return_pct"] == -3.0
    assert error_of(client.get("/api/experiments/nope"), 404)
    assert client.get("/experiments/nope").status_code == 404
    for path in ("/experiments", "/experiments/lr-sweep", "/leaderboard"):
        assert client.get(path).status_code == 200, path


def test_odd_experiment_names_are_not_found(compare_app: Flask) -> None:
    seeded(compare_app, 2, episodes=10, updates=2, experiment="e")
    client = compare_app.test_client()
    for name in ("a%00b", "tab%09name", "x" * 300):
        assert error_of(client.get(f"/api/experiments/{name}"), 404)["field"] == "name"
    assert error_of(client.get("/api/compare?experiment=a%00b"), 400)["field"] == "experiment"


def test_unavailable_store_is_503(tmp_path: Path) -> None:
    from Main import create_app

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{blocker}/runs.db",
                      "MODELS_DIR": str(tmp_path), "BACKTESTS_DIR": str(tmp_path / "bt")})
    client = app.test_client()
    runs = f"{uuid.uuid4()},{uuid.uuid4()}"
    for url in (f"/api/compare?runs={runs}", f"/api/compare.csv?runs={runs}",
                "/api/leaderboard", "/api/experiments", "/api/experiments/e"):
        assert "run store unavailable" in error_of(client.get(url), 503)["error"], url
    for url in (f"/compare?runs={runs}", "/leaderboard", "/experiments", "/experiments/e"):
        page = client.get(url)
        assert page.status_code == 503 and "Run store unavailable" in page.get_data(True), url
