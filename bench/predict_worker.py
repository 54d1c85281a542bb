"""One side of ``bench/predict_latency.py``'s in-process comparison: the latency of
``loader.predict`` with the code of ``--root`` (this tree, or a baseline commit's tree
that the bench unpacked), on the same model and windows. Prints one JSON object.

Run by the bench in a fresh process per side and round, so the two code bases never
share a module cache. torch runs on one thread, as the API server runs it.

Usage: python bench/predict_worker.py --root DIR --model-dir DIR [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def time_calls(call: Any, n: int, warmup: int = 200) -> list[float]:
    for _ in range(warmup):
        call()
    clock, samples = time.perf_counter, []
    for _ in range(n):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    import numpy as np
    import torch

    from NetworkConfigs import load_model
    from Utilities.data_utils import load_bars

    torch.set_num_threads(1)
    loader = load_model(args.model_dir)
    features = list(loader.spec.features)
    frame = load_bars(args.root / "sample.csv")[features].iloc[2000:2000 + loader.window_size]
    forms = {"records": frame.to_dict("records"), "rows": frame.to_numpy().tolist(),
             "dataframe": frame}
    result: dict[str, Any] = {}
    for name, window in forms.items():
        calls = args.calls if name == "records" else args.calls // 4
        ms = np.asarray(time_calls(lambda w=window: loader.predict(w), calls)) * 1e3
        result[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3),
                        "p99_ms": round(float(np.percentile(ms, 99)), 3),
                        "mean_ms": round(float(ms.mean()), 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
