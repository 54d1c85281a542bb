"""Saved backtest results: where they live, how one is written (atomically) and what
its page shows (statistics, downsampled charts, the first trades).

Every run gets its own folder ``<BACKTESTS_DIR>/<result_id>/`` holding the files
:class:`~Utilities.backtest_report.BacktestReport` writes (less equity.png: the page
draws its charts) plus ``view.json`` (what the result page shows, series already
downsampled) and ``meta.json`` (one line of the "recent" list). ``BACKTESTS_DIR`` is
``app.config["BACKTESTS_DIR"]`` when set, else ``backtests/`` beside the data folder
(``<DATA_DIR>/..``, the folder the command-line backtest writes to, git-ignored), else,
when that cannot be created, ``<tmp>/galaxy-backtests``. A folder is written under a
hidden name (``.tmp-<id>``) and renamed when complete, so a kill mid-write leaves no
half result (and the hidden folder is removed when the dashboard's jobs start).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flask import current_app

from Utilities.backtest_report import BacktestReport, percentile_text, random_kind_text
from Utilities.downsample import minmax_indices
from Utilities.number_format import figure, is_missing
from Utilities.performance import STAT_KEYS
from Utilities.run_figures import pick_backtest
from Utilities.serialization import to_plain
from web.backtest_request import BacktestRequest, in_sample
from web.datafiles import shown_name

log = logging.getLogger(__name__)

FILES = ("trades.csv", "equity.csv", "decisions.csv", "statistics.json")
MAX_POINTS = 2000        # per chart series; larger periods are downsampled (min/max per bucket)
MAX_MARKERS = 4000       # trade markers on the price chart; beyond this they are thinned
MAX_TRADE_ROWS = 500     # trades listed on the page (trades.csv has them all)
RECENT = 10
STAGING = ".tmp-"
RESULT_ID = re.compile(r"[A-Za-z0-9_.-]{1,160}")
# Decision columns of the model types, as the price chart's tooltip names them.
DECISION_LABELS = {"Hold": ("P(Hold)", "pct"), "Buy": ("P(Buy)", "pct"),
                   "Sell": ("P(Sell)", "pct"), "value": ("Value estimate", "num"),
                   "predicted_return": ("Predicted return", "num")}


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


def valid_id(result_id: str) -> bool:
    return bool(RESULT_ID.fullmatch(result_id)) and not result_id.startswith(".")


def saved(root: Path, result_id: str) -> Path | None:
    """The folder of a complete saved result, or None."""
    if not valid_id(result_id):
        return None
    folder = root / result_id
    return folder if (folder / "view.json").is_file() else None


def recent_results(limit: int = RECENT) -> list[dict[str, Any]]:
    """The latest saved results (newest first), from their meta.json, each with its
    data file's shown name and its return's verdict against the baselines."""
    rows = []
    for path in _metas()[:limit]:
        try:
            row = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        row["csv_label"] = row.get("csv_label") or shown_name(row.get("csv"))
        baselines = row.get("baseline_returns") or {}
        row["buy_hold_pct"] = baselines.get("Buy & Hold")
        row["verdict"] = verdict(row.get("return_pct"), baselines.values())
        rows.append(row)
    return rows


def csv_names_of_results() -> set[str]:
    """The data file names saved results were run on (the upload clean-up keeps those)."""
    names = set()
    for path in _metas():
        try:
            names.add(str(json.loads(path.read_text()).get("csv", "")))
        except (OSError, ValueError, AttributeError):
            continue
    return names


def results_of_models(dir_names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """For each model folder name, the saved result its figures come from
    (:func:`Utilities.run_figures.pick_backtest`: newest out-of-sample, else newest) as
    ``[{"id", "created_at", "in_sample", "data_file", "summary"}]`` (statistics.json);
    models never backtested are absent. One pass over the results' meta.json files,
    whatever the number of models (the compare view, leaderboard and library's sort)."""
    wanted, found = set(dir_names), {}
    for path in _metas():
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("model") in wanted:
            found.setdefault(meta["model"], []).append(
                {"id": meta.get("id"), "created_at": meta.get("created_at"),
                 "in_sample": bool(meta.get("in_sample")), "data_file": meta.get("csv"),
                 "folder": path.parent})
    chosen = {}
    for model, results in found.items():
        result = pick_backtest(results)
        try:
            summary = json.loads((result.pop("folder") / "statistics.json").read_text())
        except (OSError, ValueError):
            continue
        chosen[model] = [{**result, "summary": summary}]
    return chosen


def references(csv_name: str) -> dict[str, Any]:
    """What names the data file ``csv_name``: how many saved results (their "Change and
    run again" needs it) and which models were trained on it (their default test slice
    needs the very file)."""
    from NetworkConfigs.artifacts import list_models
    from web.datafiles import models_dir

    results = 0
    for path in _metas():
        try:
            results += json.loads(path.read_text()).get("csv") == csv_name
        except (OSError, ValueError, AttributeError):
            continue
    file_name = Path(csv_name).name
    models = [m["dir_name"] for m in list_models(models_dir())
              if m.get("data_file") and Path(str(m["data_file"])).name == file_name]
    return {"results": results, "models": models}


def _metas() -> list[Path]:
    try:
        root = backtests_dir()
        return sorted((p for p in root.glob("*/meta.json") if not p.parent.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []


# --------------------------------------------------------------------------- saving


def new_result_id(model_dir_name: str) -> str:
    return f"{model_dir_name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def save(report: BacktestReport, request: BacktestRequest, root: Path,
         result_id: str) -> dict[str, Any]:
    """Write the result folder ``root/result_id`` (atomically) and return its view."""
    now = datetime.now(UTC)
    model, csv_name = request.model, request.csv_name
    summary = report.summary()
    summary["data_file"] = csv_name
    clock = _Clock(report.result.equity.index)
    shown = {"start": clock([0])[0], "end": clock([len(clock.index) - 1])[0],
             "bars": summary["period"]["bars"], "source": summary["period"]["source"]}
    view = {
        "id": result_id, "created_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model": {k: model[k] for k in ("dir_name", "name", "type", "label")},
        "csv": csv_name, "csv_label": shown_name(csv_name), "summary": summary,
        "in_sample": in_sample(request, summary["period"]["start"], summary["period"]["end"]),
        "request": dict(request.shown),
        "trades_count": len(report.result.trades),
        "trades": trade_rows(report.result.trades, MAX_TRADE_ROWS, clock.format),
        "period": shown,
        "charts": chart_data(report),
        "origin": dict(request.origin),
    }
    staging = root / f"{STAGING}{result_id}"
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
            "csv": csv_name, "csv_label": view["csv_label"], "period": shown,
            "return_pct": stats.get("Return [%]"), "trades": view["trades_count"],
            "baseline_returns": {name: col.get("Return [%]")
                                 for name, col in summary["baselines"].items()},
            "random_percentile": (summary.get("random") or {}).get("return_pct", {}).get(
                "percentile"),
            "in_sample": view["in_sample"] is not None, "origin": view["origin"]})))
        staging.rename(root / result_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("backtest %s saved in %s", result_id, root)
    return view


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


# --------------------------------------------------------------------------- figures
#
# Colour means "against the baselines", never "against zero": a strategy figure is
# green when it beats both Buy & Hold and Random, amber between them, red below both
# (a 0.12 % return beside a 27 % buy-and-hold is red, not green). Baselines are not
# coloured. Only statistics where higher is plainly better are compared.

VERDICTS = {"beats": "beats Buy & Hold and Random", "between": "between the two baselines",
            "below": "below both baselines"}
COMPARED = ("Return [%]", "Equity Final [$]", "Return (Ann.) [%]", "Sharpe Ratio",
            "Sortino Ratio", "Calmar Ratio", "Max. Drawdown [%]", "Avg. Drawdown [%]")
# Shown above the table, not in it: the market's move is the same in every column.
PRICE_CHANGE = "Price Change [%]"
# Statistics saved before the key was named for what it is (backtesting.py's name).
LEGACY_KEYS = {"Buy & Hold Return [%]": PRICE_CHANGE}
RANDOM_MEDIAN = "Random (median)"
# (label, statistic, column) of the figures above the table; column None: the strategy;
# statistic None: the model's percentile among the random policies.
HEADLINE = (("Return", "Return [%]", None),
            ("Buy & hold (after costs)", "Return [%]", "Buy & Hold"),
            ("Random", "Return [%]", "Random"),
            ("Percentile among random", None, None),
            ("Price change (no costs)", PRICE_CHANGE, None),
            ("Sharpe", "Sharpe Ratio", None), ("Max. drawdown", "Max. Drawdown [%]", None),
            ("Win rate", "Win Rate [%]", None), ("Trades", "# Trades", None))
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+")


def verdict(value: Any, baselines: Any) -> str:
    """The colour rule (see above): "beats" above every baseline, "below" under every
    one, "between" otherwise; "" when there is nothing to compare."""
    others = [float(b) for b in baselines if _number(b)]
    if not _number(value) or not others:
        return ""
    if value > max(others):
        return "beats"
    return "below" if value < min(others) else "between"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and not is_missing(value) and math.isfinite(value)


def statistic_text(key: str, value: Any) -> str:
    """One statistic as the page writes it (Utilities.number_format.figure's rules)."""
    if isinstance(value, str):
        if _TIMESTAMP.fullmatch(value):  # midnight: the date alone
            return value[:10] if value.endswith("T00:00:00") else value.replace("T", " ")
        value = re.sub(r"^(-?\d+ days?) 00:00:00$", r"\1", value)  # whole days
        return re.sub(r"^0 days (\d\d:\d\d:\d\d)$", r"\1", value)  # under a day
    kind = "pct_points" if key.endswith("[%]") else "money" if key.endswith("[$]") else \
        "int" if key.startswith("#") else "num"
    return figure(value, kind)


def _columns(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Strategy then each baseline (under the name people read: "Random (median)" for
    the median random policy of a result ranked among many), statistics under their
    current names."""
    columns = {"Strategy": summary["statistics"], **summary["baselines"]}
    return {baseline_label(name, summary): {LEGACY_KEYS.get(k, k): v for k, v in stats.items()}
            for name, stats in columns.items()}


def baseline_label(name: str, summary: dict[str, Any]) -> str:
    """A baseline's column name: results saved before the random policies were ranked
    had one seeded "Random" policy, later ones show the median of many."""
    return RANDOM_MEDIAN if name == "Random" and summary.get("random") else name


def statistics_rows(summary: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows) of the statistics table: the strategy then each baseline;
    the strategy's cell carries its verdict where the statistic is compared."""
    columns = _columns(summary)
    strategy, baselines = columns["Strategy"], list(columns.values())[1:]
    rows = []
    for key in [k for k in STAT_KEYS if k in strategy and k != PRICE_CHANGE]:
        cells = [{"text": statistic_text(key, col.get(key)), "verdict": ""}
                 for col in columns.values()]
        if key in COMPARED:
            cells[0]["verdict"] = verdict(strategy.get(key), [b.get(key) for b in baselines])
        rows.append({"key": key, "cells": cells})
    return list(columns), rows


def headline(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The figures above the table: {label, text, verdict, title}; the Buy & Hold card is
    the Buy & Hold column's Return [%], so the card and the table cannot disagree."""
    columns = _columns(summary)
    baselines = list(columns.values())[1:]
    ranked = summary.get("random")
    cards = []
    for label, key, column in HEADLINE:
        if key is None:  # the model's rank among the random policies
            if ranked:
                cards.append({"label": label, "text": percentile_text(ranked["return_pct"]),
                              "verdict": "", "baseline": False, "id": "random-percentile",
                              "title": f"Return percentile among {ranked['policies']} random "
                                       "policies"})
            continue
        if column == "Random" and ranked:
            column, label = RANDOM_MEDIAN, f"{label} (median)"
        value = columns.get(column or "Strategy", {}).get(key)
        if column is None and key not in columns["Strategy"]:
            continue
        judged = column is None and key in COMPARED
        found = verdict(value, [b.get(key) for b in baselines]) if judged else ""
        cards.append({"label": label, "text": statistic_text(key, value), "verdict": found,
                      "title": VERDICTS.get(found, ""),
                      "baseline": column is not None or key == PRICE_CHANGE})
    return cards


def random_rows(summary: dict[str, Any]) -> dict[str, Any] | None:
    """What the "Among random policies" section says: the kind of policy, and per
    figure (Return, Sharpe, Max. drawdown, # Trades) the model's value, its percentile
    (Return and Sharpe), the policies' median and 5-95 % band; None for a result saved
    before the random policies were ranked."""
    ranked = summary.get("random")
    if not ranked:
        return None
    rows = []
    for key in ("return_pct", "sharpe", "max_drawdown", "trades"):
        figure_ = ranked[key]
        stat = figure_["statistic"]
        rows.append({"key": key, "label": stat, "model": statistic_text(stat, figure_["model"]),
                     "percentile": percentile_text(figure_) if key in ("return_pct", "sharpe")
                     else "", "median": statistic_text(stat, figure_["median"]),
                     "band": f"{statistic_text(stat, figure_['p5'])} … "
                             f"{statistic_text(stat, figure_['p95'])}",
                     "defined": figure_["defined"]})
    return {"policies": ranked["policies"], "seed": ranked["seed"], "kind": ranked["kind"],
            "described": random_kind_text(ranked), "rows": rows}


# --------------------------------------------------------------------------- charts


def sample_indices(values: np.ndarray, max_points: int | None = None) -> np.ndarray:
    """Positions to plot (at most ``max_points``, default MAX_POINTS): the one min/max
    rule of :mod:`Utilities.downsample`, so spikes and troughs survive."""
    return np.asarray(minmax_indices(np.asarray(values, dtype=np.float64),
                                     max_points or MAX_POINTS), dtype=np.int64)


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
    series += [{"label": report.label(name), "data": _rounded(frame[col].to_numpy()[at], 2)}
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
