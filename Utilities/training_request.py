"""A training request: what to train, on which data, with which settings. One object,
built once from the command line (:meth:`TrainingRequest.from_args`) or the Train form,
and handed to the training process as its command line (:meth:`TrainingRequest.argv`).

It is checked twice, by where the check runs:

- :func:`precheck`, in the dashboard's request thread: the model type, the name, every
  config value (all problems at once, each with its ``field``) and the data file's
  header and row count (enough to refuse a file too short for the lookback and the
  validation/test fractions). The file's values are never parsed there.
- ``run_training.prepare``, in the training process: the same, and the data itself,
  read and checked once; the trainer then trains on that very preparation.

Errors are :class:`UsageError` (an :class:`~Utilities.input_errors.InputError`): the
field is a command-line option (``csv_path``, ``model_name``, ``model``) or a config key
(``val_fraction``), so the CLI prints one line and the form places it by its field.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from NetworkConfigs import DEFAULT_MODEL_TYPE, UnknownModelType, get_model_type
from NetworkConfigs.artifacts import ArtifactError, default_models_dir, validate_name
from NetworkConfigs.base import deep_merge
from Utilities.alert_config import run_choice
from Utilities.dashboard_settings import SECTION as DASHBOARD_SECTION
from Utilities.dashboard_settings import DashboardSettings, dashboard_settings
from Utilities.data_utils import (
    OHLC,
    VOLUME,
    DataError,
    FeatureSpec,
    check_data_params,
    chronological_split,
    min_rows_for,
    require_rows,
)
from Utilities.input_errors import InputError, InputErrors
from Utilities.run_labels import SECTION as RUN_SECTION
from Utilities.run_labels import check_labels, config_section, merged_tags

MODES = ("smoke", "full")
# Suffixes whose header and rows a request thread can count line by line; a compressed
# file (the CLI reads .gz, .zip, …) is left to the training process.
_PLAIN_SUFFIXES = (".csv", ".txt")


class UsageError(InputError):
    """A problem with the command line, the form or their files: one line, exit 2 (CLI);
    ``field`` is the option (``csv_path``) or config key (``val_fraction``) it is about."""

    @classmethod
    def of(cls, exc: Exception, field: str | None = None) -> UsageError:
        """``exc`` as a UsageError, keeping its own field when it has one."""
        if isinstance(exc, UsageError):
            return exc
        if isinstance(exc, InputErrors):
            return UsageErrors(exc.errors)
        return cls(str(exc), getattr(exc, "field", None) or field)


class UsageErrors(UsageError, InputErrors):
    """Several problems found in one pass (a form shows them all at once)."""


ALERTS_SECTION = "alerts"  # the training config's per-run alert thresholds


@dataclass(frozen=True)
class TrainingRequest:
    """Everything a training is given. ``overrides`` are merged over the type's defaults
    (or the checkpoint's config) and the smoke preset: config file ← ``--training_params``
    ← single flags, already merged, or the values a form changed."""

    csv_path: Path
    model_type: str | None = None       # None: the checkpoint's type, else the default
    model_name: str | None = None       # None: <csv stem>_<time>, or the checkpoint's
    mode: str = "full"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    resume: str | None = None           # run id, model folder or checkpoint file
    models_dir: Path | None = None
    overwrite: bool = False
    run_id: str | None = None
    database_url: str | None = None     # never on a command line (it may hold a password)
    progress: bool = True
    threads: int | None = None          # torch's CPU threads; None: thread_budget()
    # The config's training_dashboard section (how the run is watched, not the model's).
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    # How the run is labelled (Utilities.run_labels): --experiment, --tag, --description,
    # or the config's run: section. The preset's own tag ("smoke") is added in ``tags``.
    experiment: str = ""
    user_tags: tuple[str, ...] = ()
    description: str = ""
    # The run's alert thresholds (Utilities.alert_config.run_choice): --alerts, or the
    # config's alerts: section; None takes alerts.yaml's.
    alerts: str | dict[str, Any] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainingRequest:
        """The request a parsed command line makes; UsageError naming the option."""
        overrides: dict[str, Any] = {}
        if args.config:
            if not args.config.is_file():
                raise UsageError(f"config file not found: {args.config}", "config")
            overrides = _read_mapping(args.config.read_text(), str(args.config),
                                      yaml.safe_load, "config")
        overrides = deep_merge(overrides, _read_mapping(
            args.training_params, "--training_params", json.loads, "training_params"))
        for flag, key in ((args.total_timesteps, "total_timesteps"), (args.seed, "seed")):
            if flag is not None:
                overrides = deep_merge(overrides, {"train_params": {key: flag}})
        try:
            dashboard = dashboard_settings(overrides.pop(DASHBOARD_SECTION, None))
            labels = _labels_of(args, overrides.pop(RUN_SECTION, None))
            alerts = run_choice(overrides.pop(ALERTS_SECTION, None))
            if getattr(args, "alerts", None) is not None:
                alerts = run_choice(args.alerts)
        except InputError as exc:
            raise UsageError.of(exc) from None
        return cls(dashboard=dashboard, **labels, alerts=alerts, csv_path=Path(args.csv_path),
                   model_type=args.model,
                   model_name=args.model_name, mode=args.mode, overrides=overrides,
                   resume=args.resume, models_dir=args.models_dir, overwrite=args.overwrite,
                   run_id=_run_id(args.run_id), database_url=args.database_url,
                   progress=not args.no_progress,
                   threads=None if args.threads is None else parse_threads(args.threads,
                                                                           "--threads"))

    def config_over(self, base: dict[str, Any], smoke: dict[str, Any],
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults (or the checkpoint's config) ← smoke preset ← the overrides (these,
        or ``overrides`` when given)."""
        mine = self.overrides if overrides is None else overrides
        return deep_merge(deep_merge(base, smoke if self.mode == "smoke" else {}), dict(mine))

    def argv(self, config_file: Path | None = None) -> list[str]:
        """The training process's arguments (after ``run_training.py``); the overrides go
        in ``config_file`` (YAML) when given, the store's URL by environment."""
        args = ["--csv_path", str(self.csv_path), "--mode", self.mode]
        for option, value in (("--model", self.model_type), ("--model_name", self.model_name),
                              ("--resume", self.resume), ("--run-id", self.run_id),
                              ("--models-dir", self.models_dir), ("--config", config_file),
                              ("--threads", self.threads)):
            if value is not None:
                args += [option, str(value)]
        if config_file is None and self.overrides:
            args += ["--training_params", json.dumps(dict(self.overrides))]
        if self.experiment:
            args += ["--experiment", self.experiment]
        for tag in self.user_tags:
            args += ["--tag", tag]
        if self.description:
            args += ["--description", self.description]
        if self.alerts is not None:
            alerts = self.alerts if isinstance(self.alerts, str) else json.dumps(self.alerts)
            args += ["--alerts", alerts]
        return args + ["--overwrite"] * self.overwrite + ["--no-progress"] * (not self.progress)

    @property
    def tags(self) -> list[str]:
        """The run's tags: the person's, and the preset's ("smoke")."""
        return merged_tags(self.user_tags, ["smoke"] if self.mode == "smoke" else [])

    def run_labels(self) -> dict[str, Any]:
        """How the run is labelled, as the store's create/claim/adopt take it."""
        return {"experiment": self.experiment, "tags": self.tags,
                "description": self.description}

    def type_name(self) -> str:
        return self.model_type or DEFAULT_MODEL_TYPE


def _labels_of(args: argparse.Namespace, section: Any) -> dict[str, Any]:
    """The run's labels: the config's ``run:`` section, then the flags (an
    ``--experiment`` or ``--description`` replaces the file's; ``--tag`` adds to its
    tags). InputError naming the flag (``experiment``, ``tags``) or ``run.<key>``."""
    labels = config_section(section)
    flags = check_labels({name: value for name, value in (
        ("experiment", getattr(args, "experiment", None)),
        ("tags", getattr(args, "tag", None)),
        ("description", getattr(args, "description", None))) if value is not None})
    tags = merged_tags(labels.get("tags", []), flags.pop("tags", []))
    labels.update(flags)
    if tags:
        check_labels({"tags": tags})  # the count, after merging
    return {"experiment": labels.get("experiment", ""), "user_tags": tuple(tags),
            "description": labels.get("description", "")}


def precheck(request: TrainingRequest, *, data: bool = True) -> dict[str, Any]:
    """What a request thread can check without parsing the data; the config the training
    will use. Raises UsageError (or UsageErrors, every problem found) naming each field.
    ``data=False`` leaves the data file out (the form already refused it). A new model
    only: a resume is checked by the training process, which reads the checkpoint."""
    try:
        model_type = get_model_type(request.type_name())
    except UnknownModelType as exc:
        raise UsageError(str(exc), "model") from None
    errors: dict[str | None, str] = {}
    try:
        name = validate_name(request.model_name or "")
        target = (request.models_dir or default_models_dir()) / f"{model_type.prefix}_{name}"
        if target.exists() and not request.overwrite:
            errors["model_name"] = (f"a {model_type.label} model named {name!r} already "
                                    "exists; choose another name")
    except ArtifactError as exc:
        errors["model_name"] = str(exc)
    trainer_class = model_type.trainer_class()
    trainer, config_errors = checked_trainer(
        trainer_class, lambda overrides: request.config_over(
            model_type.default_config, trainer_class.smoke_config, overrides),
        request.overrides)
    errors.update(config_errors)
    if trainer is not None and data:
        errors.update(_data_problems(request.csv_path, trainer))
    if errors:
        raise collected(errors)
    return trainer.config


def collected(errors: Mapping[str | None, str]) -> UsageError:
    """One UsageError for the problems found (UsageErrors for several)."""
    if len(errors) == 1:
        ((key, message),) = errors.items()
        return UsageError(message, key)
    return UsageErrors(errors)


def checked_trainer(trainer_class: type, config_of: Callable[[dict], dict],
                    overrides: Mapping[str, Any]) -> tuple[Any, dict[str | None, str]]:
    """The trainer for ``config_of(overrides)`` and every config problem, each by its
    key: a value that is refused is noted and put back to its default, and the config
    checked again, so one pass finds them all (a problem without a key ends the pass)."""
    remaining = copy.deepcopy(dict(overrides))
    errors: dict[str | None, str] = {}
    while True:
        try:
            trainer = trainer_class(config_of(remaining), [])
            if isinstance(trainer.config.get("data_params"), dict):
                check_data_params(trainer.config["data_params"])
            return trainer, errors
        except InputError as exc:  # one problem, or several (InputErrors) at once
            errors.update(exc.errors)
            dropped = [field is not None and _drop_key(remaining, field) for field in exc.errors]
            if not all(dropped):
                return None, errors
        except (ValueError, TypeError) as exc:  # a rule across keys: the config as a whole
            errors.setdefault(None, str(exc))
            return None, errors


def _drop_key(config: dict[str, Any], key: str) -> bool:
    """Remove ``key`` (flat, or inside its section); whether it was there."""
    if key in config and not isinstance(config[key], dict):
        del config[key]
        return True
    return any(isinstance(section, dict) and section.pop(key, _MISSING) is not _MISSING
               for section in config.values())


_MISSING = object()


def csv_outline(path: Path) -> tuple[list[str], int] | None:
    """The header's column names and the number of non-blank lines below it, read line
    by line (no value is parsed); None for a file only the data loader reads (compressed).
    DataError when there is no such file or no header."""
    path = Path(path)
    if path.suffix.lower() not in _PLAIN_SUFFIXES:
        return None
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a file",
                        source=path.name, field="csv_path")
    header, rows = None, 0
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            if header is None:
                header = line
            else:
                rows += 1
    if header is None:
        raise DataError("file is empty", source=path.name, field="csv_path")
    names = next(csv.reader([header.decode("utf-8-sig", errors="replace")]), [])
    return [name.strip() for name in names], rows


def _data_problems(csv_path: Path, trainer: Any) -> dict[str | None, str]:
    """The data file's header and row count against the config: missing feature columns,
    too few rows for the lookback, a validation/test split that leaves a part too small."""
    lookback, params = getattr(trainer, "lookback", None), trainer.config.get("data_params")
    try:
        outline = csv_outline(csv_path)
        if outline is None or lookback is None or not isinstance(params, dict):
            return {}
        columns, rows = outline
        present = {name.lower() for name in columns}
        features = params["features"]
        missing = [f for f in features or () if f.lower() not in present]
        if missing:
            return {"features": f"feature column(s) {missing} not in {Path(csv_path).name}; "
                                f"its columns: {columns}"}
        # The transform consumes a bar where it applies to price columns (FeatureSpec's
        # rule); an explicit list without OHLC may still hold price-level extras, so
        # the count assumes none and never refuses a file that would train.
        prices = ("Close",) if features is None or any(
            f.lower() in {c.lower() for c in (*OHLC, VOLUME)} for f in features) else ()
        try:
            spec = FeatureSpec(("Close",), params["transform"], prices)
        except DataError as exc:
            return {"transform": str(exc)}
        require_rows(rows, min_rows_for(lookback, spec), source=Path(csv_path).name,
                     why=f"lookback {lookback} + {spec.warmup} warm-up + a minimum per part")
        chronological_split(rows - spec.warmup, lookback=lookback,
                            val_fraction=params["val_fraction"],
                            test_fraction=params["test_fraction"])
    except DataError as exc:
        return {exc.field or "csv_path": str(exc)}
    return {}


def _read_mapping(text: str, what: str, loader: Callable[[str], Any],
                  option: str) -> dict[str, Any]:
    try:
        value = loader(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{what} is not valid: {exc}", option) from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a mapping (an object), not {type(value).__name__}",
                         option)
    return value


def thread_budget() -> int:
    """The CPU threads one training may use when nobody said: ``TRAIN_THREADS``, else
    every CPU (a shell run has the machine; the dashboard gives each of its trainings
    its own budget, see web.training_jobs)."""
    text = os.environ.get("TRAIN_THREADS")
    return parse_threads(text, "TRAIN_THREADS") if text else max(1, os.cpu_count() or 1)


def parse_threads(text: str | int, where: str) -> int:
    """A thread count (1-1024); UsageError naming ``where`` for anything else."""
    try:
        threads = int(text)
    except (TypeError, ValueError):
        threads = 0
    if not 1 <= threads <= 1024:
        raise UsageError(f"{where} must be a whole number of CPU threads from 1 to 1024; "
                         f"got {text!r}", "threads")
    return threads


def _run_id(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise UsageError(f"--run-id must be a UUID; got {text!r}", "run_id") from None
