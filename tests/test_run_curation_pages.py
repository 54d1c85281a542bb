"""Curating runs from the pages (web/history.py): the list's experiment / tag / archived
filters, labels and compare picks on each row; the run page's labels form, Archive /
Restore and the delete confirmation page (counts, the opt-in for the saved model)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from Utilities.run_store import RunStore

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture()
def runs(app) -> RunStore:
    store = RunStore(app.config["DATABASE_URL"])
    yield store
    store.close()


def finished(store: RunStore, name: str = "r", **fields) -> str:
    run_id = store.create_run(name=name, model_type="ppo", **fields)
    store.set_status(run_id, "completed")
    return run_id


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def listed(client, query: str = "") -> list[str]:
    page = client.get(f"/runs{query}")
    assert page.status_code == 200, page.get_data(as_text=True)
    return re.findall(r'<tr data-run-id="([0-9a-f-]{36})"', page.get_data(as_text=True))


# ---------------------------------------------------------------------- list page


def test_the_list_filters_by_experiment_and_tag_and_shows_labels(client, runs) -> None:
    a = finished(runs, "a", experiment="sweep", tags=["base", "fast"])
    b = finished(runs, "b", experiment="other", tags=["fast"])
    page = text(client.get("/runs"))
    for option in ('<option value="sweep"', '<option value="other"', '<option value="base"',
                   '<option value="fast"'):
        assert option in page
    assert 'href="/runs?experiment=sweep"' in page and 'href="/runs?tag=base"' in page
    assert sorted(listed(client, "?experiment=sweep")) == [a]
    assert sorted(listed(client, "?tag=fast")) == sorted([a, b])
    assert listed(client, "?tag=fast&experiment=other") == [b]
    assert "No runs match these filters" in text(client.get("/runs?tag=none"))


def test_archived_runs_show_only_when_asked(client, runs) -> None:
    kept, hidden = finished(runs, "kept"), finished(runs, "hidden")
    runs.archive_run(hidden)
    assert listed(client) == [kept]
    assert sorted(listed(client, "?archived=all")) == sorted([kept, hidden])
    page = text(client.get("/runs?archived=all"))
    assert 'id="filter-archived" checked' in page and "archived</span>" in page
    bad = client.get("/runs?archived=maybe")
    assert bad.status_code == 400 and "Unknown archived choice" in text(bad)


def test_each_row_can_be_picked_for_the_compare_view(client, runs) -> None:
    run_ids = [finished(runs, f"r{n}") for n in range(3)]
    page = text(client.get("/runs"))
    assert 'id="compare-form" method="get" action="/compare"' in page
    assert '<input type="hidden" name="runs"' in page
    for run_id in run_ids:
        assert f'class="compare-pick" value="{run_id}"' in page


# ------------------------------------------------------------------------ run page


def test_the_run_page_shows_and_edits_the_labels(client, runs) -> None:
    run_id = finished(runs, experiment="e0", description="first")
    runs.update_run(run_id, notes="looked fine")
    page = text(client.get(f"/runs/{run_id}"))
    assert 'id="label-experiment"><a href="/runs?experiment=e0">e0</a>' in page
    assert "looked fine" in page and "first" in page
    assert f'href="/api/training-runs/{run_id}/metrics.csv"' in page
    assert f'href="/api/training-runs/{run_id}/metrics.json"' in page
    saved = client.post(f"/runs/{run_id}/edit", data={
        "experiment": "sweep", "tags": "b, a,, b", "description": "why", "notes": "n\nm"})
    assert saved.status_code == 302 and saved.headers["Location"].endswith("#run-labels")
    run = runs.get_run(run_id)
    assert (run["experiment"], run["tags"], run["description"], run["notes"]) == (
        "sweep", ["a", "b"], "why", "n\nm")
    assert "Saved the labels" in text(client.get(f"/runs/{run_id}"))


def test_a_bad_labels_form_is_shown_again_with_each_problem(client, runs) -> None:
    run_id = finished(runs, experiment="before")
    refused = client.post(f"/runs/{run_id}/edit", data={
        "experiment": "x" * 101, "tags": "ok, a" + "b" * 60, "description": "kept text",
        "notes": ""})
    assert refused.status_code == 422
    page = text(refused)
    assert 'id="labels-edit" open' in page
    assert 'data-field="experiment">experiment is longer than 100' in page
    assert 'data-field="tags">a tag is longer than 50' in page
    assert ">kept text</textarea>" in page  # what was typed stays
    assert runs.get_run(run_id)["experiment"] == "before"
    assert client.post(f"/runs/{MISSING}/edit", data={"notes": "x"}).status_code == 404


def test_archive_and_restore_from_the_run_page(client, runs) -> None:
    run_id = finished(runs)
    done = client.post(f"/runs/{run_id}/archive")
    assert done.status_code == 302 and runs.get_run(run_id)["archived"]
    page = text(client.get(f"/runs/{run_id}"))
    assert 'id="run-archived-badge"' in page and 'id="restore-run"' in page
    assert "Archived run" in page  # the flash
    assert client.post(f"/runs/{run_id}/restore").status_code == 302
    assert not runs.get_run(run_id)["archived"]
    assert client.post(f"/runs/{MISSING}/archive").status_code == 404


def test_a_live_run_page_disables_archive_and_delete_and_says_why(client, runs) -> None:
    live = runs.create_run(name="live", model_type="ppo")
    page = text(client.get(f"/runs/{live}"))
    assert re.search(r'id="archive-run" disabled\s+title="The run is running: stop it', page)
    assert re.search(r'id="delete-run" disabled\s+title="The run is running', page)
    assert re.search(r'id="curate-reason"\s*>', page)  # shown, not hidden
    refused = client.post(f"/runs/{live}/archive")
    assert refused.status_code == 409 and "stop it" in text(refused)
    assert 'id="back-to-run"' in text(refused)
    confirm = text(client.get(f"/runs/{live}/delete"))
    assert 'id="delete-live"' in confirm and 'id="confirm-delete" disabled' in confirm
    refused = client.post(f"/runs/{live}/delete", data={"confirm": live})
    assert refused.status_code == 409 and runs.get_run(live)


# -------------------------------------------------------------------- delete page


def test_the_delete_page_counts_what_goes_and_keeps_the_model(client, runs, app) -> None:
    run_id = finished(runs, "doomed")
    runs.log_metrics(run_id, [("episode/reward", s, 1.0, 1.0) for s in range(1234)])
    runs.log_events(run_id, [("log", {"message": "hi"}, 1.0)])
    folder = Path(app.config["MODELS_DIR"]) / "PPO_doomed"
    folder.mkdir()
    (folder / "doomed_model.pt").write_bytes(b"w")
    runs.update_run(run_id, model_dir=str(folder))
    page = text(client.get(f"/runs/{run_id}/delete"))
    assert re.search(r'id="plan-points"><b>1,234</b> metric points in 1 series', page)
    assert re.search(r'id="plan-events"><b>3</b> events', page)  # 2 status + 1 log
    assert 'name="delete_model" id="delete-model">' in page  # opt-in, not checked
    unconfirmed = client.post(f"/runs/{run_id}/delete", data={})
    assert unconfirmed.status_code == 400 and runs.get_run(run_id)
    done = client.post(f"/runs/{run_id}/delete", data={"confirm": run_id})
    assert done.status_code == 302 and done.headers["Location"].endswith("/runs")
    assert folder.is_dir()
    notice = text(client.get("/runs"))
    assert f"Deleted run {run_id[:8]} (1,234 metric points, 3 events); its model " \
           "PPO_doomed is kept." in notice
    assert client.get(f"/runs/{run_id}").status_code == 404
    assert client.get(f"/runs/{run_id}/delete").status_code == 404


def test_the_delete_page_deletes_the_model_when_ticked(client, runs, app) -> None:
    run_id = finished(runs, "doomed")
    folder = Path(app.config["MODELS_DIR"]) / "PPO_doomed"
    folder.mkdir()
    runs.update_run(run_id, model_dir=str(folder))
    done = client.post(f"/runs/{run_id}/delete", data={"confirm": run_id,
                                                       "delete_model": "on"})
    assert done.status_code == 302 and not folder.exists()
    assert "and its model PPO_doomed." in text(client.get("/runs"))


@pytest.mark.parametrize("path", ["edit", "archive", "restore", "delete"])
def test_a_cross_site_form_is_refused_before_the_run_is_looked_up(client, runs, path) -> None:
    """403 whatever the id (the fuzzer found a 404 first: URL preprocessors run before
    the CSRF hook), and nothing changes."""
    run_id = finished(runs)
    evil = {"Origin": "http://evil.example"}
    for target in (run_id, "..%2fMain.py", MISSING):
        reply = client.post(f"/runs/{target}/{path}", data={"confirm": target}, headers=evil)
        assert reply.status_code == 403, (target, reply.status_code)
    assert runs.get_run(run_id) and not runs.get_run(run_id)["archived"]
    assert client.post(f"/runs/..%2fMain.py/{path}", data={}).status_code == 404
