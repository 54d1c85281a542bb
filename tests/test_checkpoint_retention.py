"""Checkpoint files: one per save, only the newest ``keep_checkpoints`` kept, the run page
lists only files that exist and marks the one ``--resume`` continues from (issue 15)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from NetworkConfigs.base import DEFAULT_KEEP_CHECKPOINTS
from NetworkConfigs.callbacks import (
    Checkpoints,
    checkpoint_files,
    latest_checkpoint,
    prune_checkpoints,
)
from NetworkConfigs.ppo_config import normalise, settings_from
from NetworkConfigs.XGBoostTrainer import XGBoostTrainer
from Utilities import run_training
from Utilities.input_errors import InputError
from Utilities.run_store import RunStore
from web.store import get_store

ROOT = Path(__file__).resolve().parent.parent


class FakeTrainer:
    """What Checkpoints reads of a trainer: its state and step."""

    global_step = 0

    def state_dict(self) -> dict[str, Any]:
        return {"model": {"w": torch.tensor([float(self.global_step)])},
                "iteration": self.global_step}


def saving(directory: Path, iterations: range, trainer: FakeTrainer, **options) -> list:
    heard: list[tuple] = []
    checkpoints = Checkpoints(directory, every=1, **options,
                              on_saved=lambda path, step, **info: heard.append(
                                  (path.name, step, info)))
    checkpoints.set_trainer(trainer)
    for iteration in iterations:
        trainer.global_step = iteration * 100
        checkpoints.on_iteration_end({"iteration": iteration})
    return heard


def names(directory: Path) -> list[str]:
    return [path.name for path in checkpoint_files(directory)]


def test_each_save_is_a_file_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    heard = saving(tmp_path, range(1, 6), FakeTrainer(), keep=3)
    assert names(tmp_path) == ["iteration-00000003.pt", "iteration-00000004.pt",
                               "iteration-00000005.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names(tmp_path)  # no temporaries
    assert heard[-1] == ("iteration-00000005.pt", 500, {"iteration": 5, "keep": 3})
    newest = latest_checkpoint(tmp_path)
    assert newest is not None and newest.name == "iteration-00000005.pt"
    assert torch.load(newest, weights_only=True)["iteration"] == 500


def test_keep_one_and_the_default(tmp_path: Path) -> None:
    saving(tmp_path / "one", range(1, 4), FakeTrainer(), keep=1)
    assert names(tmp_path / "one") == ["iteration-00000003.pt"]
    saving(tmp_path / "default", range(1, 8), FakeTrainer())
    assert len(names(tmp_path / "default")) == DEFAULT_KEEP_CHECKPOINTS == 3


def test_names_sort_by_iteration_and_a_legacy_last_pt_is_oldest(tmp_path: Path) -> None:
    for name in ("last.pt", "iteration-00000100.pt", "iteration-00000020.pt",
                 "iteration-123456789.pt", "iteration-x.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert names(tmp_path) == ["last.pt", "iteration-00000020.pt", "iteration-00000100.pt",
                               "iteration-123456789.pt"]
    removed = prune_checkpoints(tmp_path, 1)
    assert [p.name for p in removed] == ["iteration-00000020.pt", "iteration-00000100.pt"]
    assert (tmp_path / "last.pt").is_file()  # a run's old file is never pruned
    assert latest_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("keep", [0, -1, 1.5, True])
def test_a_bad_keep_is_refused(keep, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be a whole number >= 1"):
        Checkpoints(tmp_path, keep=keep)


def test_the_config_key_is_checked_for_every_type() -> None:
    config = normalise({"train_params": {"keep_checkpoints": 0}})
    with pytest.raises(InputError) as caught:
        settings_from(config)
    assert (caught.value.field, str(caught.value)) == (
        "keep_checkpoints", "keep_checkpoints must be >= 1; got 0")
    with pytest.raises(InputError, match="keep_checkpoints must be int") as caught:
        XGBoostTrainer({"train_params": {"keep_checkpoints": "all"}})
    assert caught.value.field == "keep_checkpoints"
    assert XGBoostTrainer({"train_params": {"keep_checkpoints": 5}}).keep_checkpoints == 5
    assert normalise(None)["train_params"]["keep_checkpoints"] == DEFAULT_KEEP_CHECKPOINTS


def test_the_run_page_lists_files_on_disk_and_marks_the_resume_one(app, client,
                                                                   tmp_path: Path) -> None:
    legacy, gone = tmp_path / "last.pt", tmp_path / "iteration-00000001.pt"
    legacy.write_bytes(b"state")
    with app.app_context():
        store = get_store()
        old = store.create_run(name="before-retention", model_type="ppo")
        # A run saved before numbered files: every event names the same overwritten file.
        store.log_events(old, [("checkpoint", {"path": str(legacy), "step": step}, time.time())
                               for step in (100, 200, 300)])
        store.log_events(old, [("checkpoint", {"path": str(gone), "step": 50}, time.time())])
        store.set_status(old, "stopped")
    listed = client.get(f"/api/training-runs/{old}").get_json()["checkpoint_paths"]
    assert [(c["step"], c["resume"]) for c in listed] == [(300, True)]
    page = client.get(f"/runs/{old}").get_data(as_text=True)
    assert page.count("--resume uses this") == 1 and "iteration-00000001.pt" not in page
    assert "the newest 1 on disk" in page
    assert run_training.checkpoint_of_run(old, RunStore(app.config["DATABASE_URL"])) == legacy


def test_a_training_keeps_its_newest_checkpoints_and_resumes_from_the_last(
        tmp_path: Path, monkeypatch) -> None:
    """A real run: checkpoint every iteration, keep 2. The folder holds the last two, the
    events name each save, and ``--resume <run id>`` takes the newest file."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    params = {"train_params": {"total_timesteps": 2048, "n_envs": 4, "n_steps": 128,
                               "batch_size": 128, "checkpoint_every": 1, "keep_checkpoints": 2,
                               "eval_every": 4},
              "model_params": {"lookback_window": 10}}
    assert run_training.main(["--csv_path", str(ROOT / "sample.csv"), "--mode", "smoke",
                              "--model_name", "kept", "--models-dir", str(tmp_path / "M"),
                              "--training_params", json.dumps(params),
                              "--no-progress"]) == 0
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    (run,), _ = store.list_runs()
    folder = tmp_path / "M" / ".checkpoints" / run["run_id"]
    assert names(folder) == ["iteration-00000003.pt", "iteration-00000004.pt"]
    events = store.events_after(0, run_id=run["run_id"], kinds=["checkpoint"])
    assert [Path(e["payload"]["path"]).name for e in events] == [
        f"iteration-{i:08d}.pt" for i in (1, 2, 3, 4)]
    assert {e["payload"]["keep"] for e in events} == {2}
    assert run_training.checkpoint_of_run(run["run_id"], store) == folder / names(folder)[-1]
    state = run_training.load_resume(str(folder), store)  # a folder: its newest file too
    assert state["iteration"] == 4
    store.close()
