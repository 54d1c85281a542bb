"""The metrics writer's CPU per flush, this checkout against the code before issue 13's
store rewrite (commit 4428e43, unpacked from git), interleaved. Prints one JSON object.

Why: the training loop's logging overhead (bench/logger_overhead.py, goal <= 1 %) is
mostly the writer's fixed cost per 200 ms flush, which a whole-loop A/B on a shared
machine cannot resolve. Each round runs bench/flush_worker.py once per side, in turn,
in a fresh process: ``trickle`` (4 episodes per flush: 12 metric rows and 4 events),
``loop`` (4 episodes and 4 updates per flush: 20 metric rows, 4 events; the torch loop
on a quiet machine) and ``burst`` (40 and 40: 200 metric rows, 40 events; the numpy
loop's 200 ms on a quiet machine), flushes called on a quiet thread and timed by the
thread's CPU clock; then, with ``--loops``,
logger_overhead's simulated numpy and torch loops with the writer on its real grid.

Usage: python bench/flush_cost.py [--rounds 5] [--rev 4428e43] [--loops]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "4428e43"
SHAPES = {"trickle": ["--episodes", "4"], "loop": ["--episodes", "4", "--updates", "4"],
          "burst": ["--episodes", "40", "--updates", "40", "--flushes", "200"]}
LOOPS = {"numpy_loop": ["--loop", "numpy", "--steps", "200000"],
         "torch_loop": ["--loop", "torch", "--steps", "50000"]}


def unpack_baseline(rev: str, into: Path) -> Path:
    """The tree of commit ``rev`` (tracked files only) under ``into`` (as
    bench/predict_latency.py does; importing that bench would load torch and pandas)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def worker(root: Path, options: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "flush_worker.py"),
                          "--root", str(root), *options],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description="metrics writer CPU per flush, A/B")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rev", default=BASELINE_COMMIT)
    parser.add_argument("--loops", action="store_true",
                        help="also the simulated training loops (minutes)")
    args = parser.parse_args()
    cases = {**SHAPES, **(LOOPS if args.loops else {})}
    with tempfile.TemporaryDirectory() as folder:
        sides = {"baseline": unpack_baseline(args.rev, Path(folder) / "baseline"),
                 "ours": ROOT}
        runs: dict[str, dict[str, list]] = {c: {s: [] for s in sides} for c in cases}
        for _ in range(args.rounds):
            for case, options in cases.items():
                for side, root in sides.items():
                    runs[case][side].append(worker(root, options))
    result = {}
    for case, by_side in runs.items():
        result[case] = {}
        for side, samples in by_side.items():
            result[case][side] = {key: round(statistics.median(s[key] for s in samples), 3)
                                  for key in samples[0]}
            metric = "overhead_pct" if case in LOOPS else "flush_median_us"
            result[case][side][f"{metric}_samples"] = [s[metric] for s in samples]
        metric = "overhead_pct" if case in LOOPS else "flush_median_us"
        result[case]["ours_vs_baseline"] = round(
            result[case]["ours"][metric] / result[case]["baseline"][metric], 2)
    print(json.dumps({"benchmark": "flush_cost", "baseline": args.rev,
                      "rounds": args.rounds, **result}, indent=2))


if __name__ == "__main__":
    main()
