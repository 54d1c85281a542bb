"""Train a model from a CSV of bars.

    python Utilities/run_training.py --csv_path sample.csv --model ppo [--mode smoke]
    python -m Utilities.run_training --csv_path bars.csv --model ppo --model_name nq_agent

Every run is recorded in the run store (config, per-episode and per-update metrics,
checkpoints, final status) and heartbeat while the process lives. One training per
model (type + name) at a time: a second is refused. Ctrl-C or SIGTERM stops after the
current iteration: a checkpoint and the model trained so far are saved and the run is
marked stopped; the exit status is 0 after Ctrl-C (the user asked) and 143 after
SIGTERM (the process was terminated). A second signal aborts at once (130 / 143).
Bad arguments or data: one line on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import uuid
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
from NetworkConfigs.base import deep_merge
from NetworkConfigs.callbacks import (
    Checkpoints,
    Heartbeat,
    ProgressBar,
    RunControl,
    StopOnSignal,
    StoreLogger,
)
from Utilities.data_utils import DataError, load_bars
from Utilities.logging_setup import configure_logging, one_line
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

log = logging.getLogger("run_training")
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143


class UsageError(Exception):
    """A problem with the command line or its files: reported in one line, exit 2."""


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
    return parser.parse_args(argv)


def _read_mapping(text: str, what: str, loader: Any) -> dict[str, Any]:
    try:
        value = loader(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{what} is not valid: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a mapping (an object), not {type(value).__name__}")
    return value


def build_config(args: argparse.Namespace, default: dict[str, Any],
                 smoke: dict[str, Any]) -> dict[str, Any]:
    """Defaults ← smoke preset ← --config file ← --training_params ← single flags."""
    config = deep_merge(default, smoke if args.mode == "smoke" else {})
    if args.config:
        if not args.config.is_file():
            raise UsageError(f"config file not found: {args.config}")
        config = deep_merge(config, _read_mapping(args.config.read_text(), str(args.config),
                                                  yaml.safe_load))
    config = deep_merge(config, _read_mapping(args.training_params, "--training_params",
                                              json.loads))
    for flag, key in ((args.total_timesteps, "total_timesteps"), (args.seed, "seed")):
        if flag is not None:
            config = deep_merge(config, {"train_params": {key: flag}})
    return config


def load_resume(target: str, store: RunStore | None) -> dict[str, Any]:
    """A checkpoint from a file, a model/checkpoint folder, or a run id in the store."""
    path = Path(target)
    if path.is_dir():
        found = sorted(path.glob("*_checkpoint.pt")) or sorted(path.glob("last.pt"))
        if not found:
            raise UsageError(f"no checkpoint (*_checkpoint.pt or last.pt) in {path}")
        path = found[0]
    elif not path.is_file():
        path = _checkpoint_of_run(target, store)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: tell the user which one
        raise UsageError(f"cannot read checkpoint {path}: not a torch checkpoint file "
                         f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in ("model", "iteration")):
        raise UsageError(f"{path} is not a training checkpoint (a weights-only file cannot "
                         "be resumed; use the model folder or its *_checkpoint.pt)")
    return state


def check_resume(state: dict[str, Any], csv_path: str, data_hash: str) -> None:
    """Exact continuation needs the very data the checkpoint was trained on."""
    trained_on = state.get("data_hash")
    if trained_on and data_hash != trained_on:
        raise UsageError(f"{csv_path} is not the data this checkpoint was trained on (SHA-256 "
                         "differs); resume with the same file, or train a new model")


def _checkpoint_of_run(run_id: str, store: RunStore | None) -> Path:
    if store is None:
        raise UsageError(f"--resume {run_id}: not a file or folder, and no run store to look in")
    try:
        events = store.events_after(0, run_id=run_id, kinds=["checkpoint"], limit=100_000)
    except RunStoreError as exc:
        raise UsageError(f"--resume {run_id}: {exc}") from None
    existing = [Path(e["payload"]["path"]) for e in events if Path(e["payload"]["path"]).is_file()]
    if not existing:
        raise UsageError(f"--resume {run_id}: the run has no checkpoint left on disk")
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
                              extra=extra), stop]
    if progress:
        callbacks.insert(0, ProgressBar(job["trainer"].progress_total,
                                        unit=job["trainer"].progress_unit))
    return callbacks


def prepare(args: argparse.Namespace, store: RunStore | None) -> dict[str, Any]:
    """Everything that can fail on bad input, before any run is recorded."""
    try:
        resume = load_resume(args.resume, store) if args.resume else None
        model_type = get_model_type(_type_name(args.model, resume))
        trainer_class = model_type.trainer_class()
        if resume is not None:
            _check_checkpoint(resume, trainer_class.checkpoint_keys, args.resume)
        base = resume["config"] if resume and "config" in resume else model_type.default_config
        config = build_config(args, base, trainer_class.smoke_config)
        name = validate_name(args.model_name or _default_name(args, resume))
        if args.run_id is not None:
            args.run_id = _run_id(args.run_id)
        trainer = trainer_class(config, [])
        bars = load_bars(args.csv_path)
        data_hash = file_sha256(Path(args.csv_path))  # load_bars proved the file exists
        if resume is not None:
            check_resume(resume, args.csv_path, data_hash)
        trainer.check_data(bars, Path(args.csv_path).name)
        if resume is not None:
            trainer.check_resume(resume, bars, Path(args.csv_path).name)
    except (UnknownModelType, DataError, ArtifactError, ValueError, TypeError, OSError) as exc:
        raise UsageError(str(exc)) from None
    same_model = resume is not None and resume.get("model_name") == name
    return {"model_type": model_type, "trainer": trainer, "config": trainer.config,
            "name": name, "bars": bars, "resume": resume, "overwrite": same_model,
            "data_hash": data_hash}


def _check_checkpoint(state: dict[str, Any], keys: tuple[str, ...], target: str) -> None:
    missing = [key for key in keys if key not in state]
    if missing:
        raise UsageError(f"--resume {target}: the checkpoint lacks {missing}; it is damaged or "
                         "was written by another version")


def _type_name(requested: str | None, resume: dict[str, Any] | None) -> str:
    """--model, else the checkpoint's type; a checkpoint resumes only its own type."""
    saved = resume.get("model_type") if resume else None
    if requested and saved and get_model_type(requested).name != saved:
        raise UsageError(f"the checkpoint is of a {saved!r} model; resume it with --model "
                         f"{saved} (or leave --model out)")
    return requested or saved or DEFAULT_MODEL_TYPE


def _default_name(args: argparse.Namespace, resume: dict[str, Any] | None) -> str:
    if resume and resume.get("model_name"):
        return str(resume["model_name"])
    return f"{Path(args.csv_path).stem}_{datetime.now(UTC):%Y%m%d_%H%M%S}"


def _run_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise UsageError(f"--run-id must be a UUID; got {text!r}") from None


def _run_fields(job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """How a run is recorded, whether the CLI creates it or takes over a launcher's."""
    return {"name": job["name"], "model_type": job["model_type"].name,
            "algorithm": job["model_type"].label, "config": job["config"],
            "data_file": str(args.csv_path), "tags": ["smoke"] if args.mode == "smoke" else []}


def _launcher_claim(store: RunStore | None, run_id: str | None) -> str | None:
    """The run a launcher (the dashboard) claimed for this process under --run-id."""
    if store is None or run_id is None:
        return None
    try:
        run = store.get_run(str(uuid.UUID(run_id)))
    except (ValueError, RunStoreError):  # not a UUID (prepare says so), unknown, no store
        return None
    return run["run_id"] if run["status"] == "running" else None


def _record_run(store: RunStore | None, job: dict[str, Any], args: argparse.Namespace,
                claimed: str | None) -> str | None:
    """Take over the launcher's claimed run, or claim a new one (refused while the same
    model is training)."""
    if store is None:
        return None
    fields = _run_fields(job, args)
    try:
        if claimed is not None:
            return store.adopt_run(claimed, **fields)["run_id"]
        return store.claim_run(**fields, run_id=args.run_id)
    except RunBusy as exc:
        raise UsageError(f"{exc}; wait for it to end or stop it (a run whose process died "
                         f"frees its model {store.lost_after:g} s after its last "
                         "heartbeat)") from None
    except RunStoreError as exc:
        raise UsageError(f"cannot record the run: {exc}") from None


def train(args: argparse.Namespace) -> int:
    try:  # the liveness settings, checked before anything is recorded
        heartbeat_seconds(), lost_after_seconds()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = open_store(args.database_url)
    with StopOnSignal() as stop, Heartbeat(store) as heartbeat:
        claimed = _launcher_claim(store, args.run_id)
        heartbeat.start(claimed)  # alive while the data loads
        try:
            job = prepare(args, store)
            run_id = _record_run(store, job, args, claimed)
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
        models_dir = args.models_dir or default_models_dir()
        # Keyed by run, so a later run of the same name cannot replace this run's checkpoint.
        checkpoints = (models_dir / ".checkpoints"
                       / (run_id or f"{job['model_type'].prefix}_{job['name']}"))
        job["trainer"].callbacks.extend(make_callbacks(job, store, run_id, checkpoints,
                                                       not args.no_progress, stop))
        code = _fit(job["trainer"], job, args, models_dir, store, run_id)
    # Terminated from outside: 128 + SIGTERM, as a shell reports it, so a supervisor or
    # a script sees that the budget was not trained (the run itself is stopped, saved).
    return EXIT_TERMINATED if stop.terminated and code in (0, EXIT_INTERRUPTED) else code


def _fit(trainer: Any, job: dict[str, Any], args: argparse.Namespace, models_dir: Path,
         store: RunStore | None, run_id: str | None) -> int:
    overwrite = args.overwrite or job["overwrite"]  # resuming replaces its own model only
    try:
        model_dir = trainer.fit(job["bars"], model_name=job["name"], models_dir=models_dir,
                                data_file=str(args.csv_path), overwrite=overwrite,
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
