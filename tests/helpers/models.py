"""Trained models for tests: the tiny PPO config, and the shared models conftest.py trains
once per pytest session (once per worker under pytest-xdist: each worker has its own
tmp_path_factory) instead of once per module.

A shared model folder is read-only by agreement: a test that changes or deletes files
copies it first (``copy_model``). ``shared_changes`` tells which shared folder a test
changed; conftest.py checks it after every test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml

from tests.helpers.paths import SAMPLE_CSV

# The rows the tiny models are trained on: sample.csv's first 400 bars.
TINY_ROWS = 400

# torch and NetworkConfigs are imported inside the functions: most tests never load torch.


def _tiny_ppo_config() -> dict[str, Any]:
    from NetworkConfigs.base import deep_merge
    from NetworkConfigs.ppo_config import SMOKE

    # Two PPO iterations on 400 bars: a real trained model in a couple of seconds.
    return deep_merge(SMOKE, {"train_params": {"total_timesteps": 512, "n_envs": 2,
                                               "n_steps": 128, "batch_size": 128,
                                               "eval_every": 1},
                              "model_params": {"lookback_window": 10, "hidden_dim": 32}})


TINY: dict[str, Any] = _tiny_ppo_config()


class TrainedModel(NamedTuple):
    """A trainer after ``fit`` and the model folder it wrote."""

    trainer: Any
    folder: Path


def train_tiny(bars: pd.DataFrame, models_dir: Path, name: str = "tiny",
               config: dict | None = None) -> TrainedModel:
    """A tiny PPO model (TINY, with ``config`` merged over it) trained on ``bars``."""
    from NetworkConfigs.base import deep_merge
    from NetworkConfigs.PPOTrainer import PPOTrainer

    trainer = PPOTrainer(deep_merge(TINY, config or {}))
    return TrainedModel(trainer, trainer.fit(bars, model_name=name, models_dir=models_dir))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """On a busy 2-core machine torch's two intra-op threads spin against other work: a
    3-epoch smoke fit took 2 s or 40 s from run to run; with one thread it is steady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def copy_model(model: Path, models_dir: Path, created_at: str | None = None) -> Path:
    """A copy of a model folder in ``models_dir`` (same name) that a test may change.

    ``created_at`` rewrites when the copy says it was trained: the library lists the
    newest first, and the session's models were trained in whatever order tests ran.
    """
    copy = Path(shutil.copytree(model, models_dir / model.name))
    if created_at is not None:
        config = next(copy.glob("*_config.yaml"))
        settings = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**settings, "created_at": created_at},
                                         sort_keys=False))
    return copy


def model_library(folder: Path, *models: Path) -> Path:
    """``folder`` (created) holding copies of ``models``: a models folder an app may use."""
    folder.mkdir(parents=True, exist_ok=True)
    for model in models:
        copy_model(model, folder)
    return folder


# --------------------------------------------------------------- the session's models


def fit_tiny_ppo(bars: pd.DataFrame, models_dir: Path) -> TrainedModel:
    """PPO_tiny: TINY on the first 400 bars; no data file is recorded, so a backtest's
    default period on any file is the whole file."""
    with torch_threads(1):
        return train_tiny(bars.iloc[:TINY_ROWS], models_dir)


def fit_smoke_xgb(bars: pd.DataFrame, models_dir: Path) -> Path:
    """XGB_smoke: the smoke preset on all of sample.csv, recorded as trained on it (so
    its default backtest period is sample.csv's test slice)."""
    from NetworkConfigs.XGBoostTrainer import SMOKE, XGBoostTrainer

    return XGBoostTrainer(SMOKE).fit(bars, model_name="smoke", models_dir=models_dir,
                                     data_file=str(SAMPLE_CSV))


def fit_tiny_xgb(bars: pd.DataFrame, models_dir: Path) -> Path:
    """XGB_x: the smoke preset on the first 400 bars of sample.csv (~0.3 s)."""
    from NetworkConfigs.XGBoostTrainer import SMOKE, XGBoostTrainer

    return XGBoostTrainer(SMOKE).fit(bars.iloc[:TINY_ROWS], model_name="x",
                                     models_dir=models_dir, data_file=str(SAMPLE_CSV))


def fit_tiny_transformer(bars: pd.DataFrame, models_dir: Path) -> Path:
    """TRF_smoke: the smoke preset cut to one epoch on the first 400 bars (a real torch
    weights file)."""
    from NetworkConfigs.base import deep_merge
    from NetworkConfigs.TransformerTrainer import SMOKE, TransformerTrainer

    config = deep_merge(SMOKE, {"train_params": {"epochs": 1}})
    with torch_threads(1):
        return TransformerTrainer(config).fit(bars.iloc[:TINY_ROWS], model_name="smoke",
                                              models_dir=models_dir)


# ---------------------------------------------------------- the read-only agreement


_shared: dict[Path, dict[str, tuple[int, int]]] = {}


def _fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's (size, mtime) by relative path: cheap enough to check after each test."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def share(folder: Path) -> Path:
    """Record ``folder`` as a shared model, to be checked by ``shared_changes``."""
    _shared[folder] = _fingerprint(folder)
    return folder


def shared_changes() -> list[str]:
    """The shared model folders whose files changed since they were trained."""
    problems = []
    for folder, expected in _shared.items():
        now = _fingerprint(folder) if folder.is_dir() else {}
        if now != expected:
            changed = sorted(set(now) ^ set(expected)
                             | {k for k in now.keys() & expected.keys() if now[k] != expected[k]})
            problems.append(f"{folder.name}: {', '.join(changed) or 'folder removed'}")
            _shared[folder] = now  # report each change once
    return problems
