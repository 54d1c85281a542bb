"""The random policies every backtest is ranked among: the batched replay equals a
per-policy loop through the same engine, policies are reproducible by seed, the
matched kind trades as often as the model, and the percentile math on known cases."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Utilities import run_backtest as backtest_cli
from Utilities.accounting import (
    BUY,
    HOLD,
    SELL,
    EnvParams,
    position_path,
    position_paths,
    target_positions,
)
from Utilities.backtester import (
    RandomPolicies,
    baselines,
    histogram,
    percentile_of,
    random_actions,
    random_activity,
    random_policies,
    random_policy,
    run_backtest,
    score_tapes,
)

COSTLY = EnvParams(commission=0.001, slippage=5.0)
LONG_ONLY = replace(COSTLY, allow_short=False)


def stepped(tape: np.ndarray, allow_short: bool) -> np.ndarray:
    """Positions by the accounting rule itself, one bar at a time."""
    position, out = np.zeros(1, np.int8), []
    for action in tape:
        position = target_positions(position, np.array([action]), allow_short)
        out.append(int(position[0]))
    return np.array(out, np.int8)


@pytest.mark.parametrize("allow_short", [True, False])
def test_position_paths_equal_the_rule_on_every_short_tape(allow_short: bool) -> None:
    for length in range(1, 7):
        tapes = np.array(list(itertools.product((HOLD, BUY, SELL), repeat=length)))
        expected = np.stack([stepped(tape, allow_short) for tape in tapes])
        np.testing.assert_array_equal(position_paths(tapes, allow_short), expected)


def test_position_paths_equal_position_path_on_long_tapes() -> None:
    tapes = np.random.default_rng(4).choice(3, (6, 3000), p=[0.5, 0.25, 0.25])
    for allow_short in (True, False):
        expected = np.stack([position_path(tape, allow_short) for tape in tapes])
        np.testing.assert_array_equal(position_paths(tapes, allow_short), expected)


def test_position_paths_refuse_bad_tapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        position_paths(np.zeros(5, np.int64), True)
    with pytest.raises(ValueError, match="integers in"):
        position_paths(np.full((2, 5), 3), True)


@pytest.mark.parametrize(("params", "fill"), [(COSTLY, "close"), (COSTLY, "next_open"),
                                               (LONG_ONLY, "close"),
                                               (replace(COSTLY, position_fraction=0.5),
                                                "close")])
def test_the_batch_equals_a_loop_of_backtests(sample_bars: pd.DataFrame, params: EnvParams,
                                              fill: str) -> None:
    bars = sample_bars.iloc[:700]
    actions = random_actions(len(bars), 0.3, 11, range(6))
    actions[0] = HOLD  # a policy that never trades
    scores = score_tapes(bars, actions, params, fill)
    for row, tape in enumerate(actions):
        stats = run_backtest(bars, actions=tape, params=params, fill=fill).statistics()
        assert scores["return_pct"][row] == pytest.approx(stats["Return [%]"], rel=1e-9, abs=1e-9)
        assert scores["sharpe"][row] == pytest.approx(stats["Sharpe Ratio"], rel=1e-9,
                                                      nan_ok=True)
        assert scores["max_drawdown"][row] == pytest.approx(stats["Max. Drawdown [%]"],
                                                            rel=1e-9, abs=1e-9)
        assert scores["trades"][row] == stats["# Trades"]
    assert scores["trades"][0] == 0 and scores["return_pct"][0] == 0


def test_a_ruined_policy_is_replayed_alone_and_liquidated() -> None:
    """A short through a tripling price loses everything: the batch hands that tape to
    run_backtest, which liquidates it, and the others stay batched."""
    index = pd.date_range("2024-01-01", periods=8, freq="D")
    close = np.array([10, 10, 20, 35, 40, 40, 40, 40], float)
    bars = pd.DataFrame({"Open": close, "Close": close}, index=index)
    tapes = np.array([[SELL, HOLD, HOLD, HOLD, HOLD, BUY, HOLD, HOLD],
                      [BUY, HOLD, HOLD, SELL, HOLD, HOLD, HOLD, HOLD]])
    scores = score_tapes(bars, tapes, COSTLY)
    for row, tape in enumerate(tapes):
        stats = run_backtest(bars, actions=tape, params=COSTLY).statistics()
        assert scores["return_pct"][row] == pytest.approx(stats["Return [%]"])
    assert scores["return_pct"][0] == -100


def test_policies_are_reproducible_by_seed(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:300]
    first = random_policies(bars, COSTLY, count=20, seed=3, kind="uniform")
    again = random_policies(bars, COSTLY, count=20, seed=3, kind="uniform")
    other = random_policies(bars, COSTLY, count=20, seed=4, kind="uniform")
    np.testing.assert_array_equal(first.scores["return_pct"], again.scores["return_pct"])
    assert not np.array_equal(first.scores["return_pct"], other.scores["return_pct"])
    # Policy i is the same whatever the count (each has its own generator) ...
    fewer = random_policies(bars, COSTLY, count=7, seed=3, kind="uniform")
    np.testing.assert_array_equal(fewer.scores["return_pct"], first.scores["return_pct"][:7])
    # ... and random_policy replays exactly that tape as a full backtest.
    alone = random_policy(bars, COSTLY, seed=3, policy=5, activity=first.activity)
    assert alone.statistics()["Return [%]"] == pytest.approx(first.scores["return_pct"][5])


def test_the_random_column_is_the_median_policy(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:400]
    ranked = random_policies(bars, COSTLY, count=21, kind="matched", model_trades=30)
    median = baselines(bars, COSTLY, random=ranked)["Random"].statistics()["Return [%]"]
    assert median == pytest.approx(np.median(ranked.scores["return_pct"]))
    assert set(baselines(bars, COSTLY)) == {"Buy & Hold", "Random"}


@pytest.mark.parametrize("allow_short", [True, False])
def test_matched_policies_trade_as_often_as_the_model(sample_bars: pd.DataFrame,
                                                      allow_short: bool) -> None:
    bars = sample_bars  # ~2,500 bars
    params = replace(COSTLY, allow_short=allow_short)
    ranked = random_policies(bars, params, count=200, kind="matched", model_trades=120)
    assert np.mean(ranked.scores["trades"]) == pytest.approx(120, rel=0.08)
    assert random_activity("uniform", 120, len(bars), allow_short) == pytest.approx(2 / 3)
    assert random_activity("matched", 10**9, len(bars), allow_short) == 1.0  # at most
    none = random_policies(bars, params, count=5, kind="matched", model_trades=0)
    assert (none.scores["trades"] == 0).all() and (none.scores["return_pct"] == 0).all()


def test_percentile_of_constructed_cases() -> None:
    sample = np.arange(1.0, 101.0)  # 1 .. 100
    assert percentile_of(0.5, sample) == 0
    assert percentile_of(100.5, sample) == 100
    assert percentile_of(50.5, sample) == 50
    assert percentile_of(50, sample) == 49.5  # 49 below, one tie counts half
    assert percentile_of(3.0, np.full(10, 3.0)) == 50  # all tied: no better than chance
    assert percentile_of(2.0, np.array([1.0, np.nan, 3.0])) == 50  # NaN left out
    assert percentile_of(float("nan"), sample) is None
    assert percentile_of(1.0, np.array([np.nan])) is None


def test_summary_reports_percentiles_band_and_histogram() -> None:
    returns = np.arange(-50.0, 50.0)  # 100 policies
    ranked = RandomPolicies("matched", 0.1, 7, {
        "return_pct": returns, "sharpe": returns / 10, "max_drawdown": -np.abs(returns),
        "trades": np.full(100, 12)})
    summary = ranked.summary({"Return [%]": 30.0, "Sharpe Ratio": float("nan"),
                              "Max. Drawdown [%]": -5.0, "# Trades": 12})
    assert summary["return_pct"]["percentile"] == 80.5
    assert summary["return_pct"]["median"] == pytest.approx(-0.5)
    assert summary["return_pct"]["p5"] == pytest.approx(np.percentile(returns, 5))
    assert summary["return_pct"]["p95"] == pytest.approx(np.percentile(returns, 95))
    assert summary["sharpe"]["percentile"] is None and summary["sharpe"]["model"] is None
    assert summary["policies"] == 100 and summary["seed"] == 7
    assert summary["hold_probability"] == pytest.approx(0.9)
    assert sum(summary["histogram"]["counts"]) == 100
    assert summary["median_policy"] == 49  # the lower middle of -50 .. 49


def test_the_histogram_range_holds_the_model() -> None:
    shown = histogram(np.array([1.0, 2.0, 3.0]), marker=4.5, bins=7)
    assert shown["edges"][0] == 1.0 and shown["edges"][-1] == 4.5
    assert sum(shown["counts"]) == 3 and not shown["marker_outside"]
    # Far out, the model would squash the policies into one bar: it is drawn at the edge.
    far = histogram(np.array([1.0, 2.0, 3.0]), marker=100.0, bins=4)
    assert far["edges"] == [1.0, 1.5, 2.0, 2.5, 3.0] and far["marker_outside"]
    assert histogram(np.array([2.0, 2.0]))["edges"][0] == 1.5  # one value: a unit-wide range


def test_bad_counts_and_kinds_are_refused(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:50]
    for count in (0, -1, 10_001, 2.5, True):
        with pytest.raises(ValueError, match="number of random policies"):
            random_policies(bars, count=count)
    with pytest.raises(ValueError, match="kind must be one of"):
        random_policies(bars, kind="lucky")



def test_a_policy_without_skill_ranks_near_the_middle(sample_bars: pd.DataFrame) -> None:
    """Random "models" (another seed's policies) ranked among the random policies land
    at the 50th percentile on average: the percentile is calibrated, not flattering."""
    bars = sample_bars.iloc[:500]
    ranked = random_policies(bars, COSTLY, count=300, kind="uniform", seed=1)
    models = random_policies(bars, COSTLY, count=40, kind="uniform", seed=2)
    found = [percentile_of(value, ranked.scores["return_pct"])
             for value in models.scores["return_pct"]]
    assert 40 < np.mean(found) < 60 and min(found) < 25 and max(found) > 75


def test_the_cli_prints_the_percentile(smoke_xgb: Path, sample_path: Path, tmp_path: Path,
                                       capsys) -> None:
    out = tmp_path / "bt"
    code = backtest_cli.main(["--model-dir", str(smoke_xgb), "--csv_path", str(sample_path),
                              "--out", str(out), "--random-policies", "50",
                              "--random-seed", "3"])
    printed = capsys.readouterr().out
    assert code == 0
    ranked = json.loads((out / "statistics.json").read_text())["random"]
    assert ranked["policies"] == 50 and ranked["seed"] == 3 and ranked["kind"] == "matched"
    line = next(text for text in printed.splitlines() if text.startswith("Among 50 random"))
    assert f"Return percentile {ranked['return_pct']['percentile']:.1f}" in line
    assert f"Sharpe percentile {ranked['sharpe']['percentile']:.1f}" in line
    assert "Random (median)" in printed  # the column of the terminal table
    code = backtest_cli.main(["--model-dir", str(smoke_xgb), "--csv_path", str(sample_path),
                              "--out", str(tmp_path / "none"), "--random-policies", "0"])
    assert code == 0 and "no random policies were scored" in capsys.readouterr().out
    summary = json.loads((tmp_path / "none" / "statistics.json").read_text())
    assert summary["random"] is None and set(summary["baselines"]) == {"Buy & Hold", "Random"}


@pytest.mark.parametrize("count", ["-1", "10001", "many"])
def test_the_cli_refuses_a_bad_count(smoke_xgb: Path, sample_path: Path, count: str,
                                     capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        backtest_cli.main(["--model-dir", str(smoke_xgb), "--csv_path", str(sample_path),
                           "--random-policies", count])
    assert stopped.value.code == 2
    assert "--random-policies" in capsys.readouterr().err
