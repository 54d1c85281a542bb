"""A training's wall time when another process keeps the CPUs busy, with torch's threads
left at every CPU (what run_training did before --threads) against the budget of one
thread a web-started training now gets. Prints one JSON object.

Each run is the real CLI (``Utilities/run_training.py --mode smoke``) in a child
process, beside a "busy neighbour" (a second process multiplying matrices on torch's
default threads, as another training would). The two settings alternate, ``--repeats``
times each, so both see the same machine.

Usage: python bench/training_threads.py [--model transformer] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEIGHBOUR = ("import torch\n"
             "a = torch.randn(600, 600)\n"
             "while True:\n"
             "    a @ a\n")


def one_training(model: str, threads: int, folder: Path) -> float:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder}/runs.db"}
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "Utilities" / "run_training.py"),
                    "--csv_path", str(ROOT / "sample.csv"), "--model", model,
                    "--mode", "smoke", "--model_name", f"t{threads}", "--overwrite",
                    "--models-dir", str(folder / "Models"), "--no-progress",
                    "--threads", str(threads)],
                   env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="transformer")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    settings = {"every_cpu": cpus, "one_thread": 1}
    times: dict[str, list[float]] = {name: [] for name in settings}
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                for name, threads in settings.items():
                    times[name].append(round(one_training(args.model, threads, Path(tmp)), 2))
    finally:
        neighbour.kill()
        neighbour.wait()
    median = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "bench": "training_threads", "model": args.model, "mode": "smoke", "cpus": cpus,
        "busy_neighbour": "a second process multiplying 600x600 matrices on torch's "
                          "default threads",
        "seconds": times, "median_seconds": median,
        "baseline": "every_cpu (torch's default, run_training before --threads)",
        "speedup_one_thread": round(median["every_cpu"] / median["one_thread"], 2),
        "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
