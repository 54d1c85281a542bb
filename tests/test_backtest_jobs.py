"""Backtests as background jobs (queue, progress, failures, a dashboard killed mid-job),
the uploads folder's rules (kept only for an accepted form, quota, clean-up, limits) and
the data folder's links."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE_CSV, make_app
from tests.test_ppo_loader import train_tiny
from Utilities.model_backtester import backtest_model
from Utilities.serialization import to_plain
from web import backtest_jobs
from web.backtest_jobs import EXTENSION, INTERRUPTED

PPO = "PPO_tiny"
BAD_CSV = b"Date,Price\n2020-01-01,1\n"


@pytest.fixture(scope="module")
def trained(sample_bars: pd.DataFrame, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("Models")
    train_tiny(sample_bars.iloc[:400], folder)
    return folder


@pytest.fixture()
def make(database_url: str, trained: Path, tmp_path: Path) -> Iterator[Callable]:
    """``make(**config)``: the dashboard app over the test's folders, config changed."""
    from web.store import close_store

    apps = []

    def build(**config):
        app = make_app(database_url, trained, tmp_path)
        app.config.update(config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_store(app)


@pytest.fixture()
def app(make):
    return make()


class Gate:
    """Jobs report half way, say so (``reached``), then wait for the test to ``open``."""

    def __init__(self) -> None:
        self.reached, self.opened = threading.Semaphore(0), threading.Event()

    def wait_reached(self) -> None:
        assert self.reached.acquire(timeout=60), "no job reached the gate"

    def open(self) -> None:
        self.opened.set()


@pytest.fixture()
def gate(monkeypatch) -> Iterator[Gate]:
    held_by = Gate()
    real = backtest_jobs.run_request

    def held(request, progress=None):
        progress(0.5, "held by the test")
        held_by.reached.release()
        assert held_by.opened.wait(60), "the test never opened the gate"
        return real(request, progress)

    monkeypatch.setattr(backtest_jobs, "run_request", held)
    yield held_by
    held_by.open()


def uploads(app) -> list[str]:
    folder = Path(app.config["DATA_DIR"]) / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def sample_tail(rows: int = 600) -> bytes:
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    return "".join(lines[:1] + lines[-rows:]).encode()


def post_form(client, upload: tuple[bytes, str] | None = None, **changes: str):
    data = {"model": PPO, "csv": "sample.csv", "fill": "close", **changes}
    if upload is not None:
        data["upload"] = (io.BytesIO(upload[0]), upload[1])
    return client.post("/backtest", data=data, content_type="multipart/form-data")


def wait(app, job_id: str) -> None:
    assert app.extensions[EXTENSION].wait(job_id, 120)


# ------------------------------------------------------------------------ jobs


def test_a_queued_job_reports_progress_then_equals_the_synchronous_engine(app, gate,
                                                                          trained) -> None:
    client = app.test_client()
    body = {"model": PPO, "csv": "sample.csv", "commission": 0.001, "fill": "next_open"}
    response = client.post("/api/backtest", json=body)
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    gate.wait_reached()
    status = client.get(f"/api/backtest/{job_id}").get_json()
    assert status["status"] == "running" and status["stage"] == "held by the test"
    assert status["progress"] == pytest.approx(0.45)
    page = client.get(f"/backtest/{job_id}").get_data(as_text=True)
    assert 'id="job"' in page and "45 %" in page and f"/api/backtest/{job_id}" in page

    gate.open()
    wait(app, job_id)
    done = client.get(f"/api/backtest/{job_id}").get_json()
    assert done["status"] == "done" and done["progress"] == 1
    expected = backtest_model(trained / PPO, SAMPLE_CSV, commission=0.001,
                              fill="next_open").summary()
    plain = json.loads(json.dumps(to_plain(expected)))
    for key in ("statistics", "baselines", "period", "params", "open_trade"):
        assert done["result"][key] == plain[key], key
    assert "Strategy" in client.get(f"/backtest/{job_id}").get_data(as_text=True)


def test_a_full_queue_is_503_with_retry_after(make, gate) -> None:
    app = make(BACKTEST_WORKERS=1, BACKTEST_QUEUE=1)
    client = app.test_client()
    body = {"model": PPO, "csv": "sample.csv"}
    first = client.post("/api/backtest", json=body)
    gate.wait_reached()  # the first runs; the second waits in the queue
    second = client.post("/api/backtest", json=body)
    assert first.status_code == 202 and second.status_code == 202
    queued = client.get(f"/api/backtest/{second.get_json()['id']}").get_json()
    assert queued["status"] == "queued" and queued["ahead"] == 0

    refused = client.post("/api/backtest", json=body)
    assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
    assert "try again" in refused.get_json()["error"]
    page = post_form(client, upload=(sample_tail(), "mine.csv"))
    assert page.status_code == 503 and "try again" in page.get_data(as_text=True)
    assert uploads(app) == []  # a refused form keeps no upload, even a valid one

    gate.open()
    for reply in (first, second):
        wait(app, reply.get_json()["id"])
        assert client.get(reply.headers["Location"]).get_json()["status"] == "done"
    assert client.post("/api/backtest", json=body).status_code == 202


def test_an_unexpected_error_fails_the_job_in_json(app, monkeypatch) -> None:
    def broken(request, progress=None):
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(backtest_jobs, "run_request", broken)
    client = app.test_client()
    job_id = client.post("/api/backtest", json={"model": PPO, "csv": "sample.csv"}
                         ).get_json()["id"]
    wait(app, job_id)
    status = client.get(f"/api/backtest/{job_id}")
    assert status.status_code == 200 and status.mimetype == "application/json"
    reply = status.get_json()
    assert reply["status"] == "failed" and reply["field"] is None
    assert "RuntimeError: the engine broke" in reply["error"]
    page = client.get(f"/backtest/{job_id}").get_data(as_text=True)
    assert 'id="job-failed"' in page and "the engine broke" in page
    assert client.get(f"/backtest/{job_id}/trades.csv").status_code == 404


def test_a_body_over_64_kib_is_413_json(app) -> None:
    body = json.dumps({"model": PPO, "csv": "sample.csv", "start": "x" * 70_000})
    reply = app.test_client().post("/api/backtest", data=body,
                                   content_type="application/json")
    assert reply.status_code == 413 and "64 KiB" in reply.get_json()["error"]


def test_unknown_jobs_are_404_json(app) -> None:
    client = app.test_client()
    for job_id in ("PPO_tiny-20200101-000000-abcdef", ".jobs", "x" * 200):
        reply = client.get(f"/api/backtest/{job_id}")
        assert reply.status_code == 404 and reply.get_json()["error"]
        assert client.get(f"/backtest/{job_id}").status_code == 404


def test_a_dashboard_killed_mid_write_leaves_a_failed_job_and_no_half_result(
        database_url: str, trained: Path, tmp_path: Path, app) -> None:
    """A real kill -9 while the result is being written: after the restart the job is
    failed (never running), and the half-written folder is gone."""
    log = tmp_path / "child.log"
    with log.open("w") as errors:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_DASHBOARD, database_url, str(trained), str(tmp_path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        line = child.stdout.readline().strip()  # blocks until the child writes or exits
        assert line.startswith("saving "), (line, log.read_text())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(60)
        child.stdout.close()
    job_id = line.split()[1]
    backtests = Path(app.config["BACKTESTS_DIR"])
    assert (backtests / f".tmp-{job_id}").is_dir()  # what the kill left behind

    client = app.test_client()  # the restarted dashboard
    reply = client.get(f"/api/backtest/{job_id}").get_json()
    assert reply["status"] == "failed" and reply["error"] == INTERRUPTED
    assert not (backtests / f".tmp-{job_id}").exists()
    assert not (backtests / job_id).exists()
    assert client.get(f"/backtest/{job_id}/trades.csv").status_code == 404
    assert "run it again" in client.get(f"/backtest/{job_id}").get_data(as_text=True)


KILLED_DASHBOARD = """
import sys, threading
from pathlib import Path
from tests.conftest import make_app
from web import backtest_jobs

def save(report, request, root, result_id):
    staging = root / f".tmp-{result_id}"
    staging.mkdir()
    (staging / "trades.csv").write_text("entry_time,exit")  # half written
    print("saving", result_id, flush=True)
    threading.Event().wait()

backtest_jobs.save = save
app = make_app(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
reply = app.test_client().post("/api/backtest", json={"model": "PPO_tiny", "csv": "sample.csv"})
job_id = reply.get_json()["id"]
print("finished" if app.extensions["backtest_jobs"].wait(job_id, 120) else "timeout",
      job_id, flush=True)
"""


def test_progress_is_reported_per_block_and_rises(trained: Path) -> None:
    seen: list[tuple[float, str]] = []
    backtest_model(trained / PPO, SAMPLE_CSV, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] < 1
    deciding = [f for f, s in seen if s == "the model is deciding"]
    assert any(0.15 < f < 0.9 for f in deciding)  # from inside the closed loop
    assert len(deciding) <= 51 and len(seen) < 60  # a report per block at most, not per bar


# ------------------------------------------------------------------------ uploads


def test_a_refused_form_keeps_no_upload(app) -> None:
    client = app.test_client()
    response = post_form(client, upload=(sample_tail(), "good.csv"), commission="-1")
    assert response.status_code == 422 and uploads(app) == []
    response = post_form(client, upload=(BAD_CSV, "bad.csv"))
    assert response.status_code == 422 and uploads(app) == []
    response = post_form(client, upload=(sample_tail(), "good.csv"))
    assert response.status_code == 303
    assert [re.sub(r"^[0-9a-f]{8}-", "", n) for n in uploads(app)] == ["good.csv"]
    wait(app, response.headers["Location"].rsplit("/", 1)[1])


def test_an_upload_over_the_row_limit_is_413_naming_it(make) -> None:
    app = make(UPLOAD_MAX_ROWS=100)
    response = post_form(app.test_client(), upload=(sample_tail(600), "long.csv"))
    assert response.status_code == 413 and uploads(app) == []
    assert "more than 100 lines" in response.get_data(as_text=True)
    assert "UPLOAD_MAX_ROWS" in response.get_data(as_text=True)


def test_an_upload_over_the_byte_limit_is_the_apps_413_page_naming_the_limit(make) -> None:
    app = make(MAX_CONTENT_LENGTH=100_000)
    response = post_form(app.test_client(), upload=(SAMPLE_CSV.read_bytes(), "big.csv"))
    assert response.status_code == 413 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "the upload is larger than the 98 KiB limit" in page
    assert 'id="backtest-form"' not in page  # the error page, not a form re-render
    assert uploads(app) == []


# ------------------------------------------------------------------------ removing uploads


def kept_upload(app) -> str:
    """Upload sample bars through the form, wait for its backtest; the listed name."""
    response = post_form(app.test_client(), upload=(sample_tail(), "my bars.csv"))
    assert response.status_code == 303
    wait(app, response.headers["Location"].rsplit("/", 1)[1])
    (name,) = uploads(app)
    return f"uploads/{name}"


def test_an_upload_is_removed_after_confirming_it(app) -> None:
    name = kept_upload(app)
    client = app.test_client()
    listed = client.get("/backtest").get_data(as_text=True)
    link = f"/backtest/uploads/{name.replace(' ', '%20')}/remove"
    assert f'href="{link}"' in listed
    confirm = client.get(link)
    page = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Remove the upload my bars.csv?" in page
    assert "1 saved backtest result" in page  # what removing it loses
    assert client.post(link, data={}).status_code == 400  # not confirmed
    assert client.post(link, data={"confirm": name},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert uploads(app) != []
    done = client.post(link, data={"confirm": name})
    assert done.status_code == 303 and uploads(app) == []
    after = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Removed <b>my bars.csv</b>" in after and "remove-upload" not in after
    assert client.get(link).status_code == 404
    # The saved result stays, shown by the file's name.
    assert "<td>my bars.csv</td>" in after


def test_an_upload_a_queued_backtest_reads_is_not_removed(app, gate) -> None:
    client = app.test_client()
    response = post_form(client, upload=(sample_tail(), "busy.csv"))
    assert response.status_code == 303
    gate.wait_reached()
    name = f"uploads/{uploads(app)[0]}"
    listed = client.get("/backtest").get_data(as_text=True)
    assert "in use by a queued or running backtest" in listed
    reply = client.post(f"/backtest/uploads/{name}/remove", data={"confirm": name})
    assert reply.status_code == 409 and uploads(app) != []
    assert "busy.csv is read by a queued or running backtest" in reply.get_data(as_text=True)
    gate.open()
    wait(app, response.headers["Location"].rsplit("/", 1)[1])
    assert client.post(f"/backtest/uploads/{name}/remove",
                       data={"confirm": name}).status_code == 303


def test_an_upload_a_running_training_reads_is_not_removed(app) -> None:
    from Utilities.run_store import RunStore

    name = kept_upload(app)
    path = Path(app.config["DATA_DIR"]) / name
    store = RunStore(app.config["DATABASE_URL"])
    run_id = store.create_run(name="on_upload", model_type="ppo", data_file=str(path))
    reply = app.test_client().post(f"/backtest/uploads/{name}/remove", data={"confirm": name})
    assert reply.status_code == 409 and path.exists()
    assert "the running training 'on_upload'" in unescape(reply.get_data(as_text=True))
    store.set_status(run_id, "completed")
    store.close()
    assert app.test_client().post(f"/backtest/uploads/{name}/remove",
                                  data={"confirm": name}).status_code == 303
    assert not path.exists()


def test_only_kept_uploads_can_be_removed(app) -> None:
    client = app.test_client()
    for name in ("sample.csv", "uploads/../sample.csv", "uploads/nothing.csv"):
        assert client.post(f"/backtest/uploads/{name}/remove",
                           data={"confirm": name}).status_code == 404, name


def test_an_error_quotes_no_more_than_the_start_of_a_cell(app) -> None:
    line = "x" * 5000
    response = post_form(app.test_client(), upload=(f"{line}\n{line}\n".encode(), "odd.csv"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "x" * 41 not in page and "no time column" in page


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_the_quota_removes_the_oldest_uploads_first(make) -> None:
    app = make(UPLOADS_MAX_FILES=2)
    folder = Path(app.config["DATA_DIR"]) / "uploads"
    folder.mkdir(parents=True)
    for name, hours in (("aaaa0000-oldest.csv", 3), ("bbbb0000-older.csv", 2)):
        (folder / name).write_bytes(sample_tail())
        age(folder / name, hours * 3600)
    response = post_form(app.test_client(), upload=(sample_tail(), "new.csv"))
    assert response.status_code == 303
    kept = uploads(app)
    assert "aaaa0000-oldest.csv" not in kept and "bbbb0000-older.csv" in kept
    assert len(kept) == 2 and any(n.endswith("-new.csv") for n in kept)
    wait(app, response.headers["Location"].rsplit("/", 1)[1])


def test_a_quota_full_of_recent_uploads_refuses_with_507(make) -> None:
    app = make(UPLOADS_MAX_BYTES=len(sample_tail()) + 10)
    folder = Path(app.config["DATA_DIR"]) / "uploads"
    folder.mkdir(parents=True)
    (folder / "cccc0000-recent.csv").write_bytes(sample_tail())
    response = post_form(app.test_client(), upload=(sample_tail(), "new.csv"))
    assert response.status_code == 507 and "uploads folder is full" in response.get_data(
        as_text=True)
    assert uploads(app) == ["cccc0000-recent.csv"]
    response = post_form(app.test_client(), upload=(sample_tail(1200), "huge.csv"))
    assert response.status_code == 413 and "larger than the uploads folder" in \
        response.get_data(as_text=True)


def test_old_uploads_no_result_names_are_cleaned_up(app) -> None:
    client = app.test_client()
    response = post_form(client, upload=(sample_tail(), "used.csv"))
    wait(app, response.headers["Location"].rsplit("/", 1)[1])
    folder = Path(app.config["DATA_DIR"]) / "uploads"
    used = next(folder.glob("*-used.csv"))
    (folder / "dddd0000-unused.csv").write_bytes(b"x")
    (folder / ".tmp-eeee0000-left.csv").write_bytes(b"x")
    for path in (used, folder / "dddd0000-unused.csv", folder / ".tmp-eeee0000-left.csv"):
        age(path, 40 * 86400)
    response = post_form(client, upload=(sample_tail(), "new.csv"))
    assert response.status_code == 303
    kept = uploads(app)
    assert used.name in kept  # a saved result names it
    assert "dddd0000-unused.csv" not in kept and ".tmp-eeee0000-left.csv" not in kept
    wait(app, response.headers["Location"].rsplit("/", 1)[1])


# ------------------------------------------------------------------------ links


def test_a_link_leading_outside_the_data_folder_is_not_listed_nor_read(app, tmp_path) -> None:
    data = Path(app.config["DATA_DIR"])
    data.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("root:x:0:0:root:/root:/bin/bash\n" * 3)
    os.symlink(outside / "secret.csv", data / "x.csv")
    os.symlink(outside, data / "linked")
    os.symlink(SAMPLE_CSV, data / "sample_link.csv")  # outside too: the repository's file
    (data / "inner").mkdir()
    (data / "inner" / "real.csv").write_bytes(sample_tail())
    os.symlink(data / "inner" / "real.csv", data / "alias.csv")  # inside: fine
    client = app.test_client()
    page = client.get("/backtest").get_data(as_text=True)
    options = re.findall(r'<option value="([^"]+\.csv)"', page)
    assert set(options) == {"sample.csv", "inner/real.csv", "alias.csv"}
    for name in ("x.csv", "linked/secret.csv", "sample_link.csv"):
        reply = client.post("/api/backtest", json={"model": PPO, "csv": name})
        assert reply.status_code == 422 and reply.get_json()["field"] == "csv", name
        assert "root:" not in reply.get_data(as_text=True)
        assert str(tmp_path) not in reply.get_data(as_text=True)
    for name in ("x.csv", "linked/secret.csv"):
        assert "leads outside the data folder" in client.post(
            "/api/backtest", json={"model": PPO, "csv": name}).get_json()["error"]
    reply = client.post("/api/backtest", json={"model": PPO, "csv": "alias.csv"})
    assert reply.status_code == 202
    wait(app, reply.get_json()["id"])
