"""What a backtest request asks for: the form's or the JSON body's values checked field
by field (:func:`prepare`, in the request, before anything is queued) and the run
itself with its errors mapped back to the field they are about (:func:`run_request`,
in a background job).

Units are the model's ``env_params`` units: commission a fraction of the traded
notional per fill (0.0005 = 0.05 %), slippage in basis points. A blank cost keeps the
model's value; blank dates choose the default period (see ``choose_period``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from flask import current_app

from NetworkConfigs import UnknownModelType, type_label
from NetworkConfigs.artifacts import ArtifactError, file_sha256, list_models, read_config
from Utilities.accounting import COSTS, EnvParams, cost_errors
from Utilities.backtest_report import BacktestInputError, BacktestReport
from Utilities.backtester import FILL_MODES, MAX_RANDOM_POLICIES, RANDOM_POLICIES
from Utilities.data_loading import parse_time
from Utilities.data_utils import DataError
from Utilities.input_errors import InputError, InputErrors
from Utilities.model_backtester import Progress, backtest_model
from Utilities.safe_paths import shown as shown_path
from web.datafiles import client_message, list_csv_files, models_dir, resolve_csv, shown_name
from web.json_io import ApiError

log = logging.getLogger(__name__)

FIELDS = ("model", "csv", "start", "end", "commission", "slippage", "initial_balance", "fill")


class FieldErrors(InputErrors):
    """Errors by field (``form``: not tied to one field), with the HTTP status."""

    def __init__(self, errors: dict[str, str], status: int = 422) -> None:
        super().__init__(errors)
        self.status = status


@dataclass(frozen=True)
class BacktestRequest:
    """A validated request, plain data a worker thread can run without the app."""

    model: dict[str, Any]      # dir_name, name, type, label, path, shown (its path as shown)
    csv_path: Path
    csv_name: str              # as the person named it: "sample.csv", "uploads/…"
    options: dict[str, Any]    # backtest_model's keyword arguments
    shown: dict[str, Any]      # the request as the result records it ("run again")
    values: dict[str, Any]     # as sent, to show the form again if the run fails
    # Why it ran, when not from the form: {"evaluation": id, "run_id": ...} for one run
    # of an evaluation (web.evaluate); saved with the result.
    origin: dict[str, Any] = dataclasses.field(default_factory=dict)

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
        row["defaults"], row["test"], row["trained"], row["csv"] = {}, None, None, ""
        if row["error"]:
            continue
        try:
            config = read_config(Path(row["path"]))
            row["defaults"] = EnvParams.from_dict(dict(config.get("env_params") or {})).to_dict()
        except (ArtifactError, OSError, ValueError) as exc:
            row["error"] = str(exc)
            continue
        row["test"] = _part_dates(config, "test", "test")
        row["trained"] = training_period(config)
        trained_on = Path(str(config.get("data_file") or "")).name
        row["csv"] = trained_on if trained_on in csv_names else ""
    return rows


def _part_dates(config: dict[str, Any], first: str, last: str) -> dict[str, str] | None:
    """{"start", "end"} from the start of split part ``first`` to the end of ``last``
    (midnight left out), or None when the config lacks them."""
    split = config.get("split")
    if not isinstance(split, dict) or not isinstance(split.get(first), dict):
        return None
    end_part = split.get(last) if isinstance(split.get(last), dict) else split[first]
    return {"start": re.sub(r" 00:00(:00)?$", "", str(split[first].get("start", ""))),
            "end": re.sub(r" 00:00(:00)?$", "", str(end_part.get("end", "")))}


def training_period(config: dict[str, Any]) -> dict[str, str] | None:
    """The dates the model learned from: its train part and the validation part that
    chose its best weights (both in-sample), from the model folder's ``split``."""
    return _part_dates(config, "train", "validation")


def find_model(dir_name: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    for row in models:
        if row["dir_name"] == dir_name:
            if row["error"]:
                raise InputError(f"model {dir_name!r} is unreadable: {row['error']}", "model")
            return row
    raise ApiError(404, f"no model {dir_name!r} in the library; choose one of the list",
                   "model")


# --------------------------------------------------------------------------- validation


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(field: str, value: Any) -> float | None:
    if blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(field=field, message=f"{field} must be a number; got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise InputError(field=field, message=f"{field} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(field=field, message=f"{field} must be a finite number; got {value!r}")
    problem = cost_errors(**{field: number}).get(field)  # the one cost rule (accounting)
    if problem:
        raise InputError(field=field, message=problem)
    return number


def _date(field: str, value: Any) -> pd.Timestamp | None:
    try:  # the one date rule (data_loading); an end date alone means its whole day
        return parse_time(value, field, whole_day=field == "end")
    except InputError as exc:
        raise InputError(field=field, message=str(exc)) from None


def validate(values: dict[str, Any], models: list[dict[str, Any]], upload: Path | None = None
             ) -> tuple[dict[str, Any], dict[str, str]]:
    """(backtest arguments, errors by field) for raw form or JSON values; ``upload`` is
    the file to use instead of the listed ``csv``."""
    errors: dict[str, str] = {}
    args: dict[str, Any] = {}

    def check(field: str, func: Any) -> None:
        try:
            args[field] = func()
        except InputError as exc:
            errors[exc.field or field] = str(exc)

    def model() -> dict[str, Any]:
        if blank(values.get("model")):
            raise InputError(field="model", message="choose a model")
        if not isinstance(values["model"], str):
            raise InputError(field="model", message=f"model must be a model folder name; got "
                                      f"{values['model']!r}")
        return find_model(values["model"], models)

    def csv() -> Path:
        if upload is not None:
            return upload
        name = values.get("csv")
        if blank(name) or not isinstance(name, str):
            raise InputError(field="csv", message="choose a data file or upload one")
        try:
            return resolve_csv(name)
        except DataError as exc:
            raise InputError(field="csv", message=client_message(exc)) from None

    def fill() -> str:
        mode = values.get("fill")
        if blank(mode):
            return "close"
        if mode not in FILL_MODES:
            raise InputError(f"fill must be one of {list(FILL_MODES)}; got {mode!r}", "fill")
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
               "fill": args["fill"], **{k: args[k] for k in COSTS},
               "random_policies": random_policy_count()}
    shown = {"model": model["dir_name"], "csv": csv_name, "fill": args["fill"],
             "start": args["start_text"], "end": args["end_text"],
             **{k: args[k] for k in COSTS}}
    return BacktestRequest(model, Path(args["csv"]), csv_name, options, shown,
                           {k: values.get(k) for k in FIELDS})


def random_policy_count() -> int:
    """How many random policies rank a backtest: ``BACKTEST_RANDOM_POLICIES`` in the
    app's config (default 300, from 1 to MAX_RANDOM_POLICIES)."""
    count = current_app.config.get("BACKTEST_RANDOM_POLICIES") or RANDOM_POLICIES
    if isinstance(count, bool) or not isinstance(count, int) \
            or not 1 <= count <= MAX_RANDOM_POLICIES:
        raise ValueError(f"BACKTEST_RANDOM_POLICIES must be an integer from 1 to "
                         f"{MAX_RANDOM_POLICIES}; got {count!r}")
    return count


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
    """Paths as the person knows them (the file's shown name, the library's folder),
    never the server's absolute ones nor an upload's internal name."""
    shown = shown_name(request.csv_name) or shown_name(str(request.csv_path))
    return (text.replace(str(request.csv_path), shown).replace(request.csv_name or "\0", shown)
            .replace(str(request.model["path"]), request.model["shown"]))


# --------------------------------------------------------------------------- in-sample


def in_sample(request: BacktestRequest, start: str, end: str) -> dict[str, Any] | None:
    """Whether the backtested period [start, end] overlaps the dates the model was
    trained on: None when it does not (or the model folder does not say); else the
    overlap, the training period, whether the file is the very training file (same
    SHA-256: then those bars are certainly in-sample) and a sentence saying so."""
    try:
        config = read_config(Path(request.model["path"]))
    except (ArtifactError, OSError, ValueError):
        return None
    trained = training_period(config)
    if trained is None:
        return None
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    if first > _end_of(trained["end"]) or last < pd.Timestamp(trained["start"]):
        return None
    expected = config.get("data_hash")
    same = bool(expected) and file_sha256(request.csv_path) == expected
    overlap = {"start": _shown_time(first) if first > pd.Timestamp(trained["start"])
               else trained["start"],
               "end": _shown_time(last) if last < _end_of(trained["end"]) else trained["end"]}
    span = f"{overlap['start']} → {overlap['end']}"
    learned = f"{trained['start']} → {trained['end']}"
    if same:
        text = (f"In-sample: {span} of this period is data the model was trained on "
                f"(train and validation, {learned}); figures there show what it learned, "
                "not how it trades bars it has not seen.")
    else:
        source = shown_name(str(config.get("data_file") or "")) or "its training file"
        text = (f"Possibly in-sample: {span} overlaps the dates the model was trained on "
                f"({learned}, from {source}); if this file holds the same market, those "
                "bars are in-sample.")
    return {"same_file": same, "overlap": overlap, "trained": trained, "message": text}


def _end_of(text: str) -> pd.Timestamp:
    """A training part's last time; a bare date is that whole day."""
    return parse_time(text, "end", whole_day=True)


def _shown_time(stamp: pd.Timestamp) -> str:
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)[:16]


def _field_of(exc: Exception, values: dict[str, Any]) -> str | None:
    """The field a failed backtest's error belongs to: the error says (``exc.field``);
    a model folder's trouble is ``model``, the data's ``csv``."""
    if isinstance(exc, ArtifactError | UnknownModelType):
        return "model"
    field = exc.field if isinstance(exc, InputError) else None
    if isinstance(exc, DataError) and field not in FIELDS:
        return "csv"
    if field in FIELDS:
        return field
    if field is not None:  # a key of the model's own env_params
        return "model"
    return "csv" if isinstance(exc, BacktestInputError) else None  # the file's period
