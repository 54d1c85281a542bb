"""Learning checks: on bars with a planted predictable component (AR(1) returns, whose
last move predicts the next one), every supervised type must beat the majority-class
baseline on validation accuracy and buy-and-hold in a backtest of its held-out test
slice, after costs, for three seeds. Small budgets; marked slow, run in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from NetworkConfigs import get_model_type
from NetworkConfigs.artifacts import read_config
from NetworkConfigs.base import deep_merge
from tests.helpers.synthetic import ar1_bars
from Utilities.model_backtester import backtest_model

pytestmark = pytest.mark.slow

CASES = [("xgboost", "direction"), ("transformer", "direction"), ("transformer", "return")]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("type_name", "target"), CASES)
def test_a_planted_component_is_learned_and_traded(type_name: str, target: str, seed: int,
                                                   tmp_path: Path) -> None:
    bars = ar1_bars(seed, n=2000)
    csv = tmp_path / "ar1.csv"
    bars.to_csv(csv)
    trainer_class = get_model_type(type_name).trainer_class()
    config = deep_merge(trainer_class.smoke_config,
                        {"model_params": {"lookback_window": 5, "target": target},
                         "train_params": {"seed": seed}})
    model_dir = trainer_class(config).fit(bars, model_name="ar1", models_dir=tmp_path,
                                          data_file=str(csv))

    metrics = read_config(model_dir)["metrics"]
    assert metrics["validation_accuracy"] > metrics["validation_majority_accuracy"] + 0.05

    report = backtest_model(model_dir, csv)  # the training file: its held-out test slice
    assert report.period.source == "held-out test slice"
    strategy = report.statistics["Return [%]"]
    baselines = report.baseline_statistics
    assert strategy > baselines["Buy & Hold"]["Return [%]"]
    assert strategy > baselines["Random"]["Return [%]"]
    # A learned edge ranks above (nearly) every random policy as active as the model.
    assert report.random_summary()["return_pct"]["percentile"] > 95
    assert report.statistics["# Trades"] > 0
