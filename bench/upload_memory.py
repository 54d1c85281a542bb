"""Peak memory of taking an uploaded CSV of ~47 MB, before and after issue 11. Prints
one JSON object.

The file is the users' format (Date, Time, OHLCV and five indicator columns; seeded
random walk). Each path runs in its own child process, twice: once measuring the peak
resident memory (``ru_maxrss``) above what the child held after its imports, once the
peak of Python-traced allocations (``tracemalloc``, which slows the run and so is kept
apart). Both are reported as MB and as a multiple of the file's size.

- ``old`` (baseline, the code before issue 11, kept here for comparison): the whole
  upload read into bytes, parsed from a BytesIO (load_bars decodes it into a str and a
  StringIO), then written to ``uploads/``;
- ``new``: ``web.datafiles.save_upload`` with the upload's stream: copied in 1 MiB
  chunks to a hidden file in ``uploads/`` (rows counted on the way), parsed from that
  file, then renamed into place.

Usage: python bench/upload_memory.py [--rows 470000] [--csv FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """The users' column layout, ~100 bytes a row."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    times = pd.date_range("2020-01-01", periods=rows, freq="min")
    close = 20000 * np.exp(np.cumsum(rng.normal(0, 1e-4, rows)))
    open_ = close * (1 + rng.normal(0, 1e-4, rows))
    frame = pd.DataFrame({
        "Date": times.strftime("%Y-%m-%d"), "Time": times.strftime("%H:%M:%S"),
        "Open": open_, "High": np.maximum(open_, close) * 1.0002,
        "Low": np.minimum(open_, close) * 0.9998, "Close": close,
        "Volume": rng.integers(1, 500, rows).astype(float), "JMA": close,
        "HeartbeatLong": rng.integers(0, 2, rows).astype(float),
        "HeartbeatShort": rng.integers(0, 2, rows).astype(float),
        "EMA_9": close, "EMA_21": close})
    frame.to_csv(path, index=False, float_format="%.2f")


def old_path(csv: Path, uploads: Path) -> None:
    """What POST /backtest did before: ``save_upload(filename, upload.read())``."""
    from Utilities.data_utils import load_bars

    with csv.open("rb") as upload:
        content = upload.read()
    load_bars(io.BytesIO(content), name=csv.name)
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / f"old-{csv.name}").write_bytes(content)


def new_path(csv: Path, app) -> None:
    """``save_upload(filename, upload.stream)``, as POST /backtest and /train do now."""
    from web import datafiles

    with app.app_context(), csv.open("rb") as upload:
        datafiles.save_upload(csv.name, upload)


def child(variant: str, csv: Path, work: Path, traced: bool) -> dict[str, float]:
    from Main import create_app

    # The app (and every import it makes) first: the baseline includes them.
    app = create_app({"DATA_DIR": str(work), "MODELS_DIR": str(work / "models"),
                      "DATABASE_URL": f"sqlite:///{work}/runs.db",
                      "BACKTESTS_DIR": str(work / "backtests")})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    if variant == "old":
        old_path(csv, work / "uploads")
    else:
        new_path(csv, app)
    seconds = time.perf_counter() - started
    if traced:
        return {"traced_peak_mb": tracemalloc.get_traced_memory()[1] / 1e6}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_peak_above_imports_mb": (peak - before) * 1024 / 1e6,
            "seconds": seconds}


def measure(variant: str, csv: Path, traced: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--csv", str(csv),
                              "--work", work] + (["--traced"] if traced else []),
                             check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=470_000)
    parser.add_argument("--csv", type=Path, help="measure this file instead")
    parser.add_argument("--child", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.csv, args.work, args.traced)))
        return
    with tempfile.TemporaryDirectory() as folder:
        csv = args.csv or Path(folder) / "upload.csv"
        if args.csv is None:
            write_csv(csv, args.rows)
        size_mb = csv.stat().st_size / 1e6
        result: dict[str, object] = {"file_mb": round(size_mb, 1),
                                     "python": platform.python_version()}
        for variant in ("old", "new"):
            row = {**measure(variant, csv, traced=False), **measure(variant, csv, traced=True)}
            row["rss_x_file"] = row["rss_peak_above_imports_mb"] / size_mb
            row["traced_x_file"] = row["traced_peak_mb"] / size_mb
            result[variant] = {k: round(v, 2) for k, v in row.items()}
    old, new = result["old"], result["new"]
    result["old_over_new_rss"] = round(old["rss_peak_above_imports_mb"]
                                       / new["rss_peak_above_imports_mb"], 2)
    result["old_over_new_traced"] = round(old["traced_peak_mb"] / new["traced_peak_mb"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
