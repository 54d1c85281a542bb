"""The web app factory and the home page."""

from __future__ import annotations

from pathlib import Path

import pytest

from Main import create_app
from NetworkConfigs import register_model_type, unregister_model_type
from tests.helpers.fake_model_type import FREQUENCY_TYPE, seed_dashboard


def test_factory_takes_test_config(app, models_dir: Path) -> None:
    assert app.config["TESTING"] and app.config["MODELS_DIR"] == str(models_dir)


def test_empty_home_page_says_so(client) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "No trained models yet" in page
    assert "No training runs recorded" in page


def test_home_lists_models_and_runs(app, client, bars, models_dir: Path) -> None:
    register_model_type(FREQUENCY_TYPE)
    try:
        seed_dashboard(app, bars, models_dir)
        page = client.get("/").get_data(as_text=True)
    finally:
        unregister_model_type(FREQUENCY_TYPE.name)
    assert "FREQ_demo" in page and "Frequency (test only)" in page
    assert "train up share" in page and "sample.csv" in page
    assert "ppo-agent" in page and "xgb-agent" in page and "live-agent" in page
    assert 'class="badge completed"' in page and 'class="badge running"' in page
    assert 'title="diverged"' in page


def test_broken_model_folder_is_shown_not_fatal(client, models_dir: Path) -> None:
    (models_dir / "PPO_half").mkdir()
    page = client.get("/").get_data(as_text=True)
    assert "PPO_half" in page and "unreadable" in page


def test_unavailable_store_shows_an_error_not_a_500(tmp_path: Path, models_dir: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    bad = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{blocker}/runs.db",
                      "MODELS_DIR": str(models_dir)})
    response = bad.test_client().get("/")
    assert response.status_code == 200
    assert "Run store unavailable" in response.get_data(as_text=True)


def test_static_assets_are_served_locally(client) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "http://" not in page.replace("http://127.0.0.1", "")
    assert "https://" not in page
    for asset in ("/static/css/app.css", "/static/js/theme.js"):
        with client.get(asset) as response:  # file responses stream; close them
            assert response.status_code == 200


@pytest.mark.parametrize("path", ["/nope", "/static/missing.css"])
def test_unknown_paths_are_404(client, path: str) -> None:
    with client.get(path) as response:
        assert response.status_code == 404


def test_time_and_duration_filters() -> None:
    from web.formatting import duration, when

    assert when("2026-11-21T09:33:30.986025Z") == "2026-11-21 09:33:30 UTC"
    assert when(None) == "—"
    assert duration("2026-11-21T09:00:00Z", "2026-11-21T10:02:30Z") == "1h 02m"
    assert duration("2026-11-21T09:00:00Z", "2026-11-21T09:03:05Z") == "3m 05s"
    assert duration("2026-11-21T09:00:00Z", "2026-11-21T09:00:00.4Z") == "0.4s"
    assert duration("2026-11-21T09:00:00Z", None) == "—"


def test_odd_model_configs_do_not_break_the_home_page(client, models_dir: Path) -> None:
    odd = b"Type: t\nmodel_name: y\ncreated_at: 2020-01-01\nmetrics: [1]\n"
    for name, content in (("A_x", b"\xff\xfe\x00"), ("B_y", odd)):
        (models_dir / name).mkdir()
        (models_dir / name / f"{name[2:]}_config.yaml").write_bytes(content)
    response = client.get("/")
    assert response.status_code == 200
    assert "A_x" in response.get_data(as_text=True) and "B_y" in response.get_data(as_text=True)


def test_concurrent_first_requests_share_one_store(app) -> None:
    import threading

    from web.store import get_store

    barrier, stores = threading.Barrier(8), []

    def open_store() -> None:
        barrier.wait()
        with app.app_context():
            stores.append(get_store())

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stores) == 8 and len({id(s) for s in stores}) == 1


def test_first_start_trains_a_demo_model_once(tmp_path: Path, monkeypatch) -> None:
    import Main
    from Utilities import run_training

    calls = []
    monkeypatch.setattr(run_training, "main", lambda argv: calls.append(argv) or 0)
    Main.ensure_demo_model(tmp_path)
    assert calls and calls[0][calls[0].index("--mode") + 1] == "smoke"
    assert calls[0][calls[0].index("--models-dir") + 1] == str(tmp_path)
    (tmp_path / "PPO_x").mkdir()
    (tmp_path / "PPO_x" / "x_config.yaml").write_text("Type: ppo\nmodel_name: x\n")
    Main.ensure_demo_model(tmp_path)
    assert len(calls) == 1  # a library with a model is left alone


def test_headline_metrics_pick_known_figures_in_order() -> None:
    from web.formatting import basename, headline

    metrics = {"iterations": 8, "test_return_pct": 1.5, "validation_return_pct": -2.0,
               "test_buy_hold_pct": 27.0, "val_loss": 0.3}
    assert headline(metrics) == [("validation return %", -2.0), ("test return %", 1.5),
                                 ("buy & hold %", 27.0)]
    assert headline([1, 2]) == [] and headline(None) == []
    assert basename("/tmp/fresh/sample.csv") == "sample.csv" and basename(None) == "—"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/predict", 405), ("get", "/api/no-such-thing", 404),
    ("put", "/api/models/x/predict", 405), ("post", "/health", 405),
])
def test_routing_errors_on_api_paths_are_json(client, method: str, path: str,
                                              status: int) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status and response.is_json
    assert path in response.get_json()["error"]


def test_routing_errors_on_pages_stay_html(client) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404 and not response.is_json


def test_every_page_names_an_icon_so_browsers_do_not_ask_for_favicon_ico(client) -> None:
    assert '<link rel="icon" href="data:,">' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/train"), ("post", "/hosting"), ("post", "/backtest"),
    ("post", "/models/X/delete"), ("delete", "/api/models/X"), ("post", "/runs/x/control"),
])
def test_writes_from_another_sites_page_are_refused(client, method: str, path: str) -> None:
    response = getattr(client, method)(path, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    same = getattr(client, method)(path, headers={"Origin": "http://localhost"})
    assert same.status_code != 403  # the app's own pages may write


def test_programs_without_an_origin_may_write(client) -> None:
    assert client.post("/predict", json={}).status_code != 403
