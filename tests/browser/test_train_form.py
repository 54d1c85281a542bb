"""The Train form as a new user meets it, in Debian's chromium: every mistake reported
in one submit with the first one brought into view, an upload kept while the form is
refused, and the values the smoke preset will really use."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import ARTIFACTS, watch
from tests.helpers.training_stubs import slow_child
from web.store import get_store

pytestmark = pytest.mark.browser
SHOTS = Path("/work/helpers/shots/train")


def shot(page, name: str, *, full_page: bool = True) -> None:
    """A test artifact (the page, or what the viewport shows), and a copy for the
    person reviewing this change when their folder exists."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


def by_name(page, name: str):
    return page.locator(f"[name='{name}']")


# The input focused, and whether it lies inside the viewport (scrolled to).
FOCUSED_IN_VIEW = """() => {
  const el = document.activeElement;
  const box = el.getBoundingClientRect();
  return {id: el.id, inView: box.top >= 0 && box.bottom <= window.innerHeight,
          scrolled: window.scrollY};
}"""


def test_four_mistakes_are_four_messages_in_one_submit(live_server, page) -> None:
    seen = watch(page, live_server)
    page.goto(f"{live_server}/train?model=ppo")
    page.fill("#model_name", "four_mistakes")
    page.click("#all-params > summary")  # the rarer parameters are folded
    by_name(page, "model_params.hidden_dim").fill("100000000")
    by_name(page, "train_params.n_envs").fill("0")
    by_name(page, "env_params.commission").fill("2")
    by_name(page, "data_params.val_fraction").fill("0.9")
    by_name(page, "data_params.test_fraction").fill("0.9")
    with page.expect_navigation():
        page.click("#start-training")
    expect(page.locator("#error-summary")).to_contain_text("4 problems to fix")
    invalid = page.locator(".field.invalid")
    expect(invalid).to_have_count(4)
    messages = invalid.locator(".field-error").all_text_contents()
    assert [m.split(" must")[0].split(" +")[0] for m in messages] == [
        "hidden_dim", "n_envs", "commission", "val_fraction"], messages
    assert "rows" not in messages[3]  # the fractions are named, not the file
    where = page.evaluate(FOCUSED_IN_VIEW)
    assert where["id"] == "model_params.hidden_dim" and where["inView"], where
    assert where["scrolled"] > 0, where  # it was below the fold: the page scrolled to it
    shot(page, "train_four_mistakes_in_view", full_page=False)
    # The summary's links bring each problem into view too.
    page.click("#error-summary a[data-field='data_params.val_fraction']")
    where = page.evaluate(FOCUSED_IN_VIEW)
    assert where["id"] == "data_params.val_fraction" and where["inView"], where
    shot(page, "train_four_mistakes")  # last: a full-page shot resizes the viewport
    assert not seen["errors"] and not seen["outside"], seen


def test_an_upload_is_kept_when_the_form_is_refused(app, live_server, page, sample_path,
                                                    tmp_path, monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)  # the run starts; its training is not needed
    page.goto(f"{live_server}/train?model=xgboost")
    page.fill("#model_name", "not valid")
    page.set_input_files("#csv_upload", files=[{"name": "my bars.csv", "mimeType": "text/csv",
                                                "buffer": sample_path.read_bytes()}])
    with page.expect_navigation():
        page.click("#start-training")
    expect(page.locator("#model_name-error")).to_contain_text("invalid model name")
    expect(page.locator("#csv option:checked")).to_have_text("my bars.csv (your upload)")
    expect(page.locator("#kept-upload")).to_have_text("my bars.csv")
    text = page.inner_text("body")
    assert "uploads/" not in text and not re.search(r"[0-9a-f]{8}-my_bars", text), text
    assert page.evaluate("document.activeElement.id") == "model_name"
    page.evaluate("document.activeElement.blur()")  # see test_train_journey
    shot(page, "train_upload_kept")
    page.fill("#model_name", "from_upload")
    with page.expect_navigation():
        page.click("#start-training")
    assert re.search(r"/runs/[0-9a-f-]{36}$", page.url), page.url
    run_id = page.url.rsplit("/", 1)[1]
    with app.app_context():
        run = get_store().get_run(run_id)
    assert run["name"] == "from_upload" and run["data_file"].endswith("-my bars.csv")
    assert Path(run["data_file"]).is_file()
    expect(page.locator("#run-status-badge")).to_have_text("starting")
    shot(page, "train_run_starting")
    gate.touch()


def test_the_smoke_preset_shows_the_values_it_will_use(live_server, page) -> None:
    page.goto(f"{live_server}/train?model=ppo")
    steps = by_name(page, "train_params.total_timesteps")
    lookback = by_name(page, "model_params.lookback_window")
    expect(page.locator("#mode")).to_have_value("smoke")
    expect(steps).to_have_value("8192")   # not the full default's 200000
    expect(lookback).to_have_value("20")  # not 30
    shot(page, "train_smoke_preset")
    page.click("#all-params > summary")
    hidden = by_name(page, "model_params.hidden_dim")
    hidden.fill("32")  # changed by the person: a preset never overwrites it
    page.select_option("#mode", "full")
    expect(steps).to_have_value("200000")
    expect(lookback).to_have_value("30")
    expect(by_name(page, "train_params.n_envs")).to_have_value("8")
    expect(hidden).to_have_value("32")
    shot(page, "train_full_preset")
    page.select_option("#mode", "smoke")
    expect(steps).to_have_value("8192")
