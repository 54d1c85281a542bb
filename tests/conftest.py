"""Shared fixtures: real data files, a throw-away store, a test app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from Utilities.data_utils import load_bars

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "sample.csv"
NQ_CSV = ROOT.parent / "shared" / "data" / "galaxy_nq_1min.csv"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def nq_path() -> Path:
    # The users' file format; it lives in ../shared/data and is not copied (licence unknown).
    assert NQ_CSV.is_file(), f"{NQ_CSV} is missing: clone ../shared beside this repository"
    return NQ_CSV


@pytest.fixture(scope="session")
def sample_bars(sample_path: Path) -> pd.DataFrame:
    return load_bars(sample_path)


@pytest.fixture()
def bars(sample_bars: pd.DataFrame) -> pd.DataFrame:
    """A 400-bar slice of sample.csv, a fresh copy per test."""
    return sample_bars.iloc[:400].copy()


@pytest.fixture()
def database_url(tmp_path: Path) -> str:
    """DATABASE_URL from the environment (e.g. PostgreSQL), else a temporary SQLite file."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path}/runs.db"


@pytest.fixture()
def store(database_url: str) -> Iterator:
    from Utilities.run_store import RunStore

    run_store = RunStore(database_url)
    yield run_store
    _drop_all(run_store)


def _drop_all(run_store) -> None:
    from Utilities.run_store import metadata

    metadata.drop_all(run_store.engine)
    run_store.close()


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "Models"
    path.mkdir()
    return path


def make_app(database_url: str, models_dir: Path, tmp_path: Path):
    """The dashboard app with everything it writes kept in the test's folder (uploads,
    training logs, backtest results)."""
    from Main import create_app

    flask_app = create_app({"TESTING": True, "DATABASE_URL": database_url,
                            "MODELS_DIR": str(models_dir), "DATA_DIR": str(tmp_path / "data"),
                            "BACKTESTS_DIR": str(tmp_path / "backtests")})
    flask_app.instance_path = str(tmp_path / "instance")
    return flask_app


@pytest.fixture()
def app(database_url: str, models_dir: Path, tmp_path: Path) -> Iterator:
    from web.store import close_store, get_store

    flask_app = make_app(database_url, models_dir, tmp_path)
    yield flask_app
    with flask_app.app_context():
        _drop_all(get_store())
    close_store(flask_app)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """On a busy 2-core machine torch's two intra-op threads spin against other work: a
    3-epoch smoke fit took 2 s or 40 s from run to run; with one thread it is steady.
    Modules that train use it with ``pytest.mark.usefixtures("one_torch_thread")``."""
    import torch  # here, not at the top: most tests never load torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
