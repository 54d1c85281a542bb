"""Config errors carry their key as data (``InputError.field``), and a config's mistakes
are reported together, so a form can place every one beside its input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from NetworkConfigs import get_model_type
from NetworkConfigs.config_sections import LIMITS, Checks, checked, choice, normalise_sections, size
from Utilities.backtest_report import BacktestInputError, choose_period, env_params_for
from Utilities.input_errors import InputError, InputErrors

DEFAULTS = {"model_params": {"hidden_dim": 64, "encoder": "mlp"},
            "train_params": {"gamma": 0.99, "seed": 1}}


def test_unknown_keys_are_all_reported_each_under_its_name() -> None:
    with pytest.raises(InputErrors) as caught:
        normalise_sections({"model_params": {"hiden_dim": 3, "encodr": "gru"}, "gama": 1,
                            "train_params": "fast"}, DEFAULTS)
    errors = caught.value.errors
    assert set(errors) == {"hiden_dim", "encodr", "gama", "train_params"}
    assert errors["hiden_dim"].startswith("unknown key(s) ['hiden_dim'] in model_params; "
                                          "valid: ['encoder', 'hidden_dim']")
    assert errors["gama"] == ("unknown config key 'gama'; sections: ['model_params', "
                              "'train_params']")


def test_one_unknown_key_is_one_input_error() -> None:
    with pytest.raises(InputError) as caught:
        normalise_sections({"gama": 1}, DEFAULTS)
    assert not isinstance(caught.value, InputErrors) and caught.value.field == "gama"


@pytest.mark.parametrize(("check", "message"), [
    (lambda s: checked(s, "gamma", float, low=0, high=1), r"gamma must be in \[0, 1\]"),
    (lambda s: checked(s, "seed", int), "seed must be int"),
    (lambda s: size(s, "hidden_dim"), rf"hidden_dim must be in \[1, {LIMITS['hidden_dim']}\]"),
    (lambda s: choice(s, "encoder", ("mlp", "gru")), r"encoder must be one of \['mlp', 'gru'\]"),
])
def test_each_check_names_its_key(check, message: str) -> None:
    bad = {"gamma": 2.0, "seed": "one", "hidden_dim": 10**9, "encoder": "cnn"}
    with pytest.raises(InputError, match=message) as caught:
        check(bad)
    assert caught.value.field == message.split()[0]


def test_checks_keep_every_error_and_the_good_values() -> None:
    check = Checks()
    section = {"gamma": 2.0, "seed": 3, "hidden_dim": 0}
    assert check(checked, section, "seed", int) == 3
    assert check(checked, section, "gamma", float, high=1) is None
    assert check(size, section, "hidden_dim") is None
    with pytest.raises(InputErrors) as caught:
        check.raise_any()
    assert set(caught.value.errors) == {"gamma", "hidden_dim"}
    Checks().raise_any()  # nothing found: nothing raised


@pytest.mark.parametrize(("type_name", "config", "fields"), [
    ("ppo", {"gamma": 2, "hidden_dim": 0, "commission": -1, "encoder": "cnn"},
     {"gamma", "hidden_dim", "commission", "encoder"}),
    ("xgboost", {"max_depth": 0, "subsample": 2.0, "lookback_window": 0, "slippage": -1},
     {"max_depth", "subsample", "lookback_window", "slippage"}),
    ("transformer", {"d_model": 30, "n_heads": 4, "dropout": 0.95, "initial_balance": 0},
     {"d_model", "dropout", "initial_balance"}),
])
def test_every_type_reports_all_its_config_mistakes_at_once(type_name: str, config: dict,
                                                            fields: set[str]) -> None:
    """Four mistakes, four fields, one error: what the train form shows in one submit."""
    with pytest.raises(InputErrors) as caught:
        get_model_type(type_name).trainer_class()(config)
    assert set(caught.value.errors) == fields


def test_a_good_config_still_builds() -> None:
    for name in ("ppo", "xgboost", "transformer"):
        assert get_model_type(name).trainer_class()({"seed": 7}).config


# ------------------------------------------------------------------ backtest errors


INDEX = pd.date_range("2024-01-01", periods=10, freq="D")


@pytest.mark.parametrize(("bounds", "field"), [
    ({"start": "2024-01-05", "end": "2024-01-02"}, "end"),  # start after end
    ({"start": "2030-01-01"}, "start"),  # no bars from there
    ({"end": "2024-01-01"}, "end"),  # one bar: too short
    ({"start": "never"}, "start"),
])
def test_backtest_period_errors_name_their_field(bounds: dict, field: str) -> None:
    with pytest.raises(BacktestInputError) as caught:
        choose_period(INDEX, 0, config={}, csv_path=Path("none.csv"), **bounds)
    assert caught.value.field == field


def test_a_whole_file_too_short_blames_no_field() -> None:
    with pytest.raises(BacktestInputError) as caught:
        choose_period(INDEX[:1], 0, config={}, csv_path=Path("none.csv"))
    assert caught.value.field is None


def test_a_bad_cost_is_the_requests_a_bad_model_value_is_the_models() -> None:
    with pytest.raises(BacktestInputError) as caught:
        env_params_for({}, commission=-1)
    assert caught.value.field == "commission"
    with pytest.raises(BacktestInputError) as caught:
        env_params_for({"env_params": {"slippage": -1}}, commission=0.001)
    assert caught.value.field == "model"
