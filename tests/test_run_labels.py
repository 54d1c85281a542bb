"""A run's labels (experiment, tags, description) from the training CLI and its config
file: recorded on the run, carried through a launcher's command line, and refused in one
line with exit 2 when bad (Utilities/run_labels.py is the one rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from Utilities import run_training
from Utilities.input_errors import InputError
from Utilities.run_labels import MAX_DESCRIPTION, check_labels, parse_tags
from Utilities.run_store import RunStore
from Utilities.training_request import TrainingRequest

ROOT = Path(__file__).resolve().parent.parent


def _base(tmp_path: Path, name: str = "labelled") -> list[str]:
    return ["--csv_path", str(ROOT / "sample.csv"), "--models-dir", str(tmp_path / "M"),
            "--mode", "smoke", "--no-progress", "--model", "xgboost", "--model_name", name]


def test_flags_label_the_recorded_run(tmp_path: Path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    monkeypatch.setenv("DATABASE_URL", url)
    code = run_training.main([*_base(tmp_path), "--experiment", " lr-sweep ", "--tag", "b",
                              "--tag", "a", "--tag", "b", "--description", "first try\nof two"])
    assert code == 0, capsys.readouterr().err
    store = RunStore(url)
    (run,), _ = store.list_runs(experiment="lr-sweep", tag="a")
    assert (run["experiment"], run["tags"], run["description"]) == (
        "lr-sweep", ["a", "b", "smoke"], "first try\nof two")
    store.close()


def test_the_config_files_run_section_and_flags_combine(tmp_path: Path, monkeypatch) -> None:
    """The file's run: section labels the run; a flag replaces its experiment and
    description, and --tag adds to its tags."""
    config = tmp_path / "c.yaml"
    config.write_text("run:\n  experiment: from-file\n  tags: [x, y]\n  description: file\n"
                      "train_params:\n  seed: 3\n")
    args = run_training.parse_args([*_base(tmp_path), "--config", str(config)])
    request = TrainingRequest.from_args(args)
    assert (request.experiment, request.user_tags, request.description) == (
        "from-file", ("x", "y"), "file")
    assert "run" not in request.overrides  # not the model's: the trainer never sees it
    args = run_training.parse_args([*_base(tmp_path), "--config", str(config),
                                    "--experiment", "flag", "--tag", "z"])
    request = TrainingRequest.from_args(args)
    assert (request.experiment, request.user_tags) == ("flag", ("x", "y", "z"))
    assert request.run_labels() == {"experiment": "flag", "tags": ["smoke", "x", "y", "z"],
                                    "description": "file"}
    config.write_text("run:\n  tags: 'p, q'\n")  # one comma-separated string reads too
    request = TrainingRequest.from_args(run_training.parse_args(
        [*_base(tmp_path), "--config", str(config)]))
    assert request.user_tags == ("p", "q")


def test_a_launchers_command_line_carries_the_labels(tmp_path: Path) -> None:
    """The dashboard hands its request to the child as argv: the labels survive it."""
    request = TrainingRequest(csv_path=ROOT / "sample.csv", model_type="xgboost",
                              model_name="m", mode="full", experiment="e",
                              user_tags=("t1", "t2"), description="line one\nline two")
    again = TrainingRequest.from_args(run_training.parse_args(request.argv()))
    assert again.run_labels() == request.run_labels() == {
        "experiment": "e", "tags": ["t1", "t2"], "description": "line one\nline two"}


def test_a_claimed_run_keeps_its_labels_when_the_child_adopts_it(tmp_path: Path,
                                                                 monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    monkeypatch.setenv("DATABASE_URL", url)
    store = RunStore(url)
    claimed = store.claim_run(name="web", model_type="xgboost", status="starting",
                              experiment="e", tags=["t"], description="d")
    request = TrainingRequest(csv_path=ROOT / "sample.csv", model_type="xgboost",
                              model_name="web", mode="smoke", run_id=claimed,
                              models_dir=tmp_path / "M", experiment="e", user_tags=("t",),
                              description="d", progress=False)
    assert run_training.main(request.argv()) == 0
    run = store.get_run(claimed)
    assert (run["status"], run["experiment"], run["tags"], run["description"]) == (
        "completed", "e", ["smoke", "t"], "d")
    store.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--tag", ""], "a tag must not be empty"),
    (["--tag", "a,b"], "a tag must not contain a comma"),
    (["--tag", "x" * 51], "a tag is longer than 50 characters"),
    (["--experiment", "bad\x01name"], "experiment must not contain the control character"),
    (["--experiment", "e" * 101], "experiment is longer than 100 characters"),
    (["--description", "d" * (MAX_DESCRIPTION + 1)], "description is 2,001 characters long"),
    (["--training_params", '{"run": {"owner": "me"}}'], "unknown key(s) owner in run"),
    (["--training_params", '{"run": {"tags": 3}}'], "tags must be a list of strings"),
    (["--training_params", '{"run": "e1"}'], "run must be a mapping"),
    ([arg for n in range(21) for arg in ("--tag", f"t{n}")], "at most 20 tags"),
])
def test_bad_labels_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                            monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    code = run_training.main([*_base(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    assert store.list_runs()[1] == 0, "bad labels must be refused before a run is recorded"
    store.close()


def test_the_rule_collects_every_problem_by_field() -> None:
    with pytest.raises(InputError) as caught:
        check_labels({"experiment": 3, "tags": "a", "notes": "\x00", "owner": "me"})
    assert set(caught.value.errors) == {"experiment", "tags", "notes", "owner"}
    assert parse_tags(" b, a ,, b ") == ["a", "b"]
    assert check_labels({"notes": "kept\tas\nwritten  "}) == {"notes": "kept\tas\nwritten"}
