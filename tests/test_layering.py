"""The import layers, read from the source with ``ast`` (no module is imported here).

Lowest first; a module may import its own layer and the ones below, never one above:

    0 foundation       Utilities' rules: data, accounting, statistics, the store, formats
    1 NetworkConfigs   the model types, their registry, the training env
    2 applications     Utilities that drive model types: training and backtest runners
    3 web              the dashboard's blueprints and their helpers
    4 entry files      Api_Loader.py, Main.py (they never import each other)
    5 scripts          bench/, tools/, test_ppo_setup.py (may use the entry files)

Three more rules: no module imports another module's private (``_name``) names (tests
may); every module under Utilities/ is in :data:`UTILITIES` (a new one needs a decision);
and every registry string (``"module:attr"``, dotted module names used for lazy imports,
NetworkConfigs' model-type registry) names something that exists.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION, NETWORK, APPLICATION, WEB, ENTRY, SCRIPT = range(6)
LAYER_NAMES = ("foundation", "NetworkConfigs", "applications", "web", "entry files", "scripts")

# Where each Utilities module sits, by what it imports (the table the README draws).
UTILITIES = {
    "Utilities": FOUNDATION,
    "Utilities.input_errors": FOUNDATION,      # imports nothing of ours
    "Utilities.dashboard_settings": FOUNDATION,  # input_errors
    "Utilities.run_labels": FOUNDATION,        # input_errors
    "Utilities.metric_export": FOUNDATION,     # run_store, run_store_schema
    "Utilities.number_format": FOUNDATION,     # nothing
    "Utilities.safe_paths": FOUNDATION,        # nothing
    "Utilities.serialization": FOUNDATION,     # nothing
    "Utilities.logging_setup": FOUNDATION,     # nothing
    "Utilities.indicators": FOUNDATION,        # nothing
    "Utilities.downsample": FOUNDATION,        # nothing (numpy)
    "Utilities.accounting": FOUNDATION,        # input_errors
    "Utilities.data_loading": FOUNDATION,      # input_errors
    "Utilities.data_utils": FOUNDATION,        # data_loading
    "Utilities.performance": FOUNDATION,       # number_format, serialization
    "Utilities.backtester": FOUNDATION,        # accounting, performance, data_loading
    "Utilities.run_store_schema": FOUNDATION,  # serialization
    "Utilities.metric_rollups": FOUNDATION,    # nothing (numpy)
    "Utilities.metric_writes": FOUNDATION,     # metric_rollups
    "Utilities.run_notices": FOUNDATION,       # (the standard library only)
    "Utilities.metric_reads": FOUNDATION,      # run_store_schema, metric_rollups, downsample
    "Utilities.run_list_reads": FOUNDATION,    # run_store_schema, metric_reads
    "Utilities.run_store": FOUNDATION,         # schema, metric_reads/_writes, run_notices …
    "Utilities.metrics_logger": FOUNDATION,    # run_store, serialization
    "Utilities.run_figures": FOUNDATION,       # input_errors (reads through a RunReads)
    "Utilities.run_comparison": FOUNDATION,    # run_figures, serialization
    "Utilities.alert_rules": FOUNDATION,       # input_errors
    "Utilities.alert_channels": FOUNDATION,    # serialization
    "Utilities.alert_config": FOUNDATION,      # alert_rules, alert_channels
    "Utilities.alert_system": FOUNDATION,      # alert_config, run_store
    "Utilities.run_alerts": FOUNDATION,        # alert_system, run_store
    "Utilities.alert_records": FOUNDATION,     # run_store
    "Utilities.experiment_tracker": FOUNDATION,  # metrics_logger, run_store, run_figures
    "Utilities.metrics_client": FOUNDATION,    # nothing (standard library only)
    "Utilities.sb3_metrics_callback": FOUNDATION,  # metrics_client (SB3 imported lazily)
    "Utilities.session_ingest": FOUNDATION,    # input_errors, metric_writes
    "Utilities.session_store": FOUNDATION,     # run_store, session_ingest
    "Utilities.backtest_report": APPLICATION,  # NetworkConfigs.artifacts, .base
    "Utilities.model_backtester": APPLICATION,  # the registry, loaders
    "Utilities.signal_backtester": APPLICATION,  # model_backtester
    "Utilities.ppo_backtester": APPLICATION,   # NetworkConfigs.PPO_loader
    "Utilities.run_backtest": APPLICATION,     # the backtest CLI
    "Utilities.run_training": APPLICATION,     # the training CLI
    "Utilities.training_request": APPLICATION,  # one training, from the CLI or the form
}
ENTRY_FILES = {"Api_Loader", "Main"}

# Imports that break the layers while a fix is on its way, as (importer, imported). The
# set only shrinks: an entry that no longer occurs fails the test. Empty since issue 12
# moved the HTTP plumbing out of Api_Loader.py (web/hosting and Main imported it).
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()

# A string that looks like one of our import paths: "pkg.module", "pkg.module:attr".
REGISTRY_STRING = re.compile(
    r"(?:Main|Api_Loader|NetworkConfigs|Utilities|web|tests)(?:\.[A-Za-z_]\w*)*"
    r"(?::[A-Za-z_]\w*)?")


# ------------------------------------------------------------------------ reading


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def source_files() -> dict[str, Path]:
    """Every tracked-looking .py file of the project, by module name."""
    skip = {".venv", "node_modules", "__pycache__", ".git"}
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))
            if not skip & set(p.relative_to(ROOT).parts)}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(source_files()[name].read_text(encoding="utf-8"))


def is_test(name: str) -> bool:
    return name == "tests" or name.startswith("tests.")


def layer_of(name: str) -> int | None:
    """The layer of one of our modules; None for tests (they may import anything)."""
    top = name.split(".")[0]
    if top == "Utilities":
        return UTILITIES.get(name)
    if top == "NetworkConfigs":
        return NETWORK
    if top == "web":
        return WEB
    if name in ENTRY_FILES:
        return ENTRY
    return None if is_test(name) else SCRIPT


def imported_modules(name: str) -> Iterator[tuple[str, int, list[str]]]:
    """(our module imported, line, names taken from it) for every import in ``name``,
    at any depth (a lazy import inside a function is a dependency too)."""
    modules = source_files()
    package = name if source_files()[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, node.lineno, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .mod import y
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # from pkg import module
                    yield sub, node.lineno, []
                elif base in modules:
                    yield base, node.lineno, [alias.name]


def bound_modules(name: str) -> dict[str, str]:
    """Local names bound to our modules (``import a.b as m``, ``from a import b``)."""
    modules, bound = source_files(), {}
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.asname:
                    bound[alias.asname] = alias.name
                elif alias.name in modules:
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def is_private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


# -------------------------------------------------------------------------- rules


def layer_violations() -> set[tuple[str, str]]:
    found = set()
    for name in source_files():
        mine = layer_of(name)
        if mine is None:
            continue
        for imported, _line, _names in imported_modules(name):
            theirs = layer_of(imported)
            if imported == name or theirs is None:
                continue
            if theirs > mine or mine == theirs == ENTRY:  # an entry file imports no other
                found.add((name, imported))
    return found


def describe(pair: tuple[str, str]) -> str:
    low, high = pair
    return (f"{low} ({LAYER_NAMES[layer_of(low)]}) imports {high} "
            f"({LAYER_NAMES[layer_of(high)]})")


def test_every_utilities_module_has_a_layer() -> None:
    missing = sorted(n for n in source_files() if n.split(".")[0] == "Utilities"
                     and n not in UTILITIES)
    assert not missing, f"decide the layer of {missing} in UTILITIES"
    stale = sorted(set(UTILITIES) - set(source_files()))
    assert not stale, f"UTILITIES lists modules that do not exist: {stale}"


def test_no_module_imports_a_higher_layer() -> None:
    found = layer_violations()
    new = sorted(found - KNOWN_VIOLATIONS)
    assert not new, "imports against the layers:\n" + "\n".join(map(describe, new))


def test_test_modules_share_helpers_not_each_other() -> None:
    """Tests import tests/helpers, never another test module or a conftest (pytest
    loads those itself; importing one runs its fixtures' module twice)."""
    found = [f"{name}:{line} imports {target}"
             for name in source_files() if is_test(name)
             for target, line, _ in imported_modules(name)
             if re.search(r"(^|\.)(test_\w+|conftest)$", target)]
    assert not found, "\n".join(found)


def test_known_violations_are_still_real() -> None:
    """Fixed ones leave the list, so it can only shrink."""
    fixed = sorted(KNOWN_VIOLATIONS - layer_violations())
    assert not fixed, f"fixed: remove {fixed} from KNOWN_VIOLATIONS"


def test_no_module_imports_private_names() -> None:
    found = []
    for name in source_files():
        if is_test(name):
            continue
        for imported, line, names in imported_modules(name):
            found += [f"{name}:{line} imports {imported}.{n}" for n in names if is_private(n)]
        bound = bound_modules(name)
        for node in ast.walk(tree(name)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and is_private(node.attr)):
                found.append(f"{name}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


# ------------------------------------------------------------------ registry strings


def defines(name: str, attr: str) -> bool:
    """Whether module ``name`` binds ``attr`` at its top level (or is a package with
    such a submodule)."""
    if f"{name}.{attr}" in source_files():
        return True
    for node in tree(name).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == attr:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom) and any(
                (a.asname or a.name.split(".")[0]) == attr for a in node.names):
            return True
    return False


def resolves(text: str) -> bool:
    """"pkg.mod:attr" or "pkg.mod" or "pkg.mod.attr" names a module (and attribute)."""
    path, _, attr = text.partition(":")
    modules = source_files()
    if path in modules:
        return not attr or defines(path, attr)
    parent, _, last = path.rpartition(".")
    return not attr and parent in modules and defines(parent, last)


def registry_strings() -> Iterator[tuple[str, int, str]]:
    """Every string constant shaped like one of our import paths (file names such as
    "Api_Loader.py" are not; this file's deliberate typos are left out)."""
    for name in source_files():
        if source_files()[name] == Path(__file__).resolve():
            continue
        for node in ast.walk(tree(name)):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and REGISTRY_STRING.fullmatch(node.value)
                    and ("." in node.value or ":" in node.value)
                    and not node.value.endswith(".py")):
                yield name, node.lineno, node.value


def test_registry_strings_resolve() -> None:
    strings = list(registry_strings())
    # The model-type registry is among them (the check would be empty otherwise).
    assert ("NetworkConfigs", "NetworkConfigs.PPO_loader:PPOModelLoader") in {
        (name, text) for name, _line, text in strings}
    broken = [f"{name}:{line} {text!r}" for name, line, text in strings if not resolves(text)]
    assert not broken, "strings naming nothing:\n" + "\n".join(broken)


# ------------------------------------------------------------- the checks can fail


@pytest.mark.parametrize(("text", "ok"), [
    ("NetworkConfigs.PPO_loader:PPOModelLoader", True),
    ("NetworkConfigs.PPO_loader:PPOModelLoder", False),
    ("Utilities.accounting", True),
    ("Utilities.acounting", False),
    ("Utilities.accounting.EnvParams", True),
    ("NetworkConfigs:MODEL_TYPES", True),
])
def test_resolves_tells_real_names_from_typos(text: str, ok: bool) -> None:
    assert resolves(text) is ok


def test_the_layer_table_orders_the_stack() -> None:
    assert layer_of("Utilities.accounting") < layer_of("NetworkConfigs.trading_env") \
        < layer_of("Utilities.run_backtest") < layer_of("web.hosting") < layer_of("Main")
    assert layer_of("tests.test_layering") is None and layer_of("bench.upload_memory") == SCRIPT


@pytest.fixture()
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tiny project whose foundation imports upward and reads a private name."""
    files = {
        "Utilities/__init__.py": "",
        "Utilities/data_loading.py": "_SECRET = 1\n",
        "Utilities/accounting.py": ("def f():\n    from NetworkConfigs import env\n"
                                    "from Utilities.data_loading import _SECRET\n"
                                    "from Utilities import data_loading\n"
                                    "x = data_loading._SECRET\n"),
        "NetworkConfigs/__init__.py": 'LOADER = "NetworkConfigs.env:Gone"\n',
        "NetworkConfigs/env.py": "",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    source_files.cache_clear()
    tree.cache_clear()
    yield tmp_path
    source_files.cache_clear()
    tree.cache_clear()


def test_the_checks_catch_planted_violations(planted: Path) -> None:
    assert layer_violations() == {("Utilities.accounting", "NetworkConfigs.env")}
    with pytest.raises(AssertionError, match=r"imports Utilities.data_loading._SECRET"):
        test_no_module_imports_private_names()
    with pytest.raises(AssertionError, match=r"uses Utilities.data_loading._SECRET"):
        test_no_module_imports_private_names()
    assert [text for _n, _l, text in registry_strings()] == ["NetworkConfigs.env:Gone"]
    assert not resolves("NetworkConfigs.env:Gone")
