"""Shared fixtures: real data files, a throw-away store, a test app, and the models
trained once per session (helpers live in tests/helpers, one home each)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.apps import drop_all, make_app
from tests.helpers.engines import postgres_url
from tests.helpers.paths import NQ_CSV, SAMPLE_CSV
from Utilities.data_utils import load_bars


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def nq_path() -> Path:
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """A PostgreSQL URL for the session (DATABASE_URL or a throw-away local server), or
    None where this machine has none."""
    with postgres_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each engine in turn, whatever DATABASE_URL says: for tests that prove both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/engine.db"
    url = request.getfixturevalue("postgres_server")
    if url is None:
        pytest.skip("no PostgreSQL on this machine (set DATABASE_URL or install postgresql)")
    return url


@pytest.fixture()
def any_store(engine_url: str) -> Iterator:
    """A store on each engine in turn (see engine_url); its tables dropped after."""
    from Utilities.run_store import RunStore

    run_store = RunStore(engine_url)
    yield run_store
    drop_all(run_store)


@pytest.fixture()
def store(database_url: str) -> Iterator:
    from Utilities.run_store import RunStore

    run_store = RunStore(database_url)
    yield run_store
    drop_all(run_store)


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "Models"
    path.mkdir()
    return path


@pytest.fixture()
def app(database_url: str, models_dir: Path, tmp_path: Path) -> Iterator:
    from web.live_stream import close_streams
    from web.store import close_store, get_store

    flask_app = make_app(database_url, models_dir, tmp_path)
    yield flask_app
    close_streams(flask_app)  # their readers would poll the tables dropped below
    with flask_app.app_context():
        drop_all(get_store())
    close_store(flask_app)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A CLI's main() run in-process configures the root logger with a handler on the
    test's captured stderr; left there, it writes to a closed file in a later test ("---
    Logging error ---"; test_model_files before test_auth failed so, as under xdist's
    ordering). What a test added to the root logger goes when it ends."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        # Exactly StreamHandler: basicConfig's; pytest's own handlers are subclasses.
        if handler not in handlers and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for a module that trains (see helpers.models.torch_threads).
    Modules use it with ``pytest.mark.usefixtures("one_torch_thread")``."""
    from tests.helpers.models import torch_threads  # imports torch: most tests never do

    with torch_threads(1):
        yield


# ------------------------------------------------------- models trained once per session
# Trained on first use, into the session's temporary folder (per worker under xdist).
# They are shared: a test that changes a model folder copies it first (copy_model, or the
# function-scoped fixtures of its module); the check below names a test that did not.


@pytest.fixture(scope="session")
def tiny_ppo(sample_bars: pd.DataFrame, tmp_path_factory):
    """(trainer, folder) of PPO_tiny: two PPO iterations on sample.csv's first 400 bars."""
    from tests.helpers.models import TrainedModel, fit_tiny_ppo, share

    trainer, folder = fit_tiny_ppo(sample_bars, tmp_path_factory.mktemp("tiny_ppo"))
    return TrainedModel(trainer, share(folder))


@pytest.fixture(scope="session")
def smoke_xgb(sample_bars: pd.DataFrame, tmp_path_factory) -> Path:
    """XGB_smoke: XGBoost's smoke preset on all of sample.csv."""
    from tests.helpers.models import fit_smoke_xgb, share

    return share(fit_smoke_xgb(sample_bars, tmp_path_factory.mktemp("smoke_xgb")))


@pytest.fixture(scope="session")
def tiny_xgb(sample_bars: pd.DataFrame, tmp_path_factory) -> Path:
    """XGB_x: XGBoost's smoke preset on sample.csv's first 400 bars."""
    from tests.helpers.models import fit_tiny_xgb, share

    return share(fit_tiny_xgb(sample_bars, tmp_path_factory.mktemp("tiny_xgb")))


@pytest.fixture(scope="session")
def tiny_transformer(sample_bars: pd.DataFrame, tmp_path_factory) -> Path:
    """TRF_smoke: one Transformer epoch on sample.csv's first 400 bars."""
    from tests.helpers.models import fit_tiny_transformer, share

    return share(fit_tiny_transformer(sample_bars, tmp_path_factory.mktemp("tiny_trf")))


# Which session fixture holds each model type's tiny model.
TINY_MODEL_OF_TYPE = {"ppo": "tiny_ppo", "xgboost": "tiny_xgb", "transformer": "tiny_transformer"}


@pytest.fixture(scope="session")
def tiny_models(request: pytest.FixtureRequest) -> dict[str, Path]:
    """A tiny trained model folder of every registered model type, by type name."""
    from NetworkConfigs import model_type_names

    missing = sorted(set(model_type_names()) - set(TINY_MODEL_OF_TYPE))
    assert not missing, f"no session model of {missing}: add one in tests/conftest.py"
    models = {name: request.getfixturevalue(TINY_MODEL_OF_TYPE[name])
              for name in model_type_names()}
    return {name: getattr(model, "folder", model) for name, model in models.items()}


@pytest.fixture(autouse=True)
def _shared_models_unchanged() -> Iterator[None]:
    """Fails the test that changed a shared model folder (it should have copied it)."""
    yield
    models = sys.modules.get("tests.helpers.models")  # not loaded: nothing shared yet
    if models is not None:
        changed = models.shared_changes()
        assert not changed, f"this test changed a shared model (copy it first): {changed}"
