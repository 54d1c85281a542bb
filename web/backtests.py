"""Backtest page: a model and a CSV in, statistics, charts and exports out.

Routes
  ``GET  /backtest``                   the form; query arguments prefill it
                                       (``?model=<dir_name>&csv=sample.csv&start=…``)
  ``POST /backtest``                   validate, run synchronously, save, 303 to the result;
                                       a bad field is a 422 re-render, the error beside it
  ``GET  /backtest/<result_id>``       a saved result: statistics beside Buy & Hold and
                                       Random, equity + drawdown, price with trade markers
  ``GET  /backtest/<result_id>/<file>`` trades.csv, equity.csv, decisions.csv,
                                       statistics.json, as attachments
  ``POST /api/backtest``               the same run as JSON: 201 with the statistics and
                                       file URLs; errors ``{"error", "field"}`` with 400
                                       (not an object, unknown field), 404 (unknown model)
                                       or 422 (bad value, bad CSV, empty period). Body:
                                       ``{"model": <folder>, "csv": <listed file name>,
                                       "start"?, "end"?, "commission"?, "slippage"?,
                                       "initial_balance"?, "fill"?}`` (uploads: the form)

Where results live: every run gets its own folder ``<BACKTESTS_DIR>/<result_id>/``
holding the files :class:`~Utilities.backtest_report.BacktestReport` writes (less
equity.png: the page draws its charts) plus ``view.json`` (what the result page shows,
series already downsampled) and ``meta.json`` (one line of the "recent" list).
``BACKTESTS_DIR`` is ``app.config["BACKTESTS_DIR"]`` when set, else ``backtests/``
beside the data folder (``<DATA_DIR>/..``, the folder the command-line backtest
writes to, git-ignored), else, when that cannot be created, ``<tmp>/galaxy-backtests``.
A folder is written under a hidden name and renamed when complete.

Units are the model's ``env_params`` units: commission a fraction of the traded
notional per fill (0.0005 = 0.05 %), slippage in basis points. A blank cost keeps the
model's value; blank dates choose the default period (see ``choose_period``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from NetworkConfigs import UnknownModelType, type_label
from NetworkConfigs.artifacts import ArtifactError, list_models, read_config
from NetworkConfigs.trading_env import EnvParams
from Utilities.backtest_report import BacktestInputError, BacktestReport
from Utilities.backtester import FILL_MODES
from Utilities.data_utils import DataError
from Utilities.model_backtester import backtest_model
from Utilities.performance import STAT_KEYS
from Utilities.serialization import to_plain
from web.datafiles import list_csv_files, models_dir, resolve_csv, save_upload

log = logging.getLogger(__name__)
bp = Blueprint("backtests", __name__)

FIELDS = ("model", "csv", "start", "end", "commission", "slippage", "initial_balance", "fill")
COSTS = ("commission", "slippage", "initial_balance")
FILES = ("trades.csv", "equity.csv", "decisions.csv", "statistics.json")
FILL_LABELS = {"close": "this bar's close", "next_open": "next bar's open"}
MAX_POINTS = 2000        # per chart series; larger periods are downsampled (min/max per bucket)
MAX_MARKERS = 4000       # trade markers on the price chart; beyond this they are thinned
MAX_TRADE_ROWS = 500     # trades listed on the page (trades.csv has them all)
RECENT = 10
_RESULT_ID = re.compile(r"[A-Za-z0-9_.-]{1,160}")
# Decision columns of the model types, as the price chart's tooltip names them.
DECISION_LABELS = {"Hold": ("P(Hold)", "pct"), "Buy": ("P(Buy)", "pct"),
                   "Sell": ("P(Sell)", "pct"), "value": ("Value estimate", "num"),
                   "predicted_return": ("Predicted return", "num")}


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


# --------------------------------------------------------------------------- folders


def backtests_dir() -> Path:
    """Where results are kept (see the module docstring)."""
    configured = current_app.config.get("BACKTESTS_DIR")
    candidates = [Path(configured)] if configured else [
        Path(current_app.config["DATA_DIR"]).resolve().parent / "backtests"]
    candidates.append(Path(tempfile.gettempdir()) / "galaxy-backtests")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        except OSError as exc:
            log.warning("cannot use %s for backtest results: %s", folder, exc)
    raise OSError("no writable folder for backtest results")


def _result_dir(result_id: str) -> Path:
    if not _RESULT_ID.fullmatch(result_id) or result_id.startswith("."):
        abort(404)
    folder = backtests_dir() / result_id
    if not (folder / "view.json").is_file():
        abort(404)
    return folder


def recent_results(limit: int = RECENT) -> list[dict[str, Any]]:
    """The latest saved results (newest first), from their meta.json."""
    try:
        root = backtests_dir()
        metas = sorted((p for p in root.glob("*/meta.json") if not p.parent.name.startswith(".")),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    rows = []
    for path in metas[:limit]:
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return rows


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


def _find_model(dir_name: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    for row in models:
        if row["dir_name"] == dir_name:
            if row["error"]:
                raise FieldError("model", f"model {dir_name!r} is unreadable: {row['error']}")
            return row
    raise FieldError("model", f"no model {dir_name!r} in the library; choose one of the list",
                     status=404)


# --------------------------------------------------------------------------- validation


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(field: str, value: Any) -> float | None:
    if _blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError(field, f"{field} must be a number; got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise FieldError(field, f"{field} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise FieldError(field, f"{field} must be a finite number; got {value!r}")
    rules = {"commission": (0 <= number < 1, "a fraction of the traded value in [0, 1), "
                                            "e.g. 0.0005 for 0.05 % per fill"),
             "slippage": (0 <= number < 1e4, "in basis points, from 0 to below 10000"),
             # Below one unit of money the statistics lose their meaning (a balance of
             # 5e-324 made every trade's return NaN).
             "initial_balance": (number >= 1, "at least 1")}
    ok, rule = rules[field]
    if not ok:
        reason = "cannot be negative" if number < 0 else f"must be {rule}"
        raise FieldError(field, f"{field} {reason}; got {value}")
    return number


def _date(field: str, value: Any) -> pd.Timestamp | None:
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise FieldError(field, f"{field} must be a date string (YYYY-MM-DD or "
                                f"YYYY-MM-DD HH:MM); got {value!r}")
    try:
        stamp = pd.Timestamp(value.strip())
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise FieldError(field, f"{field} {value!r} is not a date (use YYYY-MM-DD or "
                                "YYYY-MM-DD HH:MM)")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if field == "end" and ":" not in value and stamp == stamp.normalize():
        stamp += pd.Timedelta(days=1) - pd.Timedelta(seconds=1)  # a date: its whole day
    return stamp


def validate(values: dict[str, Any], models: list[dict[str, Any]]
             ) -> tuple[dict[str, Any], dict[str, str]]:
    """(backtest arguments, errors by field) for raw form or JSON values."""
    errors: dict[str, str] = {}
    args: dict[str, Any] = {}

    def check(field: str, func: Any) -> None:
        try:
            args[field] = func()
        except FieldError as exc:
            errors[exc.field or field] = str(exc)

    def model() -> dict[str, Any]:
        if _blank(values.get("model")):
            raise FieldError("model", "choose a model")
        if not isinstance(values["model"], str):
            raise FieldError("model", f"model must be a model folder name; got "
                                      f"{values['model']!r}")
        return _find_model(values["model"], models)

    def csv() -> Path:
        name = values.get("csv")
        if _blank(name) or not isinstance(name, str):
            raise FieldError("csv", "choose a data file or upload one")
        try:
            return resolve_csv(name)
        except DataError as exc:
            raise FieldError("csv", str(exc)) from None

    def fill() -> str:
        mode = values.get("fill")
        if _blank(mode):
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
        args[f"{field}_text"] = "" if _blank(values.get(field)) else str(values[field]).strip()
    return args, errors


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
        if not _blank(values.get(field)):
            return field
    return "csv"  # the default period of this file is too short


def run(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate, backtest and save; (result_id, view). FieldErrors for any bad input."""
    models = model_choices()
    args, errors = validate(values, models)
    if errors:
        missing = not any(m["dir_name"] == values.get("model") for m in models)
        raise FieldErrors(errors, status=404 if "model" in errors and missing
                          and not _blank(values.get("model")) else 422)
    model, csv_path = args["model"], args["csv"]
    try:
        report = backtest_model(Path(model["path"]), csv_path,
                                start=args["start_text"] or None,
                                end=args["end_text"] or None, fill=args["fill"],
                                **{k: args[k] for k in COSTS})
    except (BacktestInputError, DataError, ArtifactError, UnknownModelType) as exc:
        message = str(exc).replace(str(csv_path), str(values["csv"]))
        raise FieldErrors({_field_of(exc, values) or "form": message}) from None
    except ValueError as exc:
        log.exception("backtest of %s on %s failed", model["dir_name"], csv_path)
        raise FieldErrors({"form": f"the backtest failed: {exc}"}) from None
    return save(report, model, str(values["csv"]), args)


# --------------------------------------------------------------------------- saving


def save(report: BacktestReport, model: dict[str, Any], csv_name: str,
         args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Write the result folder (atomically) and return (result_id, view)."""
    now = datetime.now(UTC)
    result_id = f"{model['dir_name']}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary = report.summary()
    summary["data_file"] = csv_name
    clock = _Clock(report.result.equity.index)
    shown = {"start": clock([0])[0], "end": clock([len(clock.index) - 1])[0],
             "bars": summary["period"]["bars"], "source": summary["period"]["source"]}
    view = {
        "id": result_id, "created_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model": {k: model[k] for k in ("dir_name", "name", "type", "label")},
        "csv": csv_name, "summary": summary,
        "request": {"model": model["dir_name"], "csv": csv_name, "fill": args["fill"],
                    "start": args["start_text"], "end": args["end_text"],
                    **{k: args[k] for k in COSTS}},
        "trades_count": len(report.result.trades),
        "trades": trade_rows(report.result.trades, MAX_TRADE_ROWS, clock.format),
        "period": shown,
        "charts": chart_data(report),
    }
    root = backtests_dir()
    staging = root / f".tmp-{result_id}"
    staging.mkdir(parents=True)
    try:
        report.result.trades.to_csv(staging / "trades.csv", index=False)
        report.equity_table().to_csv(staging / "equity.csv", index_label="time")
        report.decisions.to_csv(staging / "decisions.csv", index_label="time")
        (staging / "statistics.json").write_text(json.dumps(summary, indent=2))
        (staging / "view.json").write_text(json.dumps(to_plain(view)))
        stats = summary["statistics"]
        (staging / "meta.json").write_text(json.dumps(to_plain({
            "id": result_id, "created_at": view["created_at"], "model": model["dir_name"],
            "csv": csv_name, "period": shown,
            "return_pct": stats.get("Return [%]"), "trades": view["trades_count"]})))
        staging.rename(root / result_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("backtest %s saved in %s", result_id, root)
    return result_id, view


def trade_rows(trades: pd.DataFrame, limit: int, time_format: str) -> list[dict[str, Any]]:
    """The first ``limit`` trades, ready to show."""
    rows = []
    for trade in trades.head(limit).itertuples(index=False):
        rows.append({"side": "Long" if trade.side > 0 else "Short",
                     "entry_time": pd.Timestamp(trade.entry_time).strftime(time_format),
                     "exit_time": pd.Timestamp(trade.exit_time).strftime(time_format),
                     "entry_price": float(trade.entry_price),
                     "exit_price": float(trade.exit_price), "units": float(trade.units),
                     "pnl": float(trade.pnl), "return_pct": 100.0 * float(trade.return_pct),
                     "fees": float(trade.fees), "bars_held": int(trade.bars_held)})
    return rows


# --------------------------------------------------------------------------- charts


def sample_indices(values: np.ndarray, max_points: int | None = None) -> np.ndarray:
    """Positions to plot: all of them when few, else the first, lowest, highest and last
    of each of ``max_points // 4`` buckets (default MAX_POINTS), so spikes and troughs
    survive."""
    max_points = max_points or MAX_POINTS
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    filled = np.where(finite, values, np.mean(values[finite]) if finite.any() else 0.0)
    edges = np.linspace(0, n, max_points // 4 + 1).astype(int)
    picks = [0, n - 1]
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            segment = filled[lo:hi]
            picks += [lo, lo + int(np.argmin(segment)), lo + int(np.argmax(segment)), hi - 1]
    return np.unique(np.asarray(picks, dtype=np.int64))


class _Clock:
    """Bar positions as time labels: dates for daily bars, minutes otherwise."""

    def __init__(self, index: pd.Index) -> None:
        self.index = pd.DatetimeIndex(index)
        daily = len(self.index) > 0 and bool((self.index.normalize() == self.index).all())
        self.format = "%Y-%m-%d" if daily else "%Y-%m-%d %H:%M"

    def __call__(self, positions: Any) -> list[str]:
        return list(self.index[np.asarray(positions, dtype=np.int64)].strftime(self.format))


def _rounded(values: Any, digits: int) -> list[float | None]:
    array = np.round(np.asarray(values, dtype=np.float64), digits)
    return [float(v) if math.isfinite(v) else None for v in array]


def chart_data(report: BacktestReport) -> dict[str, Any]:
    """The series the result page draws, each at most ~MAX_POINTS points; ``x`` is the
    bar's position in the period, ``t`` its time."""
    frame = report.equity_table()
    clock = _Clock(frame.index)
    drawdown = -100.0 * frame["drawdown"].to_numpy()
    baseline_cols = [c for c in frame.columns if c.startswith("equity_")]
    # One x for all curves: each curve's extremes, within MAX_POINTS together.
    curves = [frame[c].to_numpy() for c in ("equity", *baseline_cols)] + [drawdown]
    at = np.arange(len(frame))
    if len(frame) > MAX_POINTS:
        budget = max(MAX_POINTS // len(curves), 8)
        at = np.unique(np.concatenate([sample_indices(c, budget) for c in curves]))
    series = [{"label": report.model_name, "data": _rounded(frame["equity"].to_numpy()[at], 2)}]
    series += [{"label": name, "data": _rounded(frame[col].to_numpy()[at], 2)}
               for name, col in zip(report.baselines, baseline_cols, strict=False)]
    equity = {"x": at.tolist(), "t": clock(at), "series": series,
              "drawdown": _rounded(drawdown[at], 3)}

    close = report.result.bars["Close"].to_numpy(dtype=np.float64)
    near = sample_indices(close)
    decisions = report.decisions.reindex(frame.index)
    fields = []
    for column in decisions.columns:
        if column in ("action", "action_name") or \
                not pd.api.types.is_numeric_dtype(decisions[column]):
            continue
        label, kind = DECISION_LABELS.get(column, (column, "num"))
        fields.append({"key": column, "label": label, "format": kind,
                       "data": _rounded(decisions[column].to_numpy()[near], 5)})
    actions = decisions["action_name"] if "action_name" in decisions else \
        pd.Series("", index=frame.index)
    price = {"x": near.tolist(), "t": clock(near), "close": _rounded(close[near], 6),
             "action": ["" if pd.isna(v) else str(v) for v in actions.to_numpy()[near]],
             "decisions": fields, **markers(report.result.trades, clock)}
    return {"equity": equity, "price": price, "bars": len(frame)}


def markers(trades: pd.DataFrame, clock: _Clock) -> dict[str, Any]:
    """Buy and Sell points at every fill: a long entry or a short exit buys, a short
    entry or a long exit sells. Every trade is kept up to MAX_MARKERS points, beyond
    that every ``markers_step``-th trade."""
    step = max(1, math.ceil(2 * len(trades) / MAX_MARKERS))
    shown = trades.iloc[::step]
    buys: list[dict[str, Any]] = []
    sells: list[dict[str, Any]] = []
    if len(shown):
        entry_t, exit_t = clock(shown["entry_bar"]), clock(shown["exit_bar"])
        for i, trade in enumerate(shown.itertuples(index=False)):
            long = trade.side > 0
            entry = {"x": int(trade.entry_bar), "y": round(float(trade.entry_price), 6),
                     "t": entry_t[i], "what": "Long entry" if long else "Short entry"}
            leave = {"x": int(trade.exit_bar), "y": round(float(trade.exit_price), 6),
                     "t": exit_t[i], "what": "Long exit" if long else "Short exit",
                     "pnl": round(float(trade.pnl), 2),
                     "return_pct": round(100.0 * float(trade.return_pct), 3)}
            (buys if long else sells).append(entry)
            (sells if long else buys).append(leave)
    return {"buys": buys, "sells": sells, "markers_step": step, "trades": len(trades)}


# --------------------------------------------------------------------------- presenting


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    text = str(value)
    if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+", text):  # a timestamp; midnight: the date
        return text[:10] if text.endswith("T00:00:00") else text.replace("T", " ")
    text = re.sub(r"^(-?\d+ days?) 00:00:00$", r"\1", text)  # whole days
    return re.sub(r"^0 days (\d\d:\d\d:\d\d)$", r"\1", text)  # under a day


def statistics_rows(summary: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows) of the statistics table: the strategy then each baseline."""
    columns = {"Strategy": summary["statistics"], **summary["baselines"]}
    rows = []
    for key in [k for k in STAT_KEYS if k in summary["statistics"]]:
        raw = [col.get(key) for col in columns.values()]
        signed = key.startswith(("Return", "Buy & Hold", "Sharpe", "Sortino", "Calmar",
                                 "Avg. Trade", "Expectancy", "SQN"))
        rows.append({"key": key, "cells": [{"text": _format(v), "sign": _sign(v) if signed
                                            else ""} for v in raw]})
    return list(columns), rows


def _sign(value: Any) -> str:
    """CSS class of a signed figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return "pos" if value > 0 else "neg" if value < 0 else ""


# (statistic, label, coloured by sign) of the figures above the table.
HEADLINE = (("Return [%]", "Return %", True), ("Buy & Hold Return [%]", "Buy & hold %", True),
            ("Sharpe Ratio", "Sharpe", True), ("Max. Drawdown [%]", "Max. drawdown %", False),
            ("Win Rate [%]", "Win rate %", False), ("# Trades", "Trades", False))


def _form_values(source: dict[str, Any], models: list[dict[str, Any]],
                 files: list[Any]) -> dict[str, str]:
    """What the form shows: given values, else the chosen model's defaults."""
    values = {k: "" if _blank(source.get(k)) else str(source.get(k)).strip() for k in FIELDS}
    readable = [m for m in models if not m["error"]]
    chosen = next((m for m in readable if m["dir_name"] == values["model"]), None)
    if not values["model"] and readable:
        chosen = readable[0]
        values["model"] = chosen["dir_name"]
    if chosen:
        for field in COSTS:
            if not values[field]:
                values[field] = _format_number(chosen["defaults"].get(field))
        if not values["csv"] and chosen["csv"]:
            values["csv"] = chosen["csv"]
    if not values["csv"] and files:
        values["csv"] = files[0].name
    values["fill"] = values["fill"] or "close"
    return values


def _format_number(value: Any) -> str:
    if value is None:
        return ""
    return f"{float(value):g}" if isinstance(value, int | float) else str(value)


def render_form(source: dict[str, Any], errors: dict[str, str] | None = None,
                status: int = 200) -> tuple[str, int]:
    models = model_choices()
    files = list_csv_files()
    values = _form_values(source, models, files)
    errors = dict(errors or {})
    if values["model"] and not errors.get("model") and request.method == "GET":
        try:  # a link to a model that is gone or broken says so
            _find_model(values["model"], models)
        except FieldError as exc:
            errors["model"] = str(exc)
    return render_template("backtests/index.html", models=models, files=files,
                           values=values, errors=errors, fill_labels=FILL_LABELS,
                           recent=recent_results(),
                           readable=[m for m in models if not m["error"]]), status


# --------------------------------------------------------------------------- routes


@bp.get("/backtest")
def index() -> tuple[str, int]:
    return render_form(request.args.to_dict())


@bp.post("/backtest")
def submit() -> Any:
    values = {k: request.form.get(k, "") for k in FIELDS}
    upload_error = None
    upload = request.files.get("upload")
    if upload is not None and upload.filename:
        try:
            values["csv"] = save_upload(upload.filename, upload.read()).name
        except DataError as exc:
            upload_error = str(exc)
    try:
        if upload_error:
            models = model_choices()
            _, errors = validate(values, models)
            raise FieldErrors({**errors, "upload": upload_error})
        result_id, _ = run(values)
    except FieldErrors as exc:
        return render_form(values, exc.errors, 422)
    return redirect(url_for("backtests.result", result_id=result_id), code=303)


@bp.get("/backtest/<result_id>")
def result(result_id: str) -> str:
    view = json.loads((_result_dir(result_id) / "view.json").read_text())
    columns, rows = statistics_rows(view["summary"])
    stats = view["summary"]["statistics"]
    headline = [(label, _format(stats.get(key)), _sign(stats.get(key)) if signed else "")
                for key, label, signed in HEADLINE]
    rerun = {k: _format_number(v) if isinstance(v, float) else v
             for k, v in view["request"].items() if v not in (None, "")}
    return render_template("backtests/result.html", view=view, columns=columns, rows=rows,
                           headline=headline, files=FILES, fill_labels=FILL_LABELS,
                           rerun=rerun, max_trade_rows=MAX_TRADE_ROWS)


@bp.get("/backtest/<result_id>/<name>")
def download(result_id: str, name: str) -> Any:
    if name not in FILES:
        abort(404)
    folder = _result_dir(result_id)
    mimetype = "text/csv" if name.endswith(".csv") else "application/json"
    return send_from_directory(folder, name, mimetype=mimetype, as_attachment=True,
                               download_name=f"{result_id}-{name}")


@bp.post("/api/backtest")
def api_run() -> Any:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object: {\"model\": <folder name>, "
                           "\"csv\": <data file name>, ...}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        return _error(400, f"unknown field(s) {unknown}; valid fields: {list(FIELDS)}",
                      unknown[0])
    try:
        result_id, view = run(body)
    except FieldErrors as exc:
        field, message = next(iter(exc.errors.items()))
        return _error(exc.status, message, None if field == "form" else field,
                      errors=exc.errors if len(exc.errors) > 1 else None)
    summary = view["summary"]
    files = {name: url_for("backtests.download", result_id=result_id, name=name,
                           _external=True) for name in FILES}
    reply = {"id": result_id, "url": url_for("backtests.result", result_id=result_id,
                                             _external=True),
             "model": view["model"]["dir_name"], "type": view["model"]["type"],
             "csv": view["csv"], "period": summary["period"], "fill": summary["fill"],
             "params": summary["params"], "statistics": summary["statistics"],
             "baselines": summary["baselines"], "open_trade": summary["open_trade"],
             "trades_count": view["trades_count"], "files": files}
    # Not jsonify: it sorts keys, and the statistics read best in their table order.
    response = current_app.response_class(json.dumps(to_plain(reply)), status=201,
                                          mimetype="application/json")
    response.headers["Location"] = reply["url"]
    return response


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> Any:
    body = {"error": message, "field": field, **extra}
    return jsonify({k: v for k, v in body.items() if v is not None}), status

