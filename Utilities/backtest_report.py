"""What a model backtest hands to people: the period, the result beside its baselines,
per-bar decisions, and the files (trades.csv, equity.csv, decisions.csv, equity.png).

Shared by every model type's backtester; it knows nothing about how decisions are made.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from NetworkConfigs.artifacts import file_sha256
from NetworkConfigs.base import ACTION_NAMES
from Utilities import performance
from Utilities.accounting import EnvParams
from Utilities.backtester import BacktestResult, RandomPolicies
from Utilities.data_loading import parse_time
from Utilities.input_errors import InputError
from Utilities.serialization import to_plain

log = logging.getLogger(__name__)

BASELINE_COLORS = ("#6b7280", "#f59e0b")  # grey, amber: apart from the strategy's blue


class BacktestInputError(InputError):
    """A backtest request that cannot run (date range, costs); the message says why and
    ``field`` what it is about (``start``, ``end``, a cost, ``model`` for the model's own
    env_params; None for the file's default period)."""


@dataclass(frozen=True)
class Period:
    """Rows [first, last] of the model's feature frame that get a decision."""

    first: int
    last: int
    source: str  # "custom range", "held-out test slice" or "whole file"


def choose_period(index: pd.Index, earliest: int, *, config: dict[str, Any],
                  csv_path: Path, start: Any = None, end: Any = None) -> Period:
    """The decision rows: ``start``/``end`` when given; else the model's held-out test
    slice when ``csv_path`` is the very file it was trained on (same SHA-256), so the
    default never scores the model on bars it learned from; else the whole file.
    ``earliest``: the first row with a full lookback window."""
    start, end = _timestamp(start, "start"), _timestamp(end, "end", whole_day=True)
    # What a period that cannot run is blamed on: the bound a person gave (the end
    # first), else nothing in particular (the file's own default period is too short).
    blamed = "end" if end is not None else "start" if start is not None else None
    if len(index) == 0:
        raise BacktestInputError("the file has no bars left after the feature warm-up")
    if blamed:
        first, last, source = *_rows_between(index, start, end, blamed), "custom range"
    elif _is_training_file(config, csv_path) and "test" in config.get("split", {}):
        test = config["split"]["test"]
        first, last, source = *_rows_between(index, test["start"], test["end"], None), \
            "held-out test slice"
    else:
        first, last, source = 0, len(index) - 1, "whole file"
    first = max(first, earliest)
    if last - first < 1:
        raise BacktestInputError(
            f"the period {index[min(first, len(index) - 1)]} .. {index[last]} leaves "
            f"{max(last - first + 1, 0)} bar(s) with a full {earliest + 1}-bar window; "
            "a backtest needs at least 2", field=blamed)
    return Period(first, last, source)


def _rows_between(index: pd.Index, start: Any, end: Any,
                  blamed: str | None) -> tuple[int, int]:
    lo, hi = _timestamp(start, "start"), _timestamp(end, "end")
    if lo is not None and hi is not None and lo > hi:
        raise BacktestInputError(f"start {lo} is after end {hi}", field="end")
    first = 0 if lo is None else int(index.searchsorted(lo, side="left"))
    last = len(index) - 1 if hi is None else int(index.searchsorted(hi, side="right")) - 1
    if first > last:
        raise BacktestInputError(f"no bars between {lo or index[0]} and {hi or index[-1]} "
                                 f"(the file covers {index[0]} .. {index[-1]})", field=blamed)
    return first, last


def _timestamp(value: Any, label: str, whole_day: bool = False) -> pd.Timestamp | None:
    """A bound as a naive UTC timestamp (how load_bars stores times), by the one date
    rule (:func:`~Utilities.data_loading.parse_time`); blank is no bound."""
    try:
        return parse_time(value, label, whole_day=whole_day)
    except InputError as exc:
        raise BacktestInputError(str(exc), field=exc.field) from None


def _is_training_file(config: dict[str, Any], csv_path: Path) -> bool:
    expected = config.get("data_hash")
    return bool(expected) and Path(csv_path).is_file() and file_sha256(csv_path) == expected


def env_params_for(config: dict[str, Any], **overrides: Any) -> EnvParams:
    """The model's env_params with the backtest's overrides (None keeps the model's)."""
    values = dict(config.get("env_params") or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EnvParams.from_dict(values)
    except InputError as exc:  # a cost the backtest chose, else the model's own env_params
        chosen = exc.field in overrides and overrides[exc.field] is not None
        raise BacktestInputError(str(exc), field=exc.field if chosen else "model") from None


def decision_frame(index: pd.Index, actions: np.ndarray,
                   outputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-bar action and its name, then the type's outputs (probabilities, value
    estimate, predicted return), one column each."""
    frame = pd.DataFrame({name: np.asarray(values, dtype=np.float64)
                          for name, values in outputs.items()}, index=index)
    frame.insert(0, "action", actions)
    frame.insert(1, "action_name", np.asarray(ACTION_NAMES)[actions])
    return frame


@dataclass
class BacktestReport:
    """A finished backtest; ``decisions`` holds per-bar model outputs where a type has them."""

    model_name: str
    model_type: str
    data_file: str
    period: Period
    result: BacktestResult
    baselines: dict[str, BacktestResult]
    decisions: pd.DataFrame
    random: RandomPolicies | None = None  # the random policies the result is ranked among

    @property
    def statistics(self) -> dict[str, Any]:
        return self.result.statistics()

    @property
    def baseline_statistics(self) -> dict[str, dict[str, Any]]:
        return {name: result.statistics() for name, result in self.baselines.items()}

    def table(self) -> str:
        """The statistics table with the baselines beside it, for a terminal."""
        return performance.format_statistics(self.statistics, {
            self.label(name): stats for name, stats in self.baseline_statistics.items()})

    def label(self, baseline: str) -> str:
        """A baseline's name as people read it: "Random" is the median random policy."""
        return "Random (median)" if baseline == "Random" and self.random else baseline

    def random_summary(self) -> dict[str, Any] | None:
        """The model's percentiles among the random policies, their band and histogram
        (:meth:`RandomPolicies.summary`); None when none were scored."""
        return None if self.random is None else self.random.summary(self.statistics)

    def random_line(self) -> str:
        """One line for a terminal: the model's percentile among the random policies."""
        ranked = self.random_summary()
        if ranked is None:
            return "no random policies were scored"
        returns, sharpe = ranked["return_pct"], ranked["sharpe"]
        return (f"Among {ranked['policies']} random policies ({random_kind_text(ranked)}, "
                f"seed {ranked['seed']}): Return percentile {percentile_text(returns)}, "
                f"Sharpe percentile {percentile_text(sharpe)}; their median return "
                f"{_pct(returns['median'])}, 5-95 % {_pct(returns['p5'])} .. "
                f"{_pct(returns['p95'])}")

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts and statistics (no per-bar series)."""
        index = self.result.equity.index
        return {"model": self.model_name, "type": self.model_type, "data_file": self.data_file,
                "period": {"start": str(index[0]), "end": str(index[-1]), "bars": len(index),
                           "source": self.period.source},
                "fill": self.result.fill, "params": self.result.params.to_dict(),
                "statistics": performance.jsonable_statistics(self.statistics),
                "baselines": {name: performance.jsonable_statistics(stats)
                              for name, stats in self.baseline_statistics.items()},
                "random": to_plain(self.random_summary()),
                "open_trade": to_plain(self.result.open_trade),
                "ruined_at": None if self.result.ruin_bar is None
                else str(index[self.result.ruin_bar])}

    def equity_table(self) -> pd.DataFrame:
        """Equity, drawdown and position per bar, with each baseline's equity beside."""
        frame = self.result.equity_frame()
        for name, result in self.baselines.items():
            frame[f"equity_{_slug(name)}"] = result.equity.to_numpy()
        return frame

    def write(self, out_dir: Path) -> dict[str, Path]:
        """trades.csv, equity.csv, decisions.csv, statistics.json and equity.png."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {name: out_dir / name for name in
                 ("trades.csv", "equity.csv", "decisions.csv", "statistics.json", "equity.png")}
        self.result.trades.to_csv(paths["trades.csv"], index=False)
        self.equity_table().to_csv(paths["equity.csv"], index_label="time")
        self.decisions.to_csv(paths["decisions.csv"], index_label="time")
        paths["statistics.json"].write_text(json.dumps(self.summary(), indent=2))
        plot_equity(self, paths["equity.png"])
        log.info("backtest files written to %s", out_dir)
        return paths


def random_kind_text(ranked: dict[str, Any]) -> str:
    """What a random policy was, in words, from a :meth:`RandomPolicies.summary`."""
    chance = f"Buy or Sell at {100 * ranked['activity']:.3g} % of bars"
    if ranked["kind"] == "uniform":
        return f"Hold, Buy, Sell a third each: {chance}"
    return f"as active as the model: {chance}"


def percentile_text(figure: dict[str, Any]) -> str:
    """A figure's percentile among the random policies, one decimal ("—" if undefined)."""
    value = figure.get("percentile")
    return "—" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} %"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def plot_equity(report: BacktestReport, path: Path) -> None:
    """Equity (strategy and baselines) over drawdown, as a PNG; no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    frame = report.equity_table()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot(frame.index, frame["equity"], label=report.model_name, color="#2563eb", lw=1.4)
    for name, color in zip(report.baselines, BASELINE_COLORS, strict=False):
        top.plot(frame.index, frame[f"equity_{_slug(name)}"], label=report.label(name), lw=0.9,
                 alpha=0.85, color=color)
    top.set_ylabel("Equity")
    top.set_title(f"{report.model_name} on {Path(report.data_file).name} "
                  f"({report.period.source})")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(frame.index, -100 * frame["drawdown"], 0, color="#dc2626", alpha=0.4)
    bottom.set_ylabel("Drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
