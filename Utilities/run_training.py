"""Train a model from a CSV of bars.

    python Utilities/run_training.py --csv_path sample.csv --model ppo [--mode smoke]
    python -m Utilities.run_training --csv_path bars.csv --model ppo --model_name nq_agent
    python Utilities/run_training.py --csv_path sample.csv --experiment lr-sweep --tag a --tag b

Every run is recorded in the run store (config, per-episode and per-update metrics,
checkpoints, final status) and heartbeat while the process lives. One training per
model (type + name) at a time: a second is refused. ``--experiment``, ``--tag`` and
``--description`` (or the config's ``run:`` section) label the run. Ctrl-C or SIGTERM
stops after the current iteration: a checkpoint and the model trained so far are saved
and the run is marked stopped; the exit status is 0 after Ctrl-C (the user asked) and 143 after
SIGTERM (the process was terminated). A second signal aborts at once (130 / 143).
Bad arguments or data: one line on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import yaml

from NetworkConfigs import (
    DEFAULT_MODEL_TYPE,
    UnknownModelType,
    get_model_type,
    model_type_names,
)
from NetworkConfigs.artifacts import (
    ArtifactError,
    default_models_dir,
    file_sha256,
    find_config,
    validate_name,
)
from NetworkConfigs.callbacks import (
    Checkpoints,
    Heartbeat,
    ProgressBar,
    RunControl,
    StopOnSignal,
    StoreLogger,
    latest_checkpoint,
)
from NetworkConfigs.torch_utils import set_threads
from Utilities.alert_config import AlertSettings, for_run, load_settings
from Utilities.dashboard_settings import DashboardSettings
from Utilities.data_utils import DataError, load_bars
from Utilities.input_errors import InputError
from Utilities.logging_setup import configure_logging, one_line
from Utilities.run_alerts import watching
from Utilities.run_store import (
    LOST_PREFIX,
    TERMINAL_STATUSES,
    RunBusy,
    RunNotFound,
    RunStore,
    RunStoreError,
    heartbeat_seconds,
    lost_after_seconds,
)
from Utilities.training_request import TrainingRequest, UsageError, thread_budget

__all__ = ["TrainingRequest", "UsageError", "main", "parse_args", "prepare", "train"]

log = logging.getLogger("run_training")
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143
MAIN_SCRIPT = Path(__file__).resolve().parent.parent / "Main.py"  # the dashboard


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_training.py", description=__doc__.split("\n")[0])
    parser.add_argument("--csv_path", "--csv-path", required=True, help="CSV of bars")
    parser.add_argument("--model", help=f"model type: {model_type_names()} (default "
                        f"{DEFAULT_MODEL_TYPE}, or the type of the checkpoint to --resume)")
    parser.add_argument("--model_name", "--model-name", help="default: <csv stem>_<time>")
    parser.add_argument("--training_params", "--training-params", default="{}",
                        help="JSON merged over the config, e.g. '{\"train_params\": {...}}'")
    parser.add_argument("--config", type=Path, help="YAML or JSON config file")
    parser.add_argument("--mode", choices=("smoke", "full"), default="full",
                        help="smoke: a tiny budget that finishes in under a minute")
    parser.add_argument("--total-timesteps", "--total_timesteps", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", help="run id, model folder or checkpoint file to continue")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    parser.add_argument("--database-url", help="run store (default: DATABASE_URL or SQLite)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--run-id", help="record the run under this UUID (launchers that "
                                         "must know the id before training starts)")
    parser.add_argument("--experiment", help="the experiment this run belongs to (a name "
                        "that groups runs on the history page and in the API)")
    parser.add_argument("--alerts", help="this run's alert thresholds: CONSERVATIVE, "
                        "MODERATE, AGGRESSIVE, off, or a JSON object of values (default: "
                        "alerts.yaml's; channels always come from alerts.yaml)")
    parser.add_argument("--tag", action="append", help="a tag for the run (repeatable: "
                        "--tag baseline --tag lr-3e-4)")
    parser.add_argument("--description", help="what this run is for")
    parser.add_argument("--threads", help="CPU threads torch may use (default: TRAIN_THREADS, "
                        "else every CPU); a second busy process makes more threads than "
                        "cores several times slower")
    return parser.parse_args(argv)


def load_resume(target: str, store: RunStore | None) -> dict[str, Any]:
    """A checkpoint from a file, a model/checkpoint folder, or a run id in the store."""
    path = Path(target)
    if path.is_dir():
        found = sorted(path.glob("*_checkpoint.pt")) or [latest_checkpoint(path)]
        if found[0] is None:
            raise UsageError(f"no checkpoint (*_checkpoint.pt, iteration-*.pt or last.pt) in "
                             f"{path}", "resume")
        path = found[0]
    elif not path.is_file():
        path = checkpoint_of_run(target, store)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: tell the user which one
        raise UsageError(f"cannot read checkpoint {path}: not a torch checkpoint file "
                         f"({type(exc).__name__})", "resume") from None
    if not isinstance(state, dict) or any(k not in state for k in ("model", "iteration")):
        raise UsageError(f"{path} is not a training checkpoint (a weights-only file cannot "
                         "be resumed; use the model folder or its *_checkpoint.pt)", "resume")
    return state


def check_resume(state: dict[str, Any], csv_path: str, data_hash: str) -> None:
    """Exact continuation needs the very data the checkpoint was trained on."""
    trained_on = state.get("data_hash")
    if trained_on and data_hash != trained_on:
        raise UsageError(f"{csv_path} is not the data this checkpoint was trained on (SHA-256 "
                         "differs); resume with the same file, or train a new model", "csv_path")


def checkpoint_of_run(run_id: str, store: RunStore | None) -> Path:
    """The run's newest checkpoint still on disk; UsageError (field ``resume``) if none."""
    if store is None:
        raise UsageError(f"--resume {run_id}: not a file or folder, and no run store to look "
                         "in", "resume")
    try:
        events = store.events_after(0, run_id=run_id, kinds=["checkpoint"], limit=100_000)
    except RunStoreError as exc:
        raise UsageError(f"--resume {run_id}: {exc}", "resume") from None
    existing = [Path(e["payload"]["path"]) for e in events if Path(e["payload"]["path"]).is_file()]
    if not existing:
        raise UsageError(f"--resume {run_id}: the run has no checkpoint left on disk", "resume")
    return existing[-1]


def open_store(url: str | None) -> RunStore | None:
    """The run store, or None (training goes on unrecorded, with a warning)."""
    try:
        return RunStore(url)
    except RunStoreError as exc:
        log.warning("run store unavailable, this run will not be recorded: %s", exc)
        return None


def make_callbacks(job: dict[str, Any], store: RunStore | None, run_id: str | None,
                   checkpoint_dir: Path, progress: bool, stop: StopOnSignal) -> list[Any]:
    """Progress bar, run-store logging, web control, checkpoints and Ctrl-C handling.

    Order matters at the end: the trainer tells callbacks in reverse, so the store
    logger (first) closes after the final checkpoint (later) has been logged.
    """
    callbacks: list[Any] = []
    saved = None
    if store is not None:  # the process's Heartbeat beats the run, not the logger
        logger = StoreLogger(store, run_id, heartbeat_interval=math.inf)
        saved = logger.metrics.log_checkpoint
        callbacks += [logger, RunControl(store, run_id, should_stop=lambda: stop.requested)]
    extra = {"config": job["config"], "model_name": job["name"], "data_hash": job["data_hash"],
             "model_type": job["model_type"].name}
    callbacks += [Checkpoints(checkpoint_dir, job["trainer"].checkpoint_every, on_saved=saved,
                              extra=extra, keep=job["trainer"].keep_checkpoints), stop]
    if progress:
        callbacks.insert(0, ProgressBar(job["trainer"].progress_total,
                                        unit=job["trainer"].progress_unit))
    return callbacks


def prepare(request: TrainingRequest, store: RunStore | None) -> dict[str, Any]:
    """Everything that can fail on bad input, before any run is recorded. The data is
    read and checked here, once: the trainer keeps its preparation for ``fit``."""
    resume = load_resume(request.resume, store) if request.resume else None
    with _field("model"):
        model_type = get_model_type(_type_name(request.model_type, resume))
    trainer_class = model_type.trainer_class()
    if resume is not None:
        _check_checkpoint(resume, trainer_class.checkpoint_keys, request.resume)
    base = resume["config"] if resume and "config" in resume else model_type.default_config
    with _field("model_name"):
        name = validate_name(request.model_name or default_model_name(request, resume))
    with _field(None):  # a config error names its key (its field) itself
        trainer = trainer_class(request.config_over(base, trainer_class.smoke_config), [])
    source = request.csv_path.name
    with _field("csv_path"):
        bars = load_bars(request.csv_path)
        data_hash = file_sha256(request.csv_path)  # load_bars proved the file exists
    if resume is not None:
        check_resume(resume, request.csv_path, data_hash)
    with _field("csv_path"):  # or the config key a DataError names (val_fraction, …)
        trainer.check_data(bars, source)
    if resume is not None:
        with _field("resume"):
            trainer.check_resume(resume, bars, source)
    same_model = resume is not None and resume.get("model_name") == name
    return {"model_type": model_type, "trainer": trainer, "config": trainer.config,
            "name": name, "bars": bars, "resume": resume, "overwrite": same_model,
            "data_hash": data_hash}


@contextmanager
def _field(field: str | None) -> Iterator[None]:
    """Bad input raised inside as a UsageError about ``field`` (unless it names its own)."""
    try:
        yield
    except UsageError:
        raise
    except (InputError, UnknownModelType, ArtifactError, ValueError, TypeError, OSError) as exc:
        raise UsageError.of(exc, field) from None


def _check_checkpoint(state: dict[str, Any], keys: tuple[str, ...], target: str) -> None:
    missing = [key for key in keys if key not in state]
    if missing:
        raise UsageError(f"--resume {target}: the checkpoint lacks {missing}; it is damaged or "
                         "was written by another version", "resume")


def _type_name(requested: str | None, resume: dict[str, Any] | None) -> str:
    """--model, else the checkpoint's type; a checkpoint resumes only its own type."""
    saved = resume.get("model_type") if resume else None
    if requested and saved and get_model_type(requested).name != saved:
        raise UsageError(f"the checkpoint is of a {saved!r} model; resume it with --model "
                         f"{saved} (or leave --model out)", "model")
    return requested or saved or DEFAULT_MODEL_TYPE


def default_model_name(request: TrainingRequest, resume: dict[str, Any] | None = None) -> str:
    """The name of a training that was given none: the checkpoint's when resuming, else
    ``<csv stem>_<UTC time>`` (the CLI's rule; the start API uses it too)."""
    if resume and resume.get("model_name"):
        return str(resume["model_name"])
    return f"{request.csv_path.stem}_{datetime.now(UTC):%Y%m%d_%H%M%S}"


def _run_fields(job: dict[str, Any], request: TrainingRequest) -> dict[str, Any]:
    """How a run is recorded, whether the CLI creates it or takes over a launcher's."""
    return {"name": job["name"], "model_type": job["model_type"].name,
            "algorithm": job["model_type"].label, "config": job["config"],
            "data_file": str(request.csv_path), **request.run_labels()}


def _launcher_claim(store: RunStore | None, run_id: str | None) -> str | None:
    """The run a launcher (the dashboard) claimed for this process under --run-id."""
    if store is None or run_id is None:
        return None
    try:
        run = store.get_run(str(uuid.UUID(run_id)))
    except (ValueError, RunStoreError):  # not a UUID (the request says so), unknown, no store
        return None
    return run["run_id"] if run["status"] in ("starting", "running") else None


def _record_run(store: RunStore | None, job: dict[str, Any], request: TrainingRequest,
                claimed: str | None) -> str | None:
    """Take over the launcher's claimed run, or claim a new one (refused while the same
    model is training)."""
    if store is None:
        return None
    fields = _run_fields(job, request)
    try:
        if claimed is not None:
            return store.adopt_run(claimed, **fields)["run_id"]
        return store.claim_run(**fields, run_id=request.run_id)
    except RunBusy as exc:
        raise UsageError(f"{exc}; wait for it to end or stop it (a run whose process died "
                         f"frees its model {store.lost_after:g} s after its last "
                         "heartbeat)", "model_name") from None
    except RunStoreError as exc:
        raise UsageError(f"cannot record the run: {exc}", "run_id") from None


def train(args: argparse.Namespace) -> int:
    """The training a command line asks for (the request is built, checked and its data
    read once, here); the exit status."""
    try:  # the liveness settings, checked before anything is recorded
        heartbeat_seconds(), lost_after_seconds()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = open_store(args.database_url)
    with StopOnSignal() as stop, Heartbeat(store) as heartbeat:
        claimed = _launcher_claim(store, args.run_id)
        heartbeat.start(claimed)  # alive while the data loads
        try:
            request = TrainingRequest.from_args(args)
            alerts = alert_settings(request)
            set_threads(request.threads or thread_budget())
            job = prepare(request, store)
            run_id = _record_run(store, job, request, claimed)
        except UsageError as exc:
            _finish(store, claimed, "failed", error=str(exc))  # the claim must not linger
            raise
        except KeyboardInterrupt:  # a second signal while the data loaded
            stop.requested = True
            run_id = claimed
        heartbeat.start(run_id)
        if stop.requested:
            _finish(store, run_id, "stopped", error="interrupted before training started")
            print("interrupted before training started", file=sys.stderr)
            return EXIT_TERMINATED if stop.terminated else EXIT_INTERRUPTED
        models_dir = request.models_dir or default_models_dir()
        # Keyed by run, so a later run of the same name cannot replace this run's checkpoint.
        checkpoints = (models_dir / ".checkpoints"
                       / (run_id or f"{job['model_type'].prefix}_{job['name']}"))
        job["trainer"].callbacks.extend(make_callbacks(job, store, run_id, checkpoints,
                                                       request.progress, stop))
        # The platform's alert rules watch the run from the store on their own thread.
        with served_dashboard(request.dashboard, store, run_id), \
                watching(store, run_id, alerts, name=job["name"]):
            code = _fit(job["trainer"], job, request, models_dir, store, run_id)
    # Terminated from outside: 128 + SIGTERM, as a shell reports it, so a supervisor or
    # a script sees that the budget was not trained (the run itself is stopped, saved).
    return EXIT_TERMINATED if stop.terminated and code in (0, EXIT_INTERRUPTED) else code


def alert_settings(request: TrainingRequest) -> AlertSettings:
    """The run's alert settings: alerts.yaml (or $ALERTS_CONFIG) with the run's own
    thresholds; UsageError naming the file or ``alerts`` when they are unusable."""
    try:
        return for_run(load_settings(), request.alerts)
    except InputError as exc:
        raise UsageError.of(exc) from None


@contextmanager
def served_dashboard(settings: DashboardSettings, store: RunStore | None,
                     run_id: str | None) -> Iterator[None]:
    """With the config's ``training_dashboard.auto_start``, the dashboard
    (``python Main.py``, its own process on the run's store) beside the training while it
    runs, its run page's address printed. A process, not an import: this module sits
    below the web layer. A dashboard that cannot start (its port taken) says so on
    stderr and the training goes on."""
    if not settings.auto_start or store is None or run_id is None:
        yield
        return
    env = {**os.environ, "DATABASE_URL": store.engine.url.render_as_string(hide_password=False),
           "LIVE_POLL_SECONDS": str(settings.update_interval_ms / 1000)}
    child = subprocess.Popen([sys.executable, str(MAIN_SCRIPT), "--no-demo", "--port",
                              str(settings.port), "--theme", settings.theme],
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    print(f"live dashboard: http://127.0.0.1:{settings.port}/runs/{run_id}", file=sys.stderr)
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _fit(trainer: Any, job: dict[str, Any], request: TrainingRequest, models_dir: Path,
         store: RunStore | None, run_id: str | None) -> int:
    overwrite = request.overwrite or job["overwrite"]  # resuming replaces its own model only
    try:
        model_dir = trainer.fit(job["bars"], model_name=job["name"], models_dir=models_dir,
                                data_file=str(request.csv_path), overwrite=overwrite,
                                resume_state=job["resume"])
    except KeyboardInterrupt:
        _finish(store, run_id, "stopped", error="interrupted")
        print("interrupted: run stopped (the last checkpoint is kept)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ArtifactError, DataError, ValueError) as exc:
        _finish(store, run_id, "failed", error=str(exc))
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        _finish(store, run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        log.exception("training failed")
        return EXIT_FAILED
    config = yaml.safe_load(find_config(model_dir).read_text())
    status = trainer.status
    _finish(store, run_id, status, summary=config.get("metrics", {}), model_dir=str(model_dir))
    _report(model_dir, config.get("metrics", {}), status, run_id)
    return 0


def _finish(store: RunStore | None, run_id: str | None, status: str, *, error: str | None = None,
            summary: dict[str, Any] | None = None, model_dir: str | None = None) -> None:
    if store is None or run_id is None:
        return
    try:
        if summary is not None or model_dir is not None:
            store.update_run(run_id, summary=summary, model_dir=model_dir)
        run = store.get_run(run_id)
        if run["status"] not in TERMINAL_STATUSES:
            store.set_status(run_id, status, error=error)
        elif (run["error"] or "").startswith(LOST_PREFIX):
            log.warning("run %s was marked lost while this process was unreachable (%s); it "
                        "ended %s", run_id, run["error"], status)
    except RunNotFound:
        log.warning("run %s was deleted from the store while it trained", run_id)
    except RunStoreError as exc:
        log.warning("could not record the end of run %s: %s", run_id, exc)


def _report(model_dir: Path, metrics: dict[str, Any], status: str, run_id: str | None) -> None:
    print(f"{status}: model saved to {model_dir}")
    for key, value in metrics.items():
        print(f"  {key}: {value}")
    if run_id:
        print(f"  run id: {run_id}")


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        return train(args)
    except UsageError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
