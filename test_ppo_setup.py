"""Fast end-to-end checks of the ground PPO training stands on (run by `make test`).

Plain asserts only: a failure here must fail the suite, never be swallowed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from Utilities.data_utils import build_feature_spec, load_bars, min_rows_for, prepare_data

ROOT = Path(__file__).resolve().parent
MODULES = ["Main", "Api_Loader", "NetworkConfigs", "NetworkConfigs.base",
           "NetworkConfigs.artifacts", "Utilities.data_utils", "Utilities.indicators",
           "Utilities.run_store", "Utilities.metrics_logger", "Utilities.logging_setup",
           "web.pages", "web.store"]


def test_every_module_imports_without_side_effects(tmp_path: Path) -> None:
    """Importing prints nothing, creates no files and opens no database."""
    code = f"import importlib\nfor m in {MODULES!r}:\n    importlib.import_module(m)\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_sample_csv_feeds_a_60_bar_lookback() -> None:
    """sample.csv passes the data contract and gives PPO its default 60-bar windows."""
    bars = load_bars(ROOT / "sample.csv", min_rows=min_rows_for(60))
    spec = build_feature_spec(bars)
    data = prepare_data(bars, spec, lookback=60)
    assert {"Open", "High", "Low", "Close"} <= set(spec.price_columns)
    train = data.scaled[slice(*data.split.train)]
    assert np.allclose(train.mean(axis=0), 0.0, atol=1e-5)  # scaler fit on train only
    assert data.bars.index.equals(data.features.index)  # raw prices aligned with features
