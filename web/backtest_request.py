"""What a backtest request asks for: the form's or the JSON body's values checked field
by field (:func:`prepare`, in the request, before anything is queued) and the run
itself with its errors mapped back to the field they are about (:func:`run_request`,
in a background job).

Units are the model's ``env_params`` units: commission a fraction of the traded
notional per fill (0.0005 = 0.05 %), slippage in basis points. A blank cost keeps the
model's value; blank dates choose the default period (see ``choose_period``).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from NetworkConfigs import UnknownModelType, type_label
from NetworkConfigs.artifacts import ArtifactError, list_models, read_config
from Utilities.accounting import COSTS, EnvParams, cost_errors
from Utilities.backtest_report import BacktestInputError, BacktestReport
from Utilities.backtester import FILL_MODES
from Utilities.data_loading import parse_time
from Utilities.data_utils import DataError
from Utilities.input_errors import InputError
from Utilities.model_backtester import Progress, backtest_model
from Utilities.safe_paths import shown as shown_path
from web.datafiles import client_message, list_csv_files, models_dir, resolve_csv

log = logging.getLogger(__name__)

FIELDS = ("model", "csv", "start", "end", "commission", "slippage", "initial_balance", "fill")


class FieldError(ValueError):
    """A request value that cannot run; ``field`` names the form/JSON field."""

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


class FieldErrors(ValueError):
    """Errors by field (``form``: not tied to one field), with the HTTP status."""

    def __init__(self, errors: dict[str, str], status: int = 422) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors, self.status = errors, status


@dataclass(frozen=True)
class BacktestRequest:
    """A validated request, plain data a worker thread can run without the app."""

    model: dict[str, Any]      # dir_name, name, type, label, path, shown (its path as shown)
    csv_path: Path
    csv_name: str              # as the person named it: "sample.csv", "uploads/…"
    options: dict[str, Any]    # backtest_model's keyword arguments
    shown: dict[str, Any]      # the request as the result records it ("run again")
    values: dict[str, Any]     # as sent, to show the form again if the run fails

    def on_file(self, name: str, path: Path) -> BacktestRequest:
        """The same request on another file (an upload, once it is kept)."""
        return replace(self, csv_path=path, csv_name=name,
                       shown={**self.shown, "csv": name}, values={**self.values, "csv": name})


# --------------------------------------------------------------------------- models


def model_choices() -> list[dict[str, Any]]:
    """Every model folder, readable ones with their env_params defaults and test slice."""
    csv_names = {f.name for f in list_csv_files()}
    rows = list_models(models_dir())
    for row in rows:
        row["label"] = type_label(row["type"])
        row["defaults"], row["test"], row["csv"] = {}, None, ""
        if row["error"]:
            continue
        try:
            config = read_config(Path(row["path"]))
            row["defaults"] = EnvParams.from_dict(dict(config.get("env_params") or {})).to_dict()
        except (ArtifactError, OSError, ValueError) as exc:
            row["error"] = str(exc)
            continue
        split = config.get("split")
        if isinstance(split, dict) and isinstance(split.get("test"), dict):
            row["test"] = {k: re.sub(r" 00:00(:00)?$", "", str(split["test"].get(k, "")))
                           for k in ("start", "end")}
        trained_on = Path(str(config.get("data_file") or "")).name
        row["csv"] = trained_on if trained_on in csv_names else ""
    return rows


def find_model(dir_name: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    for row in models:
        if row["dir_name"] == dir_name:
            if row["error"]:
                raise FieldError("model", f"model {dir_name!r} is unreadable: {row['error']}")
            return row
    raise FieldError("model", f"no model {dir_name!r} in the library; choose one of the list",
                     status=404)


# --------------------------------------------------------------------------- validation


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(field: str, value: Any) -> float | None:
    if blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError(field, f"{field} must be a number; got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise FieldError(field, f"{field} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise FieldError(field, f"{field} must be a finite number; got {value!r}")
    problem = cost_errors(**{field: number}).get(field)  # the one cost rule (accounting)
    if problem:
        raise FieldError(field, problem)
    return number


def _date(field: str, value: Any) -> pd.Timestamp | None:
    try:  # the one date rule (data_loading); an end date alone means its whole day
        return parse_time(value, field, whole_day=field == "end")
    except InputError as exc:
        raise FieldError(field, str(exc)) from None


def validate(values: dict[str, Any], models: list[dict[str, Any]], upload: Path | None = None
             ) -> tuple[dict[str, Any], dict[str, str]]:
    """(backtest arguments, errors by field) for raw form or JSON values; ``upload`` is
    the file to use instead of the listed ``csv``."""
    errors: dict[str, str] = {}
    args: dict[str, Any] = {}

    def check(field: str, func: Any) -> None:
        try:
            args[field] = func()
        except FieldError as exc:
            errors[exc.field or field] = str(exc)

    def model() -> dict[str, Any]:
        if blank(values.get("model")):
            raise FieldError("model", "choose a model")
        if not isinstance(values["model"], str):
            raise FieldError("model", f"model must be a model folder name; got "
                                      f"{values['model']!r}")
        return find_model(values["model"], models)

    def csv() -> Path:
        if upload is not None:
            return upload
        name = values.get("csv")
        if blank(name) or not isinstance(name, str):
            raise FieldError("csv", "choose a data file or upload one")
        try:
            return resolve_csv(name)
        except DataError as exc:
            raise FieldError("csv", client_message(exc)) from None

    def fill() -> str:
        mode = values.get("fill")
        if blank(mode):
            return "close"
        if mode not in FILL_MODES:
            raise FieldError("fill", f"fill must be one of {list(FILL_MODES)}; got {mode!r}")
        return str(mode)

    check("model", model)
    check("csv", csv)
    for field in COSTS:
        check(field, lambda f=field: _number(f, values.get(f)))
    check("start", lambda: _date("start", values.get("start")))
    check("end", lambda: _date("end", values.get("end")))
    check("fill", fill)
    if args.get("start") is not None and args.get("end") is not None \
            and args["start"] > args["end"]:
        errors["end"] = f"end {values['end']} is before start {values['start']}"
    for field in ("start", "end"):  # as typed: choose_period reads a date as a whole day
        args[f"{field}_text"] = "" if blank(values.get(field)) else str(values[field]).strip()
    return args, errors


def prepare(values: dict[str, Any], upload: Path | None = None) -> BacktestRequest:
    """The request ``values`` describe; FieldErrors (404 for an unknown model) if any
    field is wrong."""
    models = model_choices()
    args, errors = validate(values, models, upload)
    if errors:
        missing = not any(m["dir_name"] == values.get("model") for m in models)
        raise FieldErrors(errors, status=404 if "model" in errors and missing
                          and not blank(values.get("model")) else 422)
    model = {k: args["model"][k] for k in ("dir_name", "name", "type", "label", "path")}
    model["shown"] = shown_path(model["path"], [models_dir()])
    csv_name = "" if upload is not None else str(values["csv"])
    options = {"start": args["start_text"] or None, "end": args["end_text"] or None,
               "fill": args["fill"], **{k: args[k] for k in COSTS}}
    shown = {"model": model["dir_name"], "csv": csv_name, "fill": args["fill"],
             "start": args["start_text"], "end": args["end_text"],
             **{k: args[k] for k in COSTS}}
    return BacktestRequest(model, Path(args["csv"]), csv_name, options, shown,
                           {k: values.get(k) for k in FIELDS})


# --------------------------------------------------------------------------- running


def run_request(request: BacktestRequest, progress: Progress | None = None) -> BacktestReport:
    """Backtest ``request``; FieldErrors naming the field a failure is about."""
    try:
        return backtest_model(Path(request.model["path"]), request.csv_path,
                              progress=progress, **request.options)
    except (BacktestInputError, DataError, ArtifactError, UnknownModelType) as exc:
        message = client_message(_without_paths(str(exc), request))
        raise FieldErrors({_field_of(exc, request.values) or "form": message}) from None
    except ValueError as exc:
        log.exception("backtest of %s on %s failed", request.model["dir_name"],
                      request.csv_name)
        message = client_message(_without_paths(str(exc), request))
        raise FieldErrors({"form": f"the backtest failed: {message}"}) from None


def _without_paths(text: str, request: BacktestRequest) -> str:
    """Paths as the person knows them (the listed name, the library's folder), never the
    server's absolute ones."""
    return (text.replace(str(request.csv_path), request.csv_name)
            .replace(str(request.model["path"]), request.model["shown"]))


def _field_of(exc: Exception, values: dict[str, Any]) -> str | None:
    """The field a failed backtest's error belongs to."""
    if isinstance(exc, DataError):
        return "csv"
    if isinstance(exc, ArtifactError | UnknownModelType):
        return "model"
    text = str(exc)
    for field in (*COSTS, "start", "end"):
        if text.startswith(field):
            return field
    if not isinstance(exc, BacktestInputError):
        return None
    if any(text.startswith(name) for name in EnvParams.__dataclass_fields__):
        return "model"  # a bad value in the model's own env_params
    for field in ("end", "start"):  # an empty or too short period
        if not blank(values.get(field)):
            return field
    return "csv"  # the default period of this file is too short
