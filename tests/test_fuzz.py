"""Fuzz every route of the dashboard (``Main.create_app``) and of the standalone model app
(``Api_Loader.create_api_app``): no 5xx, valid JSON on API paths, no traceback in the log,
writes from another site refused (issue 11, "Proof").

Bodies come from the OpenAPI description and the form schemas, mutated with a grammar
of nasty values (tests/fuzz/). Each app first gets its systematic requests (every path
parameter, query name and JSON field with a value of every class), then random ones.
Seeded and bounded: ``FUZZ_SEED`` (default 11) and ``FUZZ_REQUESTS`` (the random
requests, default 2000, all apps together) change them. The status counts per
app go to ``test-artifacts/fuzz_counts_<engine>.json`` and every failure class, with
one example request, to ``test-artifacts/fuzz_failures_<engine>.json``. With
``DATABASE_URL`` set (e.g. ``tools/local_postgres.sh start``) the dashboard's store is
that database.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml
from flask import Flask, jsonify
from sqlalchemy.engine import make_url

import Main
from Api_Loader import create_api_app
from NetworkConfigs import get_model_type, load_model, model_type_names
from NetworkConfigs.base import deep_merge
from tests.conftest import ROOT, SAMPLE_CSV, _drop_all
from tests.fuzz import checks, schemas
from tests.fuzz.cases import make_case, plan
from tests.fuzz.catalog import Case, Catalog
from tests.fuzz.checks import Findings, InvalidJson, strict_json
from tests.fuzz.runner import Target, fuzz
from tests.fuzz.schemas import Bars, OpenApi
from tests.test_ppo_loader import TINY
from tests.test_web_history import seed_runs
from Utilities.run_store import RUN_STATUSES
from web import backtests, training_jobs
from web.errors import JSON_PATHS
from web.openapi import openapi_document

SEED = int(os.environ.get("FUZZ_SEED", "11"))
BUDGET = int(os.environ.get("FUZZ_REQUESTS", "2000"))
DASHBOARD_SHARE = 0.65  # of BUDGET; the model apps share the rest
ARTIFACTS = ROOT / "test-artifacts"
# Over each type's smoke preset: the least training that still saves a real model.
TINY_TRAINING: dict[str, dict[str, Any]] = {
    "ppo": {key: TINY[key] for key in ("train_params", "model_params")},
    "transformer": {"train_params": {"epochs": 1}},
}
# Paths whose client is a program (the pages' scripts), beside web.errors.JSON_PATHS.
PROGRAM_ENDPOINTS = ("history.live", "train.control")
FIXTURE_ROWS = 400


# --------------------------------------------------------------------------- fixtures


pytestmark = [pytest.mark.fuzz, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def pristine_models(sample_bars: pd.DataFrame, tmp_path_factory) -> dict[str, Path]:
    """A tiny trained model of every registered type, by folder name (~3 s in all)."""
    folder = tmp_path_factory.mktemp("fuzz_models")
    models = {}
    for type_name in model_type_names():
        trainer_class = get_model_type(type_name).trainer_class()
        config = deep_merge(trainer_class.smoke_config, TINY_TRAINING.get(type_name, {}))
        path = trainer_class(config).fit(sample_bars.iloc[:FIXTURE_ROWS], model_name="fz",
                                         models_dir=folder, data_file=str(SAMPLE_CSV))
        models[path.name] = path
    return models


@pytest.fixture()
def workspace(tmp_path: Path, pristine_models: dict[str, Path]) -> Path:
    """Models (copies: the fuzzer deletes them), a data folder with a small CSV and a
    header-only one."""
    for name, path in pristine_models.items():
        shutil.copytree(path, tmp_path / "Models" / name)
    data = tmp_path / "data"
    data.mkdir()
    lines = SAMPLE_CSV.read_text().splitlines()
    (data / "tiny.csv").write_text("\n".join(lines[:301]) + "\n")
    (data / "header_only.csv").write_text(lines[0] + "\n")
    return tmp_path


class FakePopen:
    """Stands in for the training child: a valid Train form is accepted, nothing runs."""

    launched: list[list[str]] = []  # noqa: RUF012 (shared by design: every launch)

    def __init__(self, args: list[str], **_: Any) -> None:
        FakePopen.launched.append(list(args))
        self.args, self.pid, self.returncode = args, 0, 0

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def poll(self) -> int:
        return 0


@pytest.fixture()
def no_training(monkeypatch) -> None:
    """web/training_jobs.py spawns with subprocess.Popen: only that module sees the fake,
    and it has no other attribute, so a new way of spawning fails loudly instead of
    training for real."""
    monkeypatch.setattr(training_jobs, "subprocess", SimpleNamespace(
        Popen=FakePopen, DEVNULL=subprocess.DEVNULL, STDOUT=subprocess.STDOUT,
        PIPE=subprocess.PIPE))


@pytest.fixture(autouse=True)
def libyaml(monkeypatch) -> None:
    """Speed only: every page re-reads each model's config with PyYAML's pure-Python
    parser (~80 % of the fuzz's time); libyaml reads the same documents to the same
    values several times faster."""
    if yaml.__with_libyaml__:
        monkeypatch.setattr(yaml, "safe_load",
                            functools.partial(yaml.load, Loader=yaml.CSafeLoader))


@pytest.fixture()
def dashboard(database_url: str, workspace: Path, no_training: None) -> Iterator[Flask]:
    """The dashboard as production runs it (TESTING off: an error is a 500 and a logged
    traceback, not an exception in the test)."""
    from web.store import close_store, get_store

    app = Main.create_app({"DATABASE_URL": database_url,
                           "MODELS_DIR": str(workspace / "Models"),
                           "DATA_DIR": str(workspace / "data"),
                           "BACKTESTS_DIR": str(workspace / "backtests")})
    app.instance_path = str(workspace / "instance")
    yield app
    with app.app_context():
        _drop_all(get_store())
    close_store(app)


def engine_of(database_url: str) -> str:
    return make_url(database_url).get_backend_name()


# ---------------------------------------------------------------------- the catalog


def base_catalog(sample_bars: pd.DataFrame, models: dict[str, Path]) -> Catalog:
    """What any app's cases draw from; the dashboard adds its runs and results."""
    tiny = sample_bars.iloc[:300]
    static = ROOT / "static"
    docs = {}
    for name, path in models.items():
        loader = load_model(path)
        docs[name] = OpenApi(openapi_document(loader), Bars(sample_bars.iloc[:600]),
                             list(loader.spec.features))
    return Catalog(
        run_ids=[], model_dirs=sorted(models), result_ids=[],
        csv_names=["sample.csv", "tiny.csv", "header_only.csv"],
        static_files=sorted(p.relative_to(static).as_posix() for p in static.rglob("*")
                            if p.is_file())[:40],
        files=list(backtests.FILES),
        period=(f"{tiny.index[60]:%Y-%m-%d %H:%M}", f"{tiny.index[-1]:%Y-%m-%d}"),
        bars=Bars(sample_bars.iloc[:600]),
        csv_text="\n".join(SAMPLE_CSV.read_text().splitlines()[:301]),
        openapi=docs, model_types=model_type_names(), statuses=list(RUN_STATUSES))


def prepare_dashboard(app: Flask, catalog: Catalog, hosted: str) -> None:
    """Runs in the store, a hosted model and its streams, a saved backtest result."""
    catalog.run_ids.extend(seed_runs(app).values())
    with app.app_context():
        app.extensions["hosting"].host(Path(app.config["MODELS_DIR"]), hosted)
    client = app.test_client()
    catalog.openapi[""] = OpenApi(client.get("/openapi.json").get_json(), catalog.bars,
                                  client.get("/info").get_json()["features"])
    bar = catalog.openapi[""].example(
        catalog.openapi[""].request_schema("/predict", "post")["properties"]["features"],
        random.Random(SEED))
    for stream_id in schemas.STREAM_IDS:
        client.post("/predict", json={"features": bar, "stream_id": stream_id})
    reply = client.post("/api/backtest", json={"model": hosted, "csv": "tiny.csv"})
    if reply.status_code in (201, 202):  # else the fuzzer learns result ids as it goes
        result_id = reply.get_json()["id"]
        jobs = backtest_jobs()
        if jobs is not None:  # 202: a background job; a result id once it is done
            with app.app_context():
                jobs.jobs().wait(result_id, timeout=120)
        catalog.result_ids.append(result_id)


def backtest_jobs() -> ModuleType | None:
    """web/backtest_jobs.py where backtests run as background jobs (else they run in the
    request, on small files here)."""
    try:
        return importlib.import_module("web.backtest_jobs")
    except ModuleNotFoundError:
        return None


def no_backtest_runs(monkeypatch) -> None:
    """A backtest job the fuzzer starts fails at once (as a refused one does) instead of
    running: the worker thread would otherwise compete with the requests for the CPU."""
    jobs = backtest_jobs()
    if jobs is None:
        return

    def not_run(request: Any, progress: Any = None) -> Any:
        raise jobs.FieldErrors({"form": "not run: the fuzz suite starts no backtest"})

    monkeypatch.setattr(jobs, "run_request", not_run)


def dashboard_json_required(path: str, endpoint: str | None) -> bool:
    return path.startswith(JSON_PATHS) or endpoint in PROGRAM_ENDPOINTS


def restorer(app: Flask, models: dict[str, Path], hosted: str):
    """Put back what a request removed: a deleted model folder, the hosted model."""
    models_dir = Path(app.config["MODELS_DIR"])

    def restore() -> None:
        for name, path in models.items():
            if not (models_dir / name).is_dir():
                shutil.copytree(path, models_dir / name)
        hosting = app.extensions["hosting"]
        if hosting.current() is None:
            with app.app_context():
                hosting.host(models_dir, hosted)

    return restore


# ---------------------------------------------------------------------- reporting


def record(engine: str, label: str, tally: dict[str, Any], findings: Findings) -> None:
    """Merge this app's counts and failures into the engine's artifact files."""
    ARTIFACTS.mkdir(exist_ok=True)
    for kind, payload in (("counts", tally), ("failures", findings.to_json())):
        path = ARTIFACTS / f"fuzz_{kind}_{engine}.json"
        try:
            merged = json.loads(path.read_text())
        except (OSError, ValueError):
            merged = {}
        if merged.get("seed") != SEED or merged.get("budget") != BUDGET:
            merged = {"engine": engine, "seed": SEED, "budget": BUDGET, "apps": {}}
        merged["apps"][label] = payload
        path.write_text(json.dumps(merged, indent=2, default=str))


# -------------------------------------------------------------------------- the fuzz


def test_fuzz_every_route_of_the_dashboard(dashboard: Flask, database_url: str,
                                            sample_bars: pd.DataFrame,
                                            pristine_models: dict[str, Path],
                                            monkeypatch) -> None:
    hosted = sorted(pristine_models)[0]
    catalog = base_catalog(sample_bars, pristine_models)
    prepare_dashboard(dashboard, catalog, hosted)
    no_backtest_runs(monkeypatch)
    target = Target("dashboard", dashboard, dashboard_json_required,
                    restore=restorer(dashboard, pristine_models, hosted))
    findings = Findings()
    tally = fuzz(target, catalog, int(BUDGET * DASHBOARD_SHARE), random.Random(SEED), findings)
    engine = engine_of(database_url)
    record(engine, "dashboard", tally.to_json(), findings)
    assert tally.requests > BUDGET * DASHBOARD_SHARE, tally.to_json()
    assert not findings, f"seed {SEED} on {engine}; statuses {tally.to_json()}\n" \
                         f"{findings.report()}"


def test_fuzz_every_route_of_the_model_app(database_url: str, sample_bars: pd.DataFrame,
                                           pristine_models: dict[str, Path]) -> None:
    """The standalone app of each model type, and one with no model (503s)."""
    catalog = base_catalog(sample_bars, pristine_models)
    models = pristine_models
    apps: dict[str, Flask] = {name: create_api_app(path) for name, path in models.items()}
    apps["no model"] = create_api_app(None)
    budget = int(BUDGET * (1 - DASHBOARD_SHARE))
    rng = random.Random(SEED + 1)
    findings, totals = Findings(), {}
    for label, app in apps.items():
        own = dataclasses.replace(catalog, openapi={"": catalog.openapi.get(label) or
                                                    next(iter(catalog.openapi.values()))})
        share = budget // 10 if label == "no model" else budget * 9 // 10 // len(models)
        # Every reply is JSON (its client is a program); its writes are guarded like the
        # dashboard's (another site's page, a rebound Host name).
        target = Target(f"model app {label}", app, lambda path, endpoint: True)
        totals[label] = fuzz(target, own, share, rng, findings).to_json()
    record(engine_of(database_url), "model app", totals, findings)
    assert not findings, f"seed {SEED}; statuses {totals}\n{findings.report()}"


# ----------------------------------------------------------- the fuzzer itself works


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b"[Infinity]", b"-Infinity", b'{"a": 1, "a": 2}',
                                 b'["\\ud800"]', b'{"\\udfff": 1}', b"\xff", b"{", b""])
def test_the_strict_parser_refuses_what_clients_cannot_read(raw: bytes) -> None:
    with pytest.raises(InvalidJson):
        strict_json(raw)


def test_the_strict_parser_reads_plain_json() -> None:
    assert strict_json(b'{"a": [1, -0.0, 1e-310, "\\u00fc\\ud83d\\udca5", null]}') == \
        {"a": [1, -0.0, 1e-310, "ü💥", None]}


def broken_app() -> Flask:
    """One route per bug class the fuzzer must find."""
    app = Flask("broken", static_folder=None)

    @app.post("/api/crash")
    def crash() -> Any:
        raise ZeroDivisionError("boom")

    @app.get("/api/nan")
    def nan() -> Any:
        return app.response_class('{"x": NaN}', mimetype="application/json")

    @app.get("/api/page")
    def page() -> str:
        return "<p>not JSON</p>"

    @app.post("/api/quiet")
    def quiet() -> Any:
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("broken").exception("swallowed")
        return jsonify(ok=True)

    return app


def test_the_fuzzer_finds_each_class_of_bug() -> None:
    app = broken_app()
    findings = Findings()
    catalog = Catalog([], ["X"], [], ["a.csv"], [], [], ("", ""),
                      Bars(pd.DataFrame({"Close": [1.0, 2.0]})), "a\n1", {}, [], [])
    fuzz(Target("broken", app, lambda path, endpoint: path.startswith("/api/")), catalog,
         200, random.Random(SEED), findings)
    found = {(f.kind, f.route.split()[-1]) for f in findings.classes.values()}
    assert {("5xx", "/api/crash"), ("invalid JSON", "/api/nan"), ("invalid JSON", "/api/page"),
            ("traceback logged", "/api/quiet"),
            ("cross-site write not refused", "/api/crash")} <= found, found
    assert any(f.kind == "rebound Host write not refused" for f in findings.classes.values())


def test_the_plan_reaches_every_rule_and_method_of_both_apps(tmp_path: Path) -> None:
    apps = [Main.create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}),
            create_api_app(None)]
    for app in apps:
        rules = list(app.url_map.iter_rules())
        planned = {(rule.rule, method) for rule, method in plan(rules, 100, random.Random(0))
                   if rule is not None}
        assert planned == {(r.rule, m) for r in rules for m in r.methods}


def test_program_paths_exist_and_cases_are_reproducible(tmp_path: Path,
                                                        sample_bars: pd.DataFrame) -> None:
    app = Main.create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/r.db"})
    assert set(PROGRAM_ENDPOINTS) <= set(app.view_functions)
    rules = list(app.url_map.iter_rules())

    def describe(seed: int) -> list[dict[str, Any]]:
        catalog = Catalog(["r1"], ["XGB_fz"], [], ["sample.csv"], [], list(backtests.FILES),
                          ("2020-01-01", "2020-02-01"), Bars(sample_bars.iloc[:100]), "a\n1",
                          {}, model_type_names(), list(RUN_STATUSES))
        rng = random.Random(seed)
        cases: list[Case] = [make_case(rule, method, catalog, rng) for rule, method in
                             plan(rules, 150, rng) if rule is not None and
                             rule.endpoint not in ("hosted_model.predict",
                                                   "hosting.api.predict_model")]
        return [c.describe() for c in cases]

    assert describe(SEED) == describe(SEED)
    assert describe(SEED) != describe(SEED + 1)


def test_checks_name_the_innermost_frame_of_this_repository() -> None:
    try:
        int("x")
    except ValueError as exc:
        assert checks.where(exc) == "ValueError at tests/test_fuzz.py:" + \
            str(exc.__traceback__.tb_lineno)
