"""The processes ``bench/predict_latency.py`` starts. Each prints JSON (or, for a server,
its address line). Two modes:

``latency``: one side of the in-process comparison: the latency of ``loader.predict``
with the code of ``--root`` (this tree, or a baseline commit's tree that the bench
unpacked), on the same model and windows. A fresh process per side and round, so the two
code bases never share a module cache; torch on one thread, as the API server runs it.

``bare-server``: the ceiling of the HTTP numbers: waitress with the settings
``Api_Loader.py`` serves with (``web.serving.create_server``: a socket bound the
same way, ``--threads``, ``send_bytes``) around a WSGI app that does nothing but answer
``200 {}``, no Flask. Prints
``Serving bare on http://127.0.0.1:PORT`` once it listens, as ``Api_Loader.py`` does.

Usage: python bench/predict_worker.py latency --root DIR --model-dir DIR [--calls 2000]
       python bench/predict_worker.py bare-server --threads N
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def time_calls(call: Callable[[], Any], n: int, warmup: int = 200) -> list[float]:
    for _ in range(warmup):
        call()
    clock, samples = time.perf_counter, []
    for _ in range(n):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def latency(root: Path, model_dir: Path, calls: int) -> dict[str, Any]:
    """p50/p99/mean of ``loader.predict`` per window form, with ``root``'s code."""
    sys.path.insert(0, str(root.resolve()))
    import numpy as np
    import torch

    from NetworkConfigs import load_model
    from Utilities.data_utils import load_bars

    torch.set_num_threads(1)
    loader = load_model(model_dir)
    features = list(loader.spec.features)
    frame = load_bars(root / "sample.csv")[features].iloc[2000:2000 + loader.window_size]
    forms = {"records": frame.to_dict("records"), "rows": frame.to_numpy().tolist(),
             "dataframe": frame}
    result: dict[str, Any] = {}
    for name, window in forms.items():
        n = calls if name == "records" else calls // 4
        ms = np.asarray(time_calls(lambda w=window: loader.predict(w), n)) * 1e3
        result[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3),
                        "p99_ms": round(float(np.percentile(ms, 99)), 3),
                        "mean_ms": round(float(ms.mean()), 3)}
    return result


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reads the body (as any app must) and answers ``{}``."""
    stream, length = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        stream.read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def bare_server(threads: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from web.serving import create_server  # the model server's own waitress settings

    sock = socket.create_server(("127.0.0.1", 0))
    server = create_server(bare_app, threads, sockets=[sock])
    print(f"Serving bare on http://127.0.0.1:{server.effective_port}  (Ctrl+C stops)",
          flush=True)
    try:
        server.run()
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    timed = modes.add_parser("latency")
    timed.add_argument("--root", type=Path, required=True)
    timed.add_argument("--model-dir", type=Path, required=True)
    timed.add_argument("--calls", type=int, default=2000)
    bare = modes.add_parser("bare-server")
    bare.add_argument("--threads", type=int, required=True)  # the bench passes its own
    args = parser.parse_args()
    if args.mode == "latency":
        print(json.dumps(latency(args.root, args.model_dir, args.calls)))
    else:
        bare_server(args.threads)


if __name__ == "__main__":
    main()
