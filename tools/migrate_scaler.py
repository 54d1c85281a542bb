"""Convert the pickled scaler of a model you trust to the plain-JSON scaler models load.

    python tools/migrate_scaler.py Models/PPO_x [Models/XGB_y ...]

Earlier versions saved ``<name>_scaler.pkl`` with joblib. Reading a pickle runs
whatever code it carries, so models no longer load one: a folder with only the pickle is
refused with a message naming this command. THIS SCRIPT IS THE ONLY PLACE IN THE
PROJECT THAT UNPICKLES, and only when you run it by hand: run it on model folders you
trust (you trained them, or know who did), never on one you downloaded from a stranger.

For each folder it reads the pickle, checks it is one of the allowed scaler classes,
writes ``<name>_scaler.json`` atomically (after checking that the rebuilt scaler
transforms bit for bit like the pickled one), lists it in the config's
``artifact_paths`` and removes the pickle (``--keep-pickle`` keeps it). Bad input: one
line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from NetworkConfigs.artifacts import (  # noqa: E402
    LEGACY_SCALER_KIND,
    SCALER_KIND,
    ArtifactError,
    artifact_path,
    find_config,
    read_config,
    shown_path,
)
from NetworkConfigs.scaler_io import (  # noqa: E402
    ScalerFormatError,
    scaler_from_json,
    scaler_to_json,
)
from Utilities.logging_setup import one_line  # noqa: E402

log = logging.getLogger("migrate_scaler")


class MigrationError(Exception):
    """A folder that cannot be migrated; the message says which and why."""


def migrate(model_dir: Path, keep_pickle: bool = False) -> str:
    """Write ``model_dir``'s JSON scaler from its pickle; returns what was done."""
    try:
        name = str(read_config(model_dir)["model_name"])
        target = artifact_path(model_dir, name, SCALER_KIND)
        source = artifact_path(model_dir, name, LEGACY_SCALER_KIND)
    except ArtifactError as exc:
        raise MigrationError(str(exc)) from None
    where = shown_path(model_dir, model_dir)
    if target.is_file():
        return f"{where}: already has {target.name}; nothing to do"
    if not source.is_file():
        raise MigrationError(f"{where}: neither {target.name} nor {source.name} is there")
    text = _json_of(_unpickle(source), shown_path(source, model_dir))
    _write_atomically(target, text)
    _list_in_config(model_dir, source.name, target.name)
    if not keep_pickle:
        source.unlink()
    return f"{where}: wrote {target.name}" + ("" if keep_pickle else f", removed {source.name}")


def _unpickle(source: Path) -> Any:
    import joblib  # only here: nothing else in the project reads pickles

    try:
        return joblib.load(source)
    except Exception as exc:  # a damaged pickle fails in many ways
        raise MigrationError(f"{source.name}: not a readable pickle "
                             f"({type(exc).__name__}: {exc})") from None


def _json_of(scaler: Any, where: str) -> str:
    """The scaler as JSON, proven to rebuild into a scaler with the same transform."""
    try:
        text = scaler_to_json(scaler)
        rebuilt = scaler_from_json(text)
    except ScalerFormatError as exc:
        raise MigrationError(f"{where}: {exc}") from None
    probe = np.random.default_rng(0).normal(size=(64, int(scaler.n_features_in_))) * 100.0
    if not np.array_equal(scaler.transform(probe), rebuilt.transform(probe)):
        raise MigrationError(f"{where}: the rebuilt scaler does not transform exactly like "
                             "the pickled one; nothing was written")
    return text


def _write_atomically(target: Path, text: str) -> None:
    """A temporary file beside ``target``, flushed to disk, then renamed over it."""
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with temporary.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _list_in_config(model_dir: Path, old: str, new: str) -> None:
    path = find_config(model_dir)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    files = config.get("artifact_paths")
    if not isinstance(files, list):
        return
    config["artifact_paths"] = sorted({*(f for f in files if f != old), new},
                                      key=lambda f: (f == path.name, f))
    _write_atomically(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="migrate_scaler.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="model_dir",
                        help="a model folder you trust, e.g. Models/PPO_x")
    parser.add_argument("--keep-pickle", action="store_true",
                        help="keep <name>_scaler.pkl after writing the JSON scaler")
    args = parser.parse_args(argv)
    for model_dir in args.model_dirs:
        try:
            print(migrate(model_dir, args.keep_pickle))
        except (MigrationError, OSError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
