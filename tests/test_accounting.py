"""The accounting module: one cost rule for every caller, and a home that keeps backtests
and serving free of gymnasium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from NetworkConfigs.base import deep_merge
from NetworkConfigs.ppo_config import SMOKE as PPO_SMOKE
from NetworkConfigs.PPOTrainer import PPOTrainer
from NetworkConfigs.XGBoostTrainer import SMOKE as XGB_SMOKE
from NetworkConfigs.XGBoostTrainer import XGBoostTrainer
from Utilities.accounting import MIN_INITIAL_BALANCE, EnvParams, cost_errors
from Utilities.input_errors import InputError
from web.backtest_request import validate
from web.training_form import changed_config

ROOT = Path(__file__).resolve().parent.parent
TINY_PPO = deep_merge(PPO_SMOKE, {
    "train_params": {"total_timesteps": 256, "n_envs": 2, "n_steps": 128, "batch_size": 128,
                     "eval_every": 1},
    "model_params": {"lookback_window": 10, "hidden_dim": 16}})


# ------------------------------------------------------------------- the cost rule


def backtest_form_errors(values: dict[str, str]) -> dict[str, str]:
    """The backtest request's errors by field for these form values."""
    return validate(values, models=[])[1]


@pytest.mark.parametrize(("costs", "expected"), [
    ({"commission": 0.0005, "slippage": 1.0, "initial_balance": 10_000}, {}),
    ({"commission": None, "slippage": None, "initial_balance": None}, {}),  # not given
    ({"commission": 0, "slippage": 0, "initial_balance": MIN_INITIAL_BALANCE}, {}),
    ({"commission": -0.1}, {"commission": "commission cannot be negative; got -0.1"}),
    ({"commission": 1}, {"commission": "commission must be a fraction of the traded value "
                                        "in [0, 1), e.g. 0.0005 for 0.05 % per fill; got 1"}),
    ({"slippage": 1e4}, {"slippage": "slippage must be in basis points, from 0 to below "
                                     "10000; got 10000"}),
    ({"initial_balance": 0.5}, {"initial_balance": "initial_balance must be at least 1; "
                                                   "got 0.5"}),
    ({"slippage": float("inf")}, {"slippage": "slippage must be a finite number; got inf"}),
    ({"commission": "0.1", "slippage": True},
     {"commission": "commission must be a number; got '0.1'",
      "slippage": "slippage must be a number; got True"}),
])
def test_cost_errors_names_each_bad_cost(costs: dict, expected: dict) -> None:
    assert cost_errors(**costs) == expected


def test_cost_errors_knows_only_the_costs() -> None:
    with pytest.raises(TypeError, match="hold_penalty"):
        cost_errors(hold_penalty=1)


@pytest.mark.parametrize(("field", "value"), [("commission", -0.1), ("slippage", 2e4),
                                              ("initial_balance", 0.5)])
def test_config_backtest_request_and_train_form_say_the_same(field: str, value: float) -> None:
    """One rule, one message: the model config, the backtest form and the train form."""
    rule = cost_errors(**{field: value})[field]
    with pytest.raises(InputError) as config_error:
        EnvParams.from_dict({field: value})
    assert str(config_error.value) == rule and config_error.value.field == field
    assert backtest_form_errors({field: str(value)})[field] == rule
    _, errors = changed_config("ppo", {f"env_params.{field}": str(value)})
    assert errors == {f"env_params.{field}": rule}


def test_the_minimum_initial_balance_is_one_everywhere() -> None:
    """The web used to refuse 0.5 while a model config took it (and made NaN returns)."""
    assert EnvParams(initial_balance=1).initial_balance == 1
    with pytest.raises(ValueError, match="initial_balance must be at least 1"):
        EnvParams(initial_balance=0.5)
    assert backtest_form_errors({"initial_balance": "0.5"})["initial_balance"].startswith(
        "initial_balance must be at least 1")


# ------------------------------------------------------------- no gymnasium to serve

# Runs in a fresh interpreter: sys.modules there holds exactly what these paths import.
_SERVE_AND_BACKTEST = """
import json, sys
from pathlib import Path
import pandas as pd
import Utilities.backtester, Utilities.backtest_report, web.hosting, Api_Loader
from NetworkConfigs import load_model
from NetworkConfigs.streams import StreamRegistry
from Utilities.model_backtester import backtest_model
from Utilities.data_utils import load_bars
bars = load_bars(sys.argv[1])
seen = {}
for folder in sys.argv[2:]:
    model = load_model(folder)
    window = bars.iloc[-model.window_size:]
    seen[model.config["Type"]] = model.predict_with(window).to_dict()["action_name"]
    report = backtest_model(Path(folder), Path(sys.argv[1]))
    seen[model.config["Type"] + " backtest"] = len(report.result.equity)
print(json.dumps({"gymnasium": sorted(m for m in sys.modules if m.split(".")[0] == "gymnasium"),
                  "seen": seen}))
"""


@pytest.fixture(scope="module")
def served_models(sample_bars: pd.DataFrame, sample_path: Path, tmp_path_factory) -> list[Path]:
    """A real XGBoost and a tiny PPO model (the PPO loader is the one that books an
    account into its observation)."""
    folder, bars = tmp_path_factory.mktemp("served"), sample_bars.iloc[:400]
    return [XGBoostTrainer(XGB_SMOKE).fit(bars, model_name="x", models_dir=folder,
                                          data_file=str(sample_path)),
            PPOTrainer(TINY_PPO).fit(bars, model_name="p", models_dir=folder)]


def test_backtests_and_serving_do_not_import_gymnasium(served_models: list[Path],
                                                       sample_path: Path) -> None:
    """Predicting, streaming and backtesting each type run in a process without
    gymnasium: the accounting rule they book trades with no longer lives in the env."""
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_AND_BACKTEST, str(sample_path),
         *map(str, served_models)], cwd=ROOT, capture_output=True, text=True, check=False,
        timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(found["seen"]) == {"xgboost", "ppo", "xgboost backtest", "ppo backtest"}
    assert found["gymnasium"] == []


def test_the_training_env_still_imports_gymnasium() -> None:
    """The check above can fail: the env module does bring gymnasium in."""
    code = "import sys, NetworkConfigs.trading_env; print('gymnasium' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "True"
